// Bundle reader (docs/FORMAT.md). Trusts nothing: the preamble, header and every record are validated at open,
// each frame's checksum and size when it is read; every failure is a BundleError naming what was wrong.
// The file is memory-mapped; only the frames asked for are decompressed, and their pages are released afterwards.
import Dispatch
import Foundation

public enum BundleError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case notABundle(path: String)
    case unsupportedVersion(path: String, version: UInt32)
    case truncated(path: String, expected: String, actual: Int)
    case badPreamble(path: String, reason: String)
    case badHeader(path: String, reason: String)
    case badTensor(path: String, tensor: String, reason: String)
    case checksumMismatch(path: String, what: String)
    case corruptFrame(path: String, what: String, reason: String)
    case missingTensor(component: String, name: String)
    case unknownComponent(path: String, name: String)
    case missingFile(path: String, name: String)

    public var description: String {
        switch self {
        case let .cannotOpen(p, r): return "\(p): cannot open: \(r)"
        case let .notABundle(p): return "\(p): not a SanaEdge bundle (bad magic)"
        case let .unsupportedVersion(p, v): return "\(p): bundle format version \(v) is not supported (this build reads \(BundleFormat.version))"
        case let .truncated(p, e, a): return "\(p): truncated or damaged: expected \(e) bytes, file has \(a)"
        case let .badPreamble(p, r): return "\(p): corrupt preamble: \(r)"
        case let .badHeader(p, r): return "\(p): corrupt header: \(r)"
        case let .badTensor(p, t, r): return "\(p): tensor '\(t)': \(r)"
        case let .checksumMismatch(p, w): return "\(p): \(w): checksum mismatch (corrupt data)"
        case let .corruptFrame(p, w, r): return "\(p): \(w): corrupt frame: \(r)"
        case let .missingTensor(c, n): return "\(c): tensor '\(n)' not in the bundle"
        case let .unknownComponent(p, n): return "\(p): no component '\(n)'"
        case let .missingFile(p, n): return "\(p): no \(n) in the bundle"
        }
    }
}

public final class SanaBundle: @unchecked Sendable {
    public let path: String
    public let header: BundleHeader
    /// File size in bytes.
    public var fileSize: Int { file.size }
    let file: MappedFile
    let dataOffset: Int
    let dataLength: Int
    /// Component name → (tensor name → index into header.tensors).
    let index: [String: [String: Int]]
    /// Data offsets of the frames whose XXH64 has matched in this process (guarded by `verifiedLock`).
    private var verifiedFrames = Set<Int>()
    private let verifiedLock = NSLock()

