// Components computed during conversion from the stored weights of a component already written (docs/FORMAT.md
// "Derived components"), such as the text encoder's instruction prefix cache. SanaFormat does not know how to compute
// them: the caller (SanaKit, wired by the CLI) passes a `DerivedComponent` whose `compute` reads the bundle written so
// far and appends float32 tensors. They are written right after the component they derive from, inside the same
// temporary file, so a failed computation leaves no bundle, like any other conversion error.
import Foundation

public struct DerivedComponent: Sendable {
    /// The component name in the bundle (not one of BundleFormat.components).
    public let name: String
    /// The component whose tensors must be in the bundle before this one is computed.
    public let after: String
    /// Reads the unfinished bundle (tokenizer files, configs, and the tensors of `after` and of the components
    /// before it), appends tensors with the writer, and returns the component's record (class name, library, config
    /// text; its source_bytes is 0), or nil to add nothing (then it must append nothing).
    public let compute: @Sendable (SanaBundle, DerivedTensorWriter) throws -> ComponentRecord?

    public init(name: String, after: String,
                compute: @escaping @Sendable (SanaBundle, DerivedTensorWriter) throws -> ComponentRecord?) {
        self.name = name
        self.after = after
        self.compute = compute
    }
}

/// Appends the tensors of one derived component: float32, one zstd frame each (or row chunks, as the policy's
/// `chunk_elements` / `frame_elements` say), class `derived`.
public final class DerivedTensorWriter {
    let component: String
    let writer: BundleWriter
    let policy: QuantizationPolicy
    let zstd: ZstdCompressor
    public private(set) var records: [TensorRecord] = []

    init(component: String, writer: BundleWriter, policy: QuantizationPolicy, zstd: ZstdCompressor) {
        self.component = component
        self.writer = writer
        self.policy = policy
        self.zstd = zstd
    }

    /// Bytes the tensors appended so far occupy in the file (compressed).
    public var storedBytes: Int { records.reduce(0) { $0 + $1.storedBytes } }

    /// Appends `values` (reference element order) as a float32 tensor of `shape`.
    public func append(name: String, shape: [Int], values: [Float]) throws {
        guard !name.isEmpty, !records.contains(where: { $0.name == name }) else {
            throw BundleWriteError.io(path: writer.path, reason: "\(component): tensor name '\(name)' empty or repeated")
        }
        guard shape.count <= BundleFormat.maxDimensions, shape.allSatisfy({ $0 >= 1 }),
              Checked.product(shape) == values.count else {
            throw BundleWriteError.io(path: writer.path, reason: "\(component)/\(name): shape \(shape) does not hold \(values.count) values")
        }
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw BundleWriteError.io(path: writer.path, reason: "\(component)/\(name): non-finite value at element \(bad)")
        }
        let rows = shape.count >= 2 ? shape[0] : 1, cols = values.count / rows
        let chunkRows = values.count > policy.chunkElements ? min(rows, max(1, policy.frameElements / cols)) : rows
        var frames: [FrameRecord] = []
        var lo = 0
        while lo < rows {
            let hi = min(rows, lo + chunkRows)
            let frame = values[lo * cols ..< hi * cols].withUnsafeBytes { zstd.compress($0) }  // f32 packing = raw rows
            frames.append(try writer.appendFrame(frame))
            lo = hi
        }
        records.append(TensorRecord(component: component, name: name, shape: shape, type: StorageType.f32.name,
                                    policyClass: "derived", sourceDType: "F32", group: bundleGroup(of: name),
                                    bytes: 4 * values.count, chunkRows: chunkRows, frames: frames, relRMS: 0))
    }
}
