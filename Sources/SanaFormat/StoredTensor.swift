import CSanaKernels

/// The column order of a stored matrix (docs/FORMAT.md "Convolution weight layout").
public enum TensorLayout: String, Sendable, Codable {
    /// The reference element order: [N, d1, d2, …] row-major (a conv weight [O, I, kh, kw] has columns (cin, ky, kx)).
    case reference
    /// A k×k convolution weight [O, I, kh, kw] stored as [O, kh, kw, I]: columns (ky, kx, cin), so with I a multiple
    /// of the quantization group every group lies within one kernel tap (sana_conv2d_ordered's fast path).
    case tapMajor = "tap_major"

    /// The reference-order values [O, I, kh, kw] of `shape` permuted to this layout's column order.
    public func permuting(_ values: [Float], shape: [Int]) -> [Float] {
        guard self == .tapMajor, shape.count == 4 else { return values }
        return Self.swappingInner(values, shape[0], shape[1], shape[2] * shape[3])
    }

    /// The inverse of `permuting`: values in this layout back to the reference order.
    public func unpermuting(_ values: [Float], shape: [Int]) -> [Float] {
        guard self == .tapMajor, shape.count == 4 else { return values }
        return Self.swappingInner(values, shape[0], shape[2] * shape[3], shape[1])
    }

    /// [n][a][b] → [n][b][a].
    static func swappingInner(_ values: [Float], _ n: Int, _ a: Int, _ b: Int) -> [Float] {
        var out = values
        for r in 0 ..< n { for i in 0 ..< a { for j in 0 ..< b { out[(r * b + j) * a + i] = values[(r * a + i) * b + j] } } }
        return out
    }
}

/// One tensor as it is stored: reference shape, storage type, column layout and packed bytes.
/// The matrix view is [shape[0], product(shape[1...])] (a 1-D tensor is one row), see sana_kernels.h; its columns
/// are in `layout`'s order (the reference order unless a tap-major k×k convolution weight).
public struct StoredTensor: Sendable {
    public let name: String
    public let shape: [Int]
    public let type: StorageType
    public let bytes: [UInt8]
    public let layout: TensorLayout

    public init(name: String, shape: [Int], type: StorageType, bytes: [UInt8], layout: TensorLayout = .reference) {
        self.name = name
        self.shape = shape
        self.type = type
        self.bytes = bytes
        self.layout = layout
    }

    public var elementCount: Int { shape.reduce(1, *) }
    /// Matrix rows: the first dimension (1 for a scalar or 1-D tensor).
    public var rows: Int { shape.count >= 2 ? shape[0] : 1 }
    /// Matrix columns: the product of the remaining dimensions.
    public var cols: Int { shape.count >= 2 ? shape.dropFirst().reduce(1, *) : max(shape.first ?? 1, 1) }

    /// All elements as float32, in the reference element order (whatever the stored layout).
    public func floats() -> [Float] {
        layout.unpermuting(unpackRows(0, rows), shape: shape)
    }

    /// Rows [start, start+count) of the matrix view as float32 [count, cols], columns in the stored `layout`'s order.
    public func unpackRows(_ start: Int, _ count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count * cols)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                sana_matrix_unpack_rows(type.rawValue, src.baseAddress, Int64(rows), Int64(cols), Int64(start),
                                        Int64(count), dst.baseAddress)
            }
        }
        return out
    }

    /// The row concatenation [Σ rows, cols] of matrices of one storage type and width, as one packed matrix.
    /// Packed bytes concatenate directly when every part but the last has a multiple of `rowBlock` rows;
    /// otherwise the parts are unpacked and packed again (exact for float types, a re-quantization of already
    /// quantized values otherwise: each group's largest value maps to the same extreme code, so the codes come back
    /// unchanged and the scales up to float rounding).
    public static func concatenatingRows(name: String, _ parts: [StoredTensor]) -> StoredTensor {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.type == parts[0].type && $0.cols == parts[0].cols && $0.layout == .reference },
                     "concatenatingRows: parts differ in type or width, or are not in the reference layout")
        let type = parts[0].type, cols = parts[0].cols, rows = parts.reduce(0) { $0 + $1.rows }
        if parts.dropLast().allSatisfy({ $0.rows % type.rowBlock == 0 }) {
            return StoredTensor(name: name, shape: [rows, cols], type: type, bytes: parts.flatMap(\.bytes))
        }
        return pack(name: name, shape: [rows, cols], values: parts.flatMap { $0.floats() }, as: type)
    }

    /// Packs float32 values of the given shape (reference order) as `type` in `layout` (quantizing with the scalar
    /// reference code).
    public static func pack(name: String, shape: [Int], values: [Float], as type: StorageType,
                            layout: TensorLayout = .reference) -> StoredTensor {
        let values = layout.permuting(values, shape: shape)
        let rows = shape.count >= 2 ? shape[0] : 1
        let cols = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : max(shape.first ?? 1, 1)
        precondition(rows * cols == values.count, "pack: \(name) has \(values.count) values for shape \(shape)")
        let size = type.matrixBytes(rows: rows, cols: cols) ?? 0
        var bytes = [UInt8](repeating: 0, count: size)
        values.withUnsafeBufferPointer { src in
            bytes.withUnsafeMutableBytes { dst in
                sana_matrix_pack(type.rawValue, src.baseAddress, Int64(rows), Int64(cols), dst.baseAddress)
            }
        }
        return StoredTensor(name: name, shape: shape, type: type, bytes: bytes, layout: layout)
    }
}

/// Where a model's weights come from: a diffusers directory (safetensors) or a bundle. Names are the reference
/// state-dict keys of one component (e.g. "transformer_blocks.0.attn1.to_q.weight").
public protocol WeightSource: Sendable {
    /// Every tensor name this source holds, for strict loading (missing and unexpected names are errors).
    var tensorNames: Set<String> { get }
    /// Loads one tensor. Throws when the name is absent or the data is bad.
    func tensor(_ name: String) throws -> StoredTensor
}
