// safetensors reader (https://github.com/huggingface/safetensors format): 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
// Validation follows the reference (safetensors/src/tensor.rs, `validate`): the header is capped at 100 MB, the
// tensors' byte ranges, sorted, must tile the data area exactly (no gap, no overlap, nothing left over), every
// shape × dtype size must equal its range (checked multiplication), and a name may appear only once.
// The file is memory-mapped; tensors are copied out on request and their pages can be released afterwards.
import CSanaKernels
import Foundation

public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case truncated(path: String, reason: String)
    case headerTooLarge(path: String, size: UInt64)
    case badHeader(path: String, reason: String)
    case duplicateTensor(path: String, tensor: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case unsupportedDType(path: String, tensor: String, dtype: String)
    case badTensor(path: String, tensor: String, reason: String)
    case sizeMismatch(path: String, tensor: String, expected: Int, actual: Int)
    case offsetsOutOfRange(path: String, tensor: String, begin: Int, end: Int, dataSize: Int)
    case overlappingOffsets(path: String, tensor: String, previous: String)
    case nonContiguousOffsets(path: String, tensor: String, expected: Int, actual: Int)
    case trailingData(path: String, used: Int, dataSize: Int)
    case badIndex(path: String, reason: String)
    case missingTensor(name: String)

    public var description: String {
        switch self {
        case let .cannotOpen(p, r): return "\(p): cannot open: \(r)"
        case let .truncated(p, r): return "\(p): truncated: \(r)"
        case let .headerTooLarge(p, s): return "\(p): header length \(s) exceeds the 100 MB cap"
        case let .badHeader(p, r): return "\(p): malformed header: \(r)"
        case let .duplicateTensor(p, t): return "\(p): tensor '\(t)' appears more than once"
        case let .unknownDType(p, t, d): return "\(p): tensor '\(t)': unknown dtype \(d)"
        case let .unsupportedDType(p, t, d): return "\(p): tensor '\(t)': unsupported dtype \(d) (float tensors only)"
        case let .badTensor(p, t, r): return "\(p): tensor '\(t)': \(r)"
        case let .sizeMismatch(p, t, e, a):
            return "\(p): tensor '\(t)': shape × dtype needs \(e) bytes, data_offsets give \(a)"
        case let .offsetsOutOfRange(p, t, b, e, s): return "\(p): tensor '\(t)': data_offsets [\(b), \(e)] outside the data (\(s) bytes)"
        case let .overlappingOffsets(p, t, q): return "\(p): tensor '\(t)': data overlaps tensor '\(q)'"
        case let .nonContiguousOffsets(p, t, e, a):
            return "\(p): tensor '\(t)': data starts at \(a), expected \(e) (offsets must be contiguous)"
        case let .trailingData(p, u, s): return "\(p): tensors cover \(u) of \(s) data bytes"
        case let .badIndex(p, r): return "\(p): bad shard index: \(r)"
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

    /// The reference's cap on the header length.
    public static let maxHeaderSize: UInt64 = 100_000_000

    public let path: String
    public let entries: [String: Entry]
    public let metadata: [String: String]
    /// The file size in bytes.
    public var fileSize: Int { file.size }
    private let file: MappedFile

    public var tensorNames: Set<String> { Set(entries.keys) }

    public init(path: String) throws {
        self.path = path
        do {
            file = try MappedFile(path: path)
        } catch {
            throw SafetensorsError.cannotOpen(path: path, reason: error.reason)
        }
        guard file.size >= 8 else { throw SafetensorsError.truncated(path: path, reason: "file shorter than 8 bytes") }
        let headerLen = file.bytes(0 ..< 8).loadUnaligned(as: UInt64.self).littleEndian
        guard headerLen <= Self.maxHeaderSize else { throw SafetensorsError.headerTooLarge(path: path, size: headerLen) }
        guard UInt64(file.size) - 8 >= headerLen else {
            throw SafetensorsError.truncated(path: path, reason: "header length \(headerLen) beyond file size \(file.size)")
        }
        let dataStart = 8 + Int(headerLen)
        let headerBytes = file.bytes(8 ..< dataStart)
        guard headerBytes.first == UInt8(ascii: "{") else {
            throw SafetensorsError.badHeader(path: path, reason: "does not start with '{'")
        }
        let headerData = Data(headerBytes)
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw SafetensorsError.badHeader(path: path, reason: "not a JSON object")
        }
        // JSONSerialization keeps one of two equal keys silently; count them on the raw text.
        if let dup = JSONKeys.firstDuplicateTopLevelKey(headerBytes) {
            throw SafetensorsError.duplicateTensor(path: path, tensor: dup)
        }
        let dataSize = file.size - dataStart
        var entries: [String: Entry] = [:]
        var meta: [String: String] = [:]
        var ranges: [(begin: Int, end: Int, name: String)] = []
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
            guard let b = offsAny[0] as? Int, let e = offsAny[1] as? Int else {
                throw SafetensorsError.badTensor(path: path, tensor: name, reason: "data_offsets \(offsAny) are not integers")
            }
            guard b >= 0, e >= b, e <= dataSize else {
                throw SafetensorsError.offsetsOutOfRange(path: path, tensor: name, begin: b, end: e, dataSize: dataSize)
            }
            guard let elemSize = Self.elementSize(dtype) else {
                throw SafetensorsError.unknownDType(path: path, tensor: name, dtype: dtype)
            }
            guard let count = Checked.product(shape), let bytes = Checked.mul(count, elemSize) else {
                throw SafetensorsError.badTensor(path: path, tensor: name, reason: "shape \(shape) overflows")
            }
            guard bytes == e - b else {
                throw SafetensorsError.sizeMismatch(path: path, tensor: name, expected: bytes, actual: e - b)
            }
            entries[name] = Entry(dtype: dtype, shape: shape, begin: dataStart + b, end: dataStart + e)
            ranges.append((b, e, name))
        }
        // The byte ranges, in order, must tile [0, dataSize) exactly.
        ranges.sort { ($0.begin, $0.end, $0.name) < ($1.begin, $1.end, $1.name) }
        var expected = 0
        var previous = ""
        for r in ranges {
            if r.begin < expected {
                throw SafetensorsError.overlappingOffsets(path: path, tensor: r.name, previous: previous)
            }
            if r.begin > expected {
                throw SafetensorsError.nonContiguousOffsets(path: path, tensor: r.name, expected: expected, actual: r.begin)
            }
            expected = r.end
            previous = r.name
        }
        guard expected == dataSize else { throw SafetensorsError.trailingData(path: path, used: expected, dataSize: dataSize) }
        self.entries = entries
        self.metadata = meta
    }

    /// Bytes per element of every safetensors dtype; nil for a name the format does not define.
    static func elementSize(_ dtype: String) -> Int? {
        switch dtype {
        case "F64", "I64", "U64": return 8
        case "F32", "I32", "U32": return 4
        case "F16", "BF16", "I16", "U16": return 2
        case "I8", "U8", "BOOL", "F8_E5M2", "F8_E4M3", "F8_E8M0": return 1
        default: return nil
        }
    }

    /// The float dtypes this reader converts.
    public static let floatDTypes: Set<String> = ["F32", "F16", "BF16", "F64"]

    private func entry(_ name: String) throws -> Entry {
        guard let e = entries[name] else { throw SafetensorsError.missingTensor(name: name) }
        return e
    }

    /// The tensor with its storage type: F32, F16 and BF16 keep their bytes (our f16/bf16 encodings are the same);
    /// F64 is narrowed to f32. Integer dtypes are rejected.
    public func tensor(_ name: String) throws -> StoredTensor {
        let e = try entry(name)
        switch e.dtype {
        case "F32": return StoredTensor(name: name, shape: e.shape, type: .f32, bytes: [UInt8](file.bytes(e.begin ..< e.end)))
        case "F16": return StoredTensor(name: name, shape: e.shape, type: .f16, bytes: [UInt8](file.bytes(e.begin ..< e.end)))
        case "BF16": return StoredTensor(name: name, shape: e.shape, type: .bf16, bytes: [UInt8](file.bytes(e.begin ..< e.end)))
        case "F64":
            let count = (e.end - e.begin) / 8
            return StoredTensor.pack(name: name, shape: e.shape, values: try floats(name, elements: 0 ..< count), as: .f32)
        default:
            throw SafetensorsError.unsupportedDType(path: path, tensor: name, dtype: e.dtype)
        }
    }

    /// Elements [range) of a float tensor (flat, reference order) converted to float32: the converter reads
    /// large tensors a row chunk at a time through this.
    public func floats(_ name: String, elements range: Range<Int>) throws -> [Float] {
        let e = try entry(name)
        guard let size = Self.elementSize(e.dtype), Self.floatDTypes.contains(e.dtype) else {
            throw SafetensorsError.unsupportedDType(path: path, tensor: name, dtype: e.dtype)
        }
        let count = (e.end - e.begin) / size
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "floats: \(range) outside \(name)'s \(count) elements")
        let src = file.bytes(e.begin + range.lowerBound * size ..< e.begin + range.upperBound * size)
        var out = [Float](repeating: 0, count: range.count)
        out.withUnsafeMutableBufferPointer { dst in
            for i in 0 ..< range.count {
                switch e.dtype {
                case "F32": dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                case "F16": dst[i] = sana_f16_to_f32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                case "BF16": dst[i] = sana_bf16_to_f32(UInt16(littleEndian: src.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)))
                default: dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))))
                }
            }
        }
        return out
    }

    /// Drops the pages of a tensor (or of elements `range` of it) from the resident set, after the converter has
    /// read them: without this, reading a mapped checkpoint would grow the resident set to the checkpoint's size.
    public func release(_ name: String, elements range: Range<Int>? = nil) {
        guard let e = entries[name], let size = Self.elementSize(e.dtype) else { return }
        let r = range.map { e.begin + $0.lowerBound * size ..< min(e.end, e.begin + $0.upperBound * size) } ?? e.begin ..< e.end
        file.release(r)
    }
}