    public init(path: String) throws {
        self.path = path
        do {
            file = try MappedFile(path: path)
        } catch {
            throw BundleError.cannotOpen(path: path, reason: error.reason)
        }
        let pre = BundleFormat.preambleSize
        guard file.size >= pre else {
            if file.size >= 8, Array(file.bytes(0 ..< 8)) != BundleFormat.magic { throw BundleError.notABundle(path: path) }
            throw BundleError.truncated(path: path, expected: "at least \(pre)", actual: file.size)
        }
        let p = file.bytes(0 ..< pre)
        guard Array(p[0 ..< 8]) == BundleFormat.magic else { throw BundleError.notABundle(path: path) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        guard XXH64.hash(UnsafeRawBufferPointer(rebasing: p[0 ..< 56])) == u64(56) else {
            throw BundleError.badPreamble(path: path, reason: "checksum mismatch")
        }
        let version = u32(8)
        guard BundleFormat.readableVersions.contains(version) else { throw BundleError.unsupportedVersion(path: path, version: version) }
        guard u32(12) == 0 else { throw BundleError.badPreamble(path: path, reason: "reserved flags \(u32(12)) are not 0") }
        guard u64(16) == UInt64(pre) else { throw BundleError.badPreamble(path: path, reason: "data offset \(u64(16)) is not \(pre)") }
        let maxInt = UInt64(Int.max)
        guard u64(24) <= maxInt, u64(32) <= maxInt, u64(40) <= UInt64(BundleFormat.maxHeaderLength), u64(40) >= 2 else {
            throw BundleError.badPreamble(path: path, reason: "data length \(u64(24)) or header length \(u64(40)) out of range")
        }
        let dataLength = Int(u64(24)), headerOffset = Int(u64(32)), headerLength = Int(u64(40))
        guard Checked.add(pre, dataLength) == headerOffset else {
            throw BundleError.badPreamble(path: path, reason: "header offset \(headerOffset) ≠ data offset + data length")
        }
        guard let end = Checked.add(headerOffset, headerLength), end == file.size else {
            throw BundleError.truncated(path: path, expected: "\(headerOffset) + \(headerLength)", actual: file.size)
        }
        let headerBytes = file.bytes(headerOffset ..< end)
        guard XXH64.hash(headerBytes) == u64(48) else { throw BundleError.checksumMismatch(path: path, what: "header") }
        let header: BundleHeader
        do {
            header = try JSONDecoder().decode(BundleHeader.self, from: Data(headerBytes))
        } catch let e as DecodingError {
            throw BundleError.badHeader(path: path, reason: Self.describe(e))
        } catch {
            throw BundleError.badHeader(path: path, reason: "\(error)")
        }
        self.dataOffset = pre
        self.dataLength = dataLength
        self.header = header
        self.index = try Self.validate(header, path: path, dataLength: dataLength, preambleVersion: version)
    }

    /// The bundle being written at `path` (BundleWriter's temporary file, preamble not yet written): the first
    /// `dataLength` bytes of the data section, described by `header`, validated as at open. Used to compute derived
    /// components from the stored weights during conversion (DerivedComponent.swift).
    init(unfinished path: String, header: BundleHeader, dataLength: Int) throws {
        self.path = path
        do {
            file = try MappedFile(path: path)
        } catch {
            throw BundleError.cannotOpen(path: path, reason: error.reason)
        }
        guard file.size == BundleFormat.preambleSize + dataLength else {
            throw BundleError.truncated(path: path, expected: "\(BundleFormat.preambleSize + dataLength)", actual: file.size)
        }
        self.dataOffset = BundleFormat.preambleSize
        self.dataLength = dataLength
        self.header = header
        self.index = try Self.validate(header, path: path, dataLength: dataLength, preambleVersion: UInt32(header.version))
    }

    private static func describe(_ e: DecodingError) -> String {
        switch e {
        case let .keyNotFound(k, c): return "missing '\(k.stringValue)' at \(c.codingPath.map(\.stringValue).joined(separator: "."))"
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c):
            return "bad value at '\(c.codingPath.map(\.stringValue).joined(separator: "."))': \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    /// Every rule of docs/FORMAT.md "What a reader must check", items 2–4 and 6.
    private static func validate(_ h: BundleHeader, path: String, dataLength: Int, preambleVersion: UInt32) throws -> [String: [String: Int]] {
        guard h.format == "sana-bundle" else { throw BundleError.badHeader(path: path, reason: "format '\(h.format)'") }
        guard h.version == Int(preambleVersion) else {
            throw BundleError.badHeader(path: path, reason: "header version \(h.version) ≠ preamble version \(preambleVersion)")
        }
        guard h.alignment > 0, h.alignment <= 1 << 20, h.alignment & (h.alignment - 1) == 0 else {
            throw BundleError.badHeader(path: path, reason: "alignment \(h.alignment)")
        }
        for c in BundleFormat.components where h.components[c] == nil {
            throw BundleError.badHeader(path: path, reason: "no component '\(c)'")
        }
        guard h.tokenizer["tokenizer.json"] != nil else { throw BundleError.missingFile(path: path, name: "tokenizer/tokenizer.json") }
        var frames: [(FrameRecord, String)] = []
        func checkFrame(_ f: FrameRecord, _ what: String) throws {
            guard f.offset >= 0, f.size > 0, f.offset % h.alignment == 0, let e = Checked.add(f.offset, f.size), e <= dataLength else {
                throw BundleError.badHeader(path: path, reason: "\(what): frame [\(f.offset), +\(f.size)) outside the data (\(dataLength) bytes) or misaligned")
            }
            guard XXH64.parseHex(f.checksum) != nil else { throw BundleError.badHeader(path: path, reason: "\(what): checksum '\(f.checksum)'") }
            frames.append((f, what))
        }
        for (name, b) in h.tokenizer {
            guard b.bytes >= 0, b.bytes <= BundleFormat.maxBlobBytes else {
                throw BundleError.badHeader(path: path, reason: "tokenizer/\(name): size \(b.bytes)")
            }
            try checkFrame(b.frame, "tokenizer/\(name)")
        }
        var index: [String: [String: Int]] = [:]
        for (i, t) in h.tensors.enumerated() {
            let label = "\(t.component)/\(t.name)"
            func bad(_ reason: String) -> BundleError { BundleError.badTensor(path: path, tensor: label, reason: reason) }
            guard h.components[t.component] != nil else { throw bad("unknown component") }
            guard !t.name.isEmpty else { throw bad("empty name") }
            guard index[t.component, default: [:]][t.name] == nil else { throw bad("listed twice") }
            guard let type = t.storageType else { throw bad("unknown storage type '\(t.type)'") }
            guard h.storageLayout[t.type] == StorageLayout(type) else {
                throw bad("written with a \(t.type) layout \(h.storageLayout[t.type].map { "\($0)" } ?? "not recorded") that this build's kernels do not use (\(StorageLayout(type)))")
            }
            guard t.shape.count <= BundleFormat.maxDimensions, t.shape.allSatisfy({ $0 >= 1 }) else { throw bad("bad shape \(t.shape)") }
            guard Checked.product(t.shape) != nil, let expected = type.matrixBytes(rows: t.rows, cols: t.cols) else {
                throw bad("shape \(t.shape) overflows")
            }
            guard t.bytes == expected else { throw bad("packed size \(t.bytes), expected \(expected) for \(t.type) \(t.shape)") }
            if let layout = t.layout {
                // docs/FORMAT.md "Convolution weight layout": version 2, a k×k convolution weight [O, I, kh, kw].
                guard h.version >= 2 else { throw bad("layout '\(layout)' in a version \(h.version) bundle") }
                guard t.tensorLayout == .tapMajor else { throw bad("unknown layout '\(layout)'") }
                guard t.shape.count == 4, t.shape[2] * t.shape[3] > 1 else { throw bad("layout '\(layout)' for shape \(t.shape), not a k×k convolution weight") }
            }
            guard t.chunkRows >= 1, t.chunkRows <= t.rows else { throw bad("chunk_rows \(t.chunkRows) for \(t.rows) rows") }
            guard t.chunkRows == t.rows || t.chunkRows % type.rowBlock == 0 else {
                throw bad("chunk_rows \(t.chunkRows) is not a multiple of the \(t.type) row block \(type.rowBlock)")
            }
            let frameCount = (t.rows + t.chunkRows - 1) / t.chunkRows
            guard t.frames.count == frameCount else { throw bad("\(t.frames.count) frames, expected \(frameCount)") }
            for (k, f) in t.frames.enumerated() { try checkFrame(f, "\(label) frame \(k)") }
            index[t.component, default: [:]][t.name] = i
        }
        frames.sort { $0.0.offset < $1.0.offset }
        for (a, b) in zip(frames, frames.dropFirst()) where a.0.offset + a.0.size > b.0.offset {
            throw BundleError.badHeader(path: path, reason: "\(b.1) overlaps \(a.1)")
        }
        return index
    }

    // MARK: Access

    /// The weights of one component ("text_encoder", "transformer", "vae") as a WeightSource.
    public func component(_ name: String) throws -> BundleComponent {
        guard let names = index[name] ?? (header.components[name] != nil ? [:] : nil) else {
            throw BundleError.unknownComponent(path: path, name: name)
        }
        return BundleComponent(bundle: self, name: name, names: names)
    }

    /// The exact bytes of a component's config.json.
    public func config(_ component: String) throws -> Data {
        guard let c = header.components[component] else { throw BundleError.unknownComponent(path: path, name: component) }
        return Data(c.config.utf8)
    }

    public var modelIndex: Data { Data(header.modelIndex.utf8) }
    public var schedulerConfig: Data { Data(header.scheduler.config.utf8) }

    /// A tokenizer file ("tokenizer.json", "tokenizer_config.json"), decompressed.
    public func tokenizerFile(_ name: String = "tokenizer.json") throws -> Data {
        guard let b = header.tokenizer[name] else { throw BundleError.missingFile(path: path, name: "tokenizer/\(name)") }
        return Data(try decompress(b.frame, bytes: b.bytes, what: "tokenizer/\(name)"))
    }

    /// Checks and decompresses one frame to exactly `bytes` bytes, then releases its pages.
    func decompress(_ f: FrameRecord, bytes: Int, what: String) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: bytes)
        try out.withUnsafeMutableBytes { try decompress(f, into: $0, what: what) }
        return out
    }

