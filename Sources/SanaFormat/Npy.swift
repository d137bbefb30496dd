// NumPy .npy reader and writer (format version 1.0/2.0, little-endian '<f4', '<f8', '<i4', '<i8', C order).
// Used for reference fixtures, `--latents` and `--dump`.
import Foundation

public enum NpyError: Error, CustomStringConvertible, Equatable {
    case cannotRead(path: String)
    case badFormat(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(p): return "\(p): cannot read .npy file"
        case let .badFormat(p, r): return "\(p): not a supported .npy file: \(r)"
        }
    }
}

public enum Npy {
    /// Reads an array as float32 values and its shape. Integer and float64 arrays are converted.
    public static func read(_ path: String) throws -> (shape: [Int], values: [Float]) {
        guard let data = FileManager.default.contents(atPath: path) else { throw NpyError.cannotRead(path: path) }
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1 ... 5]) == Array("NUMPY".utf8) else {
            throw NpyError.badFormat(path: path, reason: "bad magic")
        }
        let major = bytes[6]
        var headerLen: Int, start: Int
        if major == 1 {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8
            start = 10
        } else if major == 2 || major == 3, bytes.count >= 12 {
            headerLen = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            start = 12
        } else {
            throw NpyError.badFormat(path: path, reason: "version \(major)")
        }
        guard start + headerLen <= bytes.count else { throw NpyError.badFormat(path: path, reason: "truncated header") }
        let header = String(decoding: bytes[start ..< start + headerLen], as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'") else {
            throw NpyError.badFormat(path: path, reason: "no descr")
        }
        let afterQ = descrField[descrField.index(after: q1)...]
        guard let q2 = afterQ.firstIndex(of: "'") else { throw NpyError.badFormat(path: path, reason: "bad descr") }
        let descr = String(afterQ[..<q2])
        guard let order = field("fortran_order"), order.hasPrefix("False") else {
            throw NpyError.badFormat(path: path, reason: "fortran order is not supported")
        }
        guard let shapeField = field("shape"), let open = shapeField.firstIndex(of: "("),
              let close = shapeField.firstIndex(of: ")") else { throw NpyError.badFormat(path: path, reason: "no shape") }
        let shape = try shapeField[shapeField.index(after: open) ..< close].split(separator: ",").map { s -> Int in
            guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n >= 0 else {
                throw NpyError.badFormat(path: path, reason: "bad shape")
            }
            return n
        }
        let count = shape.reduce(1, *)
        let body = start + headerLen
        let size: Int
        switch descr {
        case "<f4", "<i4": size = 4
        case "<f8", "<i8": size = 8
        case "|b1", "|u1", "|i1": size = 1
        default: throw NpyError.badFormat(path: path, reason: "dtype \(descr)")
        }
        guard bytes.count - body >= count * size else { throw NpyError.badFormat(path: path, reason: "truncated data") }
        let values: [Float] = bytes.withUnsafeBytes { p in
            (0 ..< count).map { i in
                let o = body + i * size
                switch descr {
                case "<f4": return Float(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt32.self).littleEndian)
                case "<f8": return Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: o, as: UInt64.self).littleEndian))
                case "<i4": return Float(Int32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case "<i8": return Float(Int64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: Int64.self)))
                case "|i1": return Float(Int8(bitPattern: p[o]))
                default: return Float(p[o])
                }
            }
        }
        return (shape, values)
    }

    /// The bytes of a float32 .npy file (version 1.0, C order).
    public static func encode(shape: [Int], values: [Float]) -> [UInt8] {
        precondition(shape.reduce(1, *) == values.count, "Npy.encode: \(values.count) values for shape \(shape)")
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shapeText), }"
        // Pad so that the data starts on a 64-byte boundary; the header ends with a newline.
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = header.utf8.count
        out += [UInt8(n & 0xff), UInt8(n >> 8)]
        out += Array(header.utf8)
        out.reserveCapacity(out.count + values.count * 4)
        for v in values {
            let b = v.bitPattern.littleEndian
            out += [UInt8(b & 0xff), UInt8((b >> 8) & 0xff), UInt8((b >> 16) & 0xff), UInt8(b >> 24)]
        }
        return out
    }

    /// Writes a float32 .npy file.
    public static func write(_ path: String, shape: [Int], values: [Float]) throws {
        try Data(encode(shape: shape, values: values)).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