/// All safetensors files of one diffusers component folder (e.g. `transformer/`), single-file or sharded through
/// `*.safetensors.index.json`, seen as one weight source.
public final class SafetensorsDirectory: WeightSource, @unchecked Sendable {
    public let path: String
    public let files: [SafetensorsFile]
    /// The shard index used, if the checkpoint is sharded.
    public let indexPath: String?
    private let owner: [String: Int]

    public var tensorNames: Set<String> { Set(owner.keys) }
    /// Total size of the weight files in bytes.
    public var sourceBytes: Int { files.reduce(0) { $0 + $1.fileSize } }

    /// Standard diffusers / transformers weight file names, preferred when a folder holds several variants.
    static let standardNames = ["diffusion_pytorch_model.safetensors", "model.safetensors"]

    public init(path: String) throws {
        self.path = path
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        } catch {
            throw SafetensorsError.cannotOpen(path: path, reason: "not a readable directory")
        }
        func full(_ n: String) -> String { (path as NSString).appendingPathComponent(n) }
        let indexes = names.filter { $0.hasSuffix(".safetensors.index.json") }
        let singles = names.filter { $0.hasSuffix(".safetensors") }
        // Preference: a standard shard index, a standard single file, then the only index or the only file.
        let standardIndex = Self.standardNames.map { $0 + ".index.json" }.first(where: indexes.contains)
        let standardSingle = Self.standardNames.first(where: singles.contains)
        let index = standardIndex ?? (standardSingle == nil && indexes.count == 1 ? indexes[0] : nil)
        let single = standardSingle ?? (singles.count == 1 ? singles[0] : nil)
        if let index {
            indexPath = full(index)
            (files, owner) = try Self.loadSharded(indexPath: full(index), directory: path)
        } else if let single {
            indexPath = nil
            let f = try SafetensorsFile(path: full(single))
            files = [f]
            owner = Dictionary(uniqueKeysWithValues: f.entries.keys.map { ($0, 0) })
        } else if singles.isEmpty {
            throw SafetensorsError.cannotOpen(path: path, reason: "no .safetensors file")
        } else {
            throw SafetensorsError.cannotOpen(path: path, reason: "ambiguous weight files \(singles) and no shard index")
        }
    }

    /// Reads `{"weight_map": {tensor: shard file}}`: every listed tensor must be in its shard, and every tensor
    /// of every shard must be listed there.
    private static func loadSharded(indexPath: String, directory: String) throws -> ([SafetensorsFile], [String: Int]) {
        guard let data = FileManager.default.contents(atPath: indexPath) else {
            throw SafetensorsError.cannotOpen(path: indexPath, reason: "cannot read")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let map = json["weight_map"] as? [String: String] else {
            throw SafetensorsError.badIndex(path: indexPath, reason: "no weight_map object of strings")
        }
        let shardNames = Array(Set(map.values)).sorted()
        for s in shardNames where s.contains("/") || s.hasPrefix(".") || !s.hasSuffix(".safetensors") {
            throw SafetensorsError.badIndex(path: indexPath, reason: "shard name '\(s)' is not a .safetensors file in the folder")
        }
        let files = try shardNames.map { try SafetensorsFile(path: (directory as NSString).appendingPathComponent($0)) }
        var owner: [String: Int] = [:]
        for (name, shard) in map {
            guard let i = shardNames.firstIndex(of: shard) else { continue }
            guard files[i].entries[name] != nil else {
                throw SafetensorsError.badIndex(path: indexPath, reason: "tensor '\(name)' is not in \(shard)")
            }
            owner[name] = i
        }
        for (i, f) in files.enumerated() {
            for name in f.entries.keys where owner[name] != i {
                if owner[name] != nil { throw SafetensorsError.duplicateTensor(path: f.path, tensor: name) }
                throw SafetensorsError.badIndex(path: indexPath, reason: "tensor '\(name)' of \(shardNames[i]) is not in the weight map")
            }
        }
        return (files, owner)
    }

    /// The file holding a tensor.
    public func file(of name: String) throws -> SafetensorsFile {
        guard let i = owner[name] else { throw SafetensorsError.missingTensor(name: name) }
        return files[i]
    }

    public func tensor(_ name: String) throws -> StoredTensor {
        try file(of: name).tensor(name)
    }
}