    func decompress(_ f: FrameRecord, into dst: UnsafeMutableRawBufferPointer, what: String) throws {
        let range = dataOffset + f.offset ..< dataOffset + f.offset + f.size  // validated at open
        defer { file.release(range) }
        let src = file.bytes(range)
        // The frame's XXH64 is checked on its first read in this process only: the streamed DiT blocks are read
        // again every step (~0.8 GB per step at 1.6B int4), and zstd still checks every decompression against the
        // frame's own content checksum (written by `sana convert`, see Zstd.compress).
        if !verifiedLock.withLock({ verifiedFrames.contains(f.offset) }) {
            guard XXH64.hash(src) == XXH64.parseHex(f.checksum) else { throw BundleError.checksumMismatch(path: path, what: what) }
            verifiedLock.withLock { _ = verifiedFrames.insert(f.offset) }
        }
        if let reason = Zstd.decompressFrame(src, into: dst) {
            throw BundleError.corruptFrame(path: path, what: what, reason: reason)
        }
    }

    /// Hints the kernel to read a span of the data section in one go.
    func willNeed(_ frames: [FrameRecord]) {
        guard let lo = frames.map(\.offset).min(), let hi = frames.map({ $0.offset + $0.size }).max() else { return }
        file.willNeed(dataOffset + lo ..< dataOffset + hi)
    }

