// The bundle's preamble and JSON header, as specified in docs/FORMAT.md (versions 1 and 2).
import Foundation

public enum BundleFormat {
    public static let magic: [UInt8] = Array("SANABNDL".utf8)
    /// The newest version this build reads and writes. Version 2 adds the tensor record's `layout` key (tap-major
    /// convolution weights); the writer still writes 1 when no tensor uses it, so such bundles stay readable by
    /// version-1 builds.
    public static let version: UInt32 = 2
    public static let readableVersions: ClosedRange<UInt32> = 1 ... 2
    /// The version a bundle with these tensors is written as: the oldest that can describe them.
    public static func version(for tensors: [TensorRecord]) -> UInt32 { tensors.contains { $0.layout != nil } ? 2 : 1 }
    public static let preambleSize = 64
    public static let alignment = 64
    public static let maxHeaderLength = 256 << 20
    public static let maxBlobBytes = 1 << 30
    public static let maxDimensions = 8
    /// The components every bundle holds, in file order.
    public static let components = ["text_encoder", "transformer", "vae"]
}

/// One zstd frame in the data section.
public struct FrameRecord: Codable, Sendable, Equatable {
    public var offset: Int
    public var size: Int
    public var checksum: String
}

/// A file stored whole in one frame (tokenizer files).
public struct BlobRecord: Codable, Sendable {
    public var offset: Int
    public var size: Int
    public var bytes: Int
    public var checksum: String
    var frame: FrameRecord { FrameRecord(offset: offset, size: size, checksum: checksum) }
}

public struct ComponentRecord: Codable, Sendable {
    public var className: String
    public var library: String
    /// The exact text of the component's config.json.
    public var config: String
    public var sourceBytes: Int

    enum CodingKeys: String, CodingKey {
        case className = "class_name", library, config, sourceBytes = "source_bytes"
    }

    public init(className: String, library: String, config: String, sourceBytes: Int) {
        self.className = className
        self.library = library
        self.config = config
        self.sourceBytes = sourceBytes
    }
}

public struct SchedulerRecord: Codable, Sendable {
    public var className: String
    /// The exact text of scheduler_config.json.
    public var config: String

    enum CodingKeys: String, CodingKey { case className = "class_name", config }
}

public struct TensorRecord: Codable, Sendable {
    public var component: String
    public var name: String
    public var shape: [Int]
    public var type: String
    /// The policy class that chose `type` (QuantizationPolicy.TensorClass raw value).
    public var policyClass: String
    public var sourceDType: String
    public var group: String
    public var bytes: Int
    public var chunkRows: Int
    public var frames: [FrameRecord]
    public var relRMS: Double
    /// The column layout (TensorLayout raw value) when not the reference order; absent (nil) for the reference order.
    /// Version ≥ 2 only.
    public var layout: String?

    enum CodingKeys: String, CodingKey {
        case component, name, shape, type, policyClass = "class", sourceDType = "source_dtype", group, bytes
        case chunkRows = "chunk_rows", frames, relRMS = "rel_rms", layout
    }

    /// Matrix rows and columns of the reference shape (see sana_kernels.h). Valid after header validation.
    public var rows: Int { shape.count >= 2 ? shape[0] : 1 }
    public var cols: Int { shape.count >= 2 ? shape.dropFirst().reduce(1, *) : max(shape.first ?? 1, 1) }
    public var storedBytes: Int { frames.reduce(0) { $0 + $1.size } }
    public var storageType: StorageType? { StorageType(name: type) }
    /// The column layout; nil for an unknown `layout` value (a validation error).
    public var tensorLayout: TensorLayout? { layout.map { TensorLayout(rawValue: $0) } ?? .reference }
    /// Rows held by frame `i`.
    public func frameRows(_ i: Int) -> Range<Int> { i * chunkRows ..< min(rows, (i + 1) * chunkRows) }
}

/// A storage type's packed layout as the traits table defines it when the bundle is written. The reader compares it
/// with its own traits: a kernel build with a different int8/int4 layout must not misread an older bundle.
public struct StorageLayout: Codable, Sendable, Equatable {
    public var groupSize: Int
    /// row_bytes(256): bytes of one packed row of 256 elements.
    public var rowBytes256: Int

    enum CodingKeys: String, CodingKey { case groupSize = "group_size", rowBytes256 = "row_bytes_256" }

    public init(_ type: StorageType) {
        groupSize = type.groupSize
        rowBytes256 = type.matrixBytes(rows: 1, cols: 256) ?? 0
    }

    /// This build's layouts, by type name.
    public static var current: [String: StorageLayout] {
        Dictionary(uniqueKeysWithValues: StorageType.allCases.map { ($0.name, StorageLayout($0)) })
    }
}

public struct BundleHeader: Codable, Sendable {
    public var format: String
    public var version: Int
    public var alignment: Int
    public var converter: String
    public var modelIndex: String
    public var components: [String: ComponentRecord]
    public var scheduler: SchedulerRecord
    public var tokenizer: [String: BlobRecord]
    public var quantization: QuantizationPolicy
    public var sourceBytes: Int
    public var storageLayout: [String: StorageLayout]
    public var tensors: [TensorRecord]

    enum CodingKeys: String, CodingKey {
        case format, version, alignment, converter, modelIndex = "model_index", components, scheduler, tokenizer
        case quantization, sourceBytes = "source_bytes", storageLayout = "storage_layout", tensors
    }

    /// Deterministic bytes: sorted keys, no escaped slashes.
    func encoded() throws -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try e.encode(self)
    }
}

/// The group (layer) of a tensor name: up to and including the first run of numeric components, else the first
/// component. See docs/FORMAT.md "Groups".
public func bundleGroup(of name: String) -> String {
    let parts = name.split(separator: ".", omittingEmptySubsequences: false)
    guard let first = parts.firstIndex(where: { !$0.isEmpty && $0.allSatisfy(\.isNumber) }) else {
        return String(parts.first ?? "")
    }
    var end = first
    while end + 1 < parts.count, !parts[end + 1].isEmpty, parts[end + 1].allSatisfy(\.isNumber) { end += 1 }
    return parts[...end].joined(separator: ".")
}

/// Orders names so numeric components compare as numbers ("blocks.2" before "blocks.10").
public func naturalLess(_ a: String, _ b: String) -> Bool {
    let pa = a.split(separator: "."), pb = b.split(separator: ".")
    for (x, y) in zip(pa, pb) where x != y {
        if let i = Int(x), let j = Int(y) { return i < j }
        return x < y
    }
    return pa.count < pb.count
}
