/// A dense float32 tensor, row-major, with its shape. The layout convention of the whole runtime is
/// channels-last: token sequences are [B, L, C] and feature maps are [B, H, W, C]. Reference tensors in
/// NCHW are permuted once at the boundary (see `permuted`).
public struct Tensor: Sendable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count, "Tensor: \(data.count) values for shape \(shape)")
        self.shape = shape
        self.data = data
    }

    public init(zeros shape: [Int]) {
        self.shape = shape
        self.data = [Float](repeating: 0, count: shape.reduce(1, *))
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }
    /// Size of the last dimension (channels / features).
    public var lastDim: Int { shape.last ?? 1 }
    /// Product of all dimensions but the last: the number of rows of the [rows, lastDim] matrix view.
    public var rows: Int { count / max(lastDim, 1) }

    /// Same data, new shape (element count must agree).
    public func reshaped(_ newShape: [Int]) -> Tensor { Tensor(shape: newShape, data: data) }

    /// Permutes dimensions: result dimension i is source dimension `axes[i]`.
    public func permuted(_ axes: [Int]) -> Tensor {
        precondition(axes.count == rank && Set(axes) == Set(0 ..< rank), "permuted: bad axes \(axes) for rank \(rank)")
        let newShape = axes.map { shape[$0] }
        var srcStrides = [Int](repeating: 1, count: rank)
        for i in stride(from: rank - 2, through: 0, by: -1) { srcStrides[i] = srcStrides[i + 1] * shape[i + 1] }
        let strides = axes.map { srcStrides[$0] }
        var out = [Float](repeating: 0, count: count)
        var index = [Int](repeating: 0, count: rank)
        data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                var offset = 0
                for o in 0 ..< dst.count {
                    dst[o] = src[offset]
                    var d = rank - 1
                    while d >= 0 {
                        index[d] += 1
                        offset += strides[d]
                        if index[d] < newShape[d] { break }
                        offset -= strides[d] * newShape[d]
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        return Tensor(shape: newShape, data: out)
    }

    /// Largest absolute value (0 for an empty tensor).
    public var maxAbs: Float { data.reduce(0) { max($0, abs($1)) } }
}