/// Top-level object keys of a JSON text, read without building the object (to see duplicates).
enum JSONKeys {
    /// The first top-level key that occurs twice, or nil. Expects valid JSON (parse it first).
    static func firstDuplicateTopLevelKey(_ text: UnsafeRawBufferPointer) -> String? {
        var seen = Set<String>()
        var depth = 0
        var i = 0
        var expectKey = false
        let n = text.count
        while i < n {
            let c = text[i]
            switch c {
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                expectKey = depth == 1 && c == UInt8(ascii: "{")
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                depth -= 1
            case UInt8(ascii: ","):
                expectKey = depth == 1
            case UInt8(ascii: "\""):
                let start = i + 1
                i += 1
                while i < n, text[i] != UInt8(ascii: "\"") {
                    i += text[i] == UInt8(ascii: "\\") ? 2 : 1
                }
                if expectKey, i <= n {
                    let raw = Data(text[start ..< min(i, n)])
                    // Decode escapes so that "a" and "\u0061" compare equal, as the parser sees them.
                    let key = (try? JSONSerialization.jsonObject(with: Data("[\"".utf8) + raw + Data("\"]".utf8)) as? [String])?
                        .first ?? String(decoding: raw, as: UTF8.self)
                    if !seen.insert(key).inserted { return key }
                    expectKey = false
                }
            default:
                break
            }
            i += 1
        }
        return nil
    }
}
