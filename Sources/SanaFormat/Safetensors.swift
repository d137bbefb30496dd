// safetensors reader (https://github.com/huggingface/safetensors format): 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// The file is memory-mapped; tensors are copied out on request.
import Foundation

public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case truncated(path: String, reason: String)
    case headerTooLarge(path: String, size: UInt64)
    case badHeader(path: String, reason: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case badTensor(path: String, tensor: String, reason: String)
    case missingTensor(name: String)

    public var description: String {
        switch self {
        case let .cannotOpen(p, r): return "\(p): cannot open: \(r)"
        case let .truncated(p, r): return "\(p): truncated: \(r)"
        case let .headerTooLarge(p, s): return "\(p): header length \(s) exceeds the 100 MB cap"
        case let .badHeader(p, r): return "\(p): malformed header: \(r)"
        case let .unsupportedDType(p, t, d): return "\(p): tensor '\(t)': unsupported dtype \(d)"
        case let .badTensor(p, t, r): return "\(p): tensor '\(t)': \(r)"
        case let .missingTensor(n): return "tensor '\(n)' not found"
        }
    }
}

/// A memory-mapped safetensors file.
public final class SafetensorsFile: WeightSource, @unchecked Sendable {
    public struct Entry: Sendable {
        public let dtype: String
        public let shape: [Int]
        public let begin: Int  // absolute offset in the file
        public let end: Int
    }

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    private let data: Data  // mapped

    public var tensorNames: Set<String> { Set(entries.keys) }

    public init(path: String) throws {
        self.path = path
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw SafetensorsError.cannotOpen(path: path, reason: "\(error.localizedDescription)")
        }
        self.data = data
        guard data.count >= 8 else { throw SafetensorsError.truncated(path: path, reason: "file shorter than 8 bytes") }
        let headerLen = data.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian }
        guard headerLen <= 100_000_000 else { throw SafetensorsError.headerTooLarge(path: path, size: headerLen) }
        guard UInt64(data.count) - 8 >= headerLen else {
            throw SafetensorsError.truncated(path: path, reason: "header length \(headerLen) beyond file size \(data.count)")
        }
        let headerData = data.subdata(in: 8 ..< 8 + Int(headerLen))
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw SafetensorsError.badHeader(path: path, reason: "not a JSON object")
        }
        let dataStart = 8 + Int(headerLen)
        let dataSize = data.count - dataStart
        var entries: [String: Entry] = [:]
        var meta: [String: String] = [:]
        for (name, value) in json {
            if name == "__metadata__" {
                guard let m = value as? [String: String] else {
                    throw SafetensorsError.badHeader(path: path, reason: "__metadata__ is not a string map")
                }
                meta = m
                continue
            }
            guard let obj = value as? [String: Any], let dtype = obj["dtype"] as? String,
                  let shapeAny = obj["shape"] as? [Any], let offsAny = obj["data_offsets"] as? [Any], offsAny.count == 2
            else { throw SafetensorsError.badTensor(path: path, tensor: name, reason: "missing dtype, shape or data_offsets") }
            let shape = try shapeAny.map { v -> Int in
                guard let n = v as? Int, n >= 0 else {
                    throw SafetensorsError.badTensor(path: path, tensor: name, reason: "bad shape \(shapeAny)")
                }
                return n
            }
            guard let b = offsAny[0] as? Int, let e = offsAny[1] as? Int, b >= 0, e >= b, e <= dataSize else {
                throw SafetensorsError.badTensor(path: path, tensor: name, reason: "data_offsets \(offsAny) out of range 0...\(dataSize)")
            }
            guard let elemSize = SafetensorsFile.elementSize(dtype) else {
                throw SafetensorsError.unsupportedDType(path: path, tensor: name, dtype: dtype)
            }
            var count = 1
            for d in shape {
                let (p, o) = count.multipliedReportingOverflow(by: d)
                guard !o else { throw SafetensorsError.badTensor(path: path, tensor: name, reason: "shape \(shape) overflows") }
                count = p
            }
            let (bytes, o) = count.multipliedReportingOverflow(by: elemSize)
            guard !o, bytes == e - b else {
                throw SafetensorsError.badTensor(path: path, tensor: name,
                                                 reason: "shape \(shape) × \(dtype) needs \(bytes) bytes, offsets give \(e - b)")
            }
            entries[name] = Entry(dtype: dtype, shape: shape, begin: dataStart + b, end: dataStart + e)
        }
        self.entries = entries
        self.metadata = meta
    }

    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F32", "I32", "U32": return 4
        case "F16", "BF16", "I16", "U16": return 2
        case "F64", "I64", "U64": return 8
        case "I8", "U8", "BOOL": return 1
        default: return nil
        }
    }

    /// The tensor with its storage type: F32, F16 and BF16 keep their bytes (our f16/bf16 encodings are the same);
    /// F64 is narrowed to f32. Integer dtypes are rejected.
    public func tensor(_ name: String) throws -> StoredTensor {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(name: name) }
        let raw = [UInt8](data[e.begin ..< e.end])
        switch e.dtype {
        case "F32": return StoredTensor(name: name, shape: e.shape, type: .f32, bytes: raw)
        case "F16": return StoredTensor(name: name, shape: e.shape, type: .f16, bytes: raw)
        case "BF16": return StoredTensor(name: name, shape: e.shape, type: .bf16, bytes: raw)
        case "F64":
            let values = raw.withUnsafeBytes { p in
                (0 ..< raw.count / 8).map { Float(Double(bitPattern: p.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian)) }
            }
            return StoredTensor.pack(name: name, shape: e.shape, values: values, as: .f32)
        default:
            throw SafetensorsError.unsupportedDType(path: path, tensor: name, dtype: e.dtype)
        }
    }
}

/// All safetensors files of one diffusers component folder (e.g. `transformer/`), single-file or sharded,
/// seen as one weight source.
public final class SafetensorsDirectory: WeightSource, @unchecked Sendable {
    public let path: String
    public let files: [SafetensorsFile]
    private let owner: [String: Int]

    public var tensorNames: Set<String> { Set(owner.keys) }

    public init(path: String) throws {
        self.path = path
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".safetensors") }.sorted()
        } catch {
            throw SafetensorsError.cannotOpen(path: path, reason: "not a readable directory")
        }
        guard !names.isEmpty else { throw SafetensorsError.cannotOpen(path: path, reason: "no .safetensors file") }
        files = try names.map { try SafetensorsFile(path: (path as NSString).appendingPathComponent($0)) }
        var owner: [String: Int] = [:]
        for (i, f) in files.enumerated() {
            for name in f.entries.keys {
                if owner[name] != nil {
                    throw SafetensorsError.badTensor(path: f.path, tensor: name, reason: "duplicate tensor across shards")
                }
                owner[name] = i
            }
        }
        self.owner = owner
    }

    public func tensor(_ name: String) throws -> StoredTensor {
        guard let i = owner[name] else { throw SafetensorsError.missingTensor(name: name) }
        return try files[i].tensor(name)
    }
}
