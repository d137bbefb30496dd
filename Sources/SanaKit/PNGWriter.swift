// PNG output: the decoder's image converted like diffusers' VaeImageProcessor.postprocess + numpy_to_pil
// (diffusers/image_processor.py: denormalize, pt_to_numpy, numpy_to_pil), written through libpng (CSanaPNG) to a
// temporary file that is renamed into place, so a failure never leaves a partial PNG under the final name.
import CSanaPNG
import Foundation

public enum PNGError: Error, CustomStringConvertible, Equatable {
    case badImage(String)
    case writeFailed(path: String, reason: String)
    case readFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .badImage(r): return "cannot write image: \(r)"
        case let .writeFailed(p, r): return "\(p): cannot write PNG: \(r)"
        case let .readFailed(p, r): return "\(p): cannot read PNG: \(r)"
        }
    }
}

/// An 8-bit RGB image, rows top to bottom, 3 bytes per pixel.
public struct RGB8Image: Equatable, Sendable {
    public var width: Int, height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3, "RGB8Image: \(pixels.count) bytes for \(width)×\(height)")
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// The decoder output [3, H, W] in −1…1 mapped to [0, 1] as diffusers' denormalize does:
    /// (x·0.5 + 0.5).clamp(0, 1), two float32 operations. This is the `image.npy` debug tap.
    public static func unitRange(_ image: Tensor) throws -> Tensor {
        guard image.rank == 3, image.shape[0] == 3, image.shape[1] > 0, image.shape[2] > 0 else {
            throw PNGError.badImage("expected a [3, H, W] tensor, got \(image.shape)")
        }
        return Tensor(shape: image.shape, data: image.data.map { x in
            let y = x * 0.5 + 0.5
            return y.isNaN ? y : min(max(y, 0), 1)
        })
    }

    /// [3, H, W] in [0, 1] → bytes as numpy_to_pil: (x·255).round() (half to even), then uint8. NaN becomes 0.
    public init(unitRange image: Tensor) throws {
        guard image.rank == 3, image.shape[0] == 3 else { throw PNGError.badImage("expected [3, H, W], got \(image.shape)") }
        let h = image.shape[1], w = image.shape[2], plane = h * w
        var bytes = [UInt8](repeating: 0, count: plane * 3)
        // [3, H, W] (planar) → [H, W, 3] (interleaved)
        for c in 0 ..< 3 {
            for p in 0 ..< plane {
                let v = (image.data[c * plane + p] * 255).rounded(.toNearestOrEven)
                bytes[p * 3 + c] = v.isNaN ? 0 : UInt8(min(max(v, 0), 255))
            }
        }
        self.init(width: w, height: h, pixels: bytes)
    }

    /// The decoder output [3, H, W] in −1…1 as 8-bit pixels (unitRange, then rounding).
    public init(decoderOutput image: Tensor) throws { try self.init(unitRange: Self.unitRange(image)) }
}

public enum PNGWriter {
    /// Writes `image` to `path` with text chunks (key, value) in order. Keys are PNG keywords (1–79 Latin-1
    /// characters); values may be any UTF-8. The file appears under `path` only when complete.
    public static func write(_ image: RGB8Image, to path: String, text: [(key: String, value: String)] = []) throws {
        for (key, value) in text {
            guard (1 ... 79).contains(key.utf8.count), key.unicodeScalars.allSatisfy({ $0.value >= 32 && $0.value < 127 }),
                  !key.hasPrefix(" "), !key.hasSuffix(" ")
            else { throw PNGError.badImage("bad PNG text keyword '\(key)'") }
            guard !value.utf8.contains(0) else { throw PNGError.badImage("text '\(key)' contains a NUL byte") }
        }
        let url = URL(fileURLWithPath: path)
        let temp = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp").path
        var error = [CChar](repeating: 0, count: 512)
        let status: Int32 = withCStrings(text.map(\.key)) { keys in
            withCStrings(text.map(\.value)) { values in
                image.pixels.withUnsafeBufferPointer { px in
                    sana_png_write_rgb8(temp, px.baseAddress, UInt32(image.width), UInt32(image.height), keys, values,
                                        Int32(text.count), &error, error.count)
                }
            }
        }
        guard status == 0 else {
            unlink(temp)
            throw PNGError.writeFailed(path: path, reason: message(error))
        }
        // Durable before visible: fsync the data, then rename over the final name.
        let fd = open(temp, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
        guard rename(temp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temp)
            throw PNGError.writeFailed(path: path, reason: reason)
        }
    }

    /// Reads an 8-bit RGB PNG and its text chunks (used by tests and tools).
    public static func read(_ path: String) throws -> (image: RGB8Image, text: [(key: String, value: String)]) {
        var w: UInt32 = 0, h: UInt32 = 0
        var error = [CChar](repeating: 0, count: 512)
        guard sana_png_read_rgb8(path, nil, 0, &w, &h, nil, nil, &error, error.count) == 0 else {
            throw PNGError.readFailed(path: path, reason: message(error))
        }
        var pixels = [UInt8](repeating: 0, count: Int(w) * Int(h) * 3)
        final class TextBox { var items: [(key: String, value: String)] = [] }
        let box = TextBox()
        let status = pixels.withUnsafeMutableBufferPointer { px in
            sana_png_read_rgb8(path, px.baseAddress, px.count, &w, &h, { ctx, key, value in
                guard let ctx, let key, let value else { return }
                Unmanaged<TextBox>.fromOpaque(ctx).takeUnretainedValue().items.append((String(cString: key), String(cString: value)))
            }, Unmanaged.passUnretained(box).toOpaque(), &error, error.count)
        }
        guard status == 0 else { throw PNGError.readFailed(path: path, reason: message(error)) }
        return (RGB8Image(width: Int(w), height: Int(h), pixels: pixels), box.items)
    }
}

/// The NUL-terminated message in a C buffer.
private func message(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Calls `body` with a C array of NUL-terminated copies of `strings`, valid for the duration of the call.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { copies.forEach { free($0) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