    /// Decompresses every frame (tensors and tokenizer files), checking checksums and sizes. Returns the number of
    /// frames and decompressed bytes. Calls `progress(done, total)` per tensor.
    public func verify(progress: (Int, Int) -> Void = { _, _ in }) throws -> (frames: Int, bytes: Int) {
        var frames = 0, bytes = 0
        for (name, b) in header.tokenizer.sorted(by: { $0.key < $1.key }) {
            _ = try decompress(b.frame, bytes: b.bytes, what: "tokenizer/\(name)")
            frames += 1
            bytes += b.bytes
        }
        for (i, t) in header.tensors.enumerated() {
            let c = try component(t.component)
            for k in t.frames.indices {
                bytes += try c.frameBytes(t, k).count
                frames += 1
            }
            progress(i + 1, header.tensors.count)
        }
        return (frames, bytes)
    }
}

/// One component's tensors in a bundle. Names are the reference state-dict keys.
public final class BundleComponent: WeightSource, @unchecked Sendable {
    public let bundle: SanaBundle
    public let name: String
    private let names: [String: Int]

    init(bundle: SanaBundle, name: String, names: [String: Int]) {
        self.bundle = bundle
        self.name = name
        self.names = names
    }

    public var tensorNames: Set<String> { Set(names.keys) }

    /// The record of a tensor (shape, type, frames) without reading it.
    public func info(_ tensor: String) throws -> TensorRecord {
        guard let i = names[tensor] else { throw BundleError.missingTensor(component: name, name: tensor) }
        return bundle.header.tensors[i]
    }

    func frameBytes(_ t: TensorRecord, _ k: Int) throws -> [UInt8] {
        let type = t.storageType ?? .f32  // validated at open
        let rows = t.frameRows(k)
        let size = type.matrixBytes(rows: rows.count, cols: t.cols) ?? 0
        return try bundle.decompress(t.frames[k], bytes: size, what: "\(name)/\(t.name) frame \(k)")
    }

    private func load(_ t: TensorRecord) throws -> StoredTensor {
        let type = t.storageType ?? .f32
        var bytes = [UInt8](repeating: 0, count: t.bytes)
        try bytes.withUnsafeMutableBytes { dst in
            let out = UnsafeDestination(buffer: dst)
            let frame = { @Sendable [self] (k: Int) throws in
                // Frame k holds rows [lo, hi); chunk starts are multiples of the row block (validated at open), so
                // its bytes start where a packed matrix of `lo` rows ends.
                let rows = t.frameRows(k)
                let start = rows.lowerBound == 0 ? 0 : type.matrixBytes(rows: rows.lowerBound, cols: t.cols) ?? 0
                let size = type.matrixBytes(rows: rows.count, cols: t.cols) ?? 0
                let part = UnsafeMutableRawBufferPointer(rebasing: out.buffer[start ..< start + size])
                try bundle.decompress(t.frames[k], into: part, what: "\(name)/\(t.name) frame \(k)")
            }
            guard t.frames.count > 1 else { return try frame(0) }
            // Row chunks are independent frames writing disjoint byte ranges: decompress them on all cores (a
            // fresh process streaming Gemma-2's layers spends most of its time here).
            let errors = LockedErrors()
            DispatchQueue.concurrentPerform(iterations: t.frames.count) { k in
                do { try frame(k) } catch { errors.record(k, error) }
            }
            if let first = errors.first { throw first }
        }
        return StoredTensor(name: t.name, shape: t.shape, type: type, bytes: bytes, layout: t.tensorLayout ?? .reference)
    }

    public func tensor(_ tensor: String) throws -> StoredTensor {
        try load(try info(tensor))
    }

    /// All tensors whose names start with `prefix` (e.g. "transformer_blocks.3."), read as one contiguous span of
    /// the file, as a WeightSource with the full names. Drop it to free the memory.
    public func group(prefix: String) throws -> TensorGroup {
        let records = names.keys.filter { $0.hasPrefix(prefix) }.sorted().compactMap { try? info($0) }
        bundle.willNeed(records.flatMap(\.frames))
        var tensors: [String: StoredTensor] = [:]
        for r in records { tensors[r.name] = try load(r) }
        return TensorGroup(tensors: tensors)
    }

    /// Rows `range` of the matrix view of a tensor as float32 [range.count, cols], decompressing only the frames that
    /// hold them (for row-chunked tensors such as a token embedding).
    public func rows(of tensor: String, _ range: Range<Int>) throws -> [Float] {
        let t = try info(tensor)
        guard range.lowerBound >= 0, range.upperBound <= t.rows else {
            throw BundleError.badTensor(path: bundle.path, tensor: "\(name)/\(tensor)", reason: "rows \(range) outside 0..<\(t.rows)")
        }
        let type = t.storageType ?? .f32
        var out = [Float]()
        out.reserveCapacity(range.count * t.cols)
        var k = range.lowerBound / t.chunkRows
        while k < t.frames.count, t.frameRows(k).lowerBound < range.upperBound {
            let fr = t.frameRows(k)
            let chunk = StoredTensor(name: t.name, shape: [fr.count, t.cols], type: type, bytes: try frameBytes(t, k))
            let lo = max(range.lowerBound, fr.lowerBound), hi = min(range.upperBound, fr.upperBound)
            out += chunk.unpackRows(lo - fr.lowerBound, hi - lo)
            k += 1
        }
        return out
    }
}

/// Tensors read together (one layer), as a WeightSource.
public struct TensorGroup: WeightSource {
    public let tensors: [String: StoredTensor]
    public var tensorNames: Set<String> { Set(tensors.keys) }

    public func tensor(_ name: String) throws -> StoredTensor {
        guard let t = tensors[name] else { throw SafetensorsError.missingTensor(name: name) }
        return t
    }
}

/// A destination buffer shared by workers that write disjoint ranges of it.
private struct UnsafeDestination: @unchecked Sendable {
    let buffer: UnsafeMutableRawBufferPointer
}

/// Errors of concurrent frame reads; the one of the lowest frame index is reported, so errors are deterministic.
private final class LockedErrors: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [(Int, Error)] = []

    func record(_ k: Int, _ e: Error) { lock.withLock { errors.append((k, e)) } }
    var first: Error? { lock.withLock { errors.min { $0.0 < $1.0 }?.1 } }
}
