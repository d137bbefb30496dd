import CSanaKernels
import Foundation

/// Pointwise activations and arithmetic on tensors (channels-last; see Tensor).
public enum Activation: String, Sendable, Codable {
    case silu, relu, gelu, geluTanh = "gelu_pytorch_tanh", identity

    /// Parses the reference's activation names ("silu", "relu", "gelu", "gelu_pytorch_tanh", "gelu_tanh", nil).
    public init?(referenceName: String?) {
        switch referenceName {
        case nil, "identity": self = .identity
        case "silu", "swish": self = .silu
        case "relu": self = .relu
        case "gelu": self = .gelu
        case "gelu_pytorch_tanh", "gelu_tanh", "gelu_new": self = .geluTanh
        default: return nil
        }
    }

    @inline(__always) public func callAsFunction(_ x: Float) -> Float {
        switch self {
        case .silu: return x / (1 + expf(-x))
        case .relu: return max(x, 0)
        case .gelu: return 0.5 * x * (1 + erff(x * 0.707_106_781_186_547_5))
        case .geluTanh:
            let c: Float = 0.797_884_560_802_865_4  // sqrt(2/pi)
            return 0.5 * x * (1 + tanhf(c * (x + 0.044715 * x * x * x)))
        case .identity: return x
        }
    }

    /// The C activation (sana_activate, parallel and vectorized) with the same formula as callAsFunction.
    var kernel: sana_activation? {
        switch self {
        case .silu: return SANA_ACT_SILU
        case .relu: return SANA_ACT_RELU
        case .gelu: return SANA_ACT_GELU
        case .geluTanh: return SANA_ACT_GELU_TANH
        case .identity: return nil
        }
    }

    public func apply(_ t: Tensor) -> Tensor {
        guard let kernel else { return t }
        var out = t
        out.data.withUnsafeMutableBufferPointer { p in sana_activate(p.baseAddress, Int64(p.count), Int32(kernel.rawValue)) }
        return out
    }
}

extension Tensor {
    /// Elementwise sum of two tensors of the same shape.
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "add: shapes \(a.shape) and \(b.shape) differ")
        var out = a
        out.data.withUnsafeMutableBufferPointer { o in
            b.data.withUnsafeBufferPointer { q in for i in 0 ..< o.count { o[i] += q[i] } }
        }
        return out
    }

    /// Elementwise product of two tensors of the same shape.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        precondition(a.shape == b.shape, "mul: shapes \(a.shape) and \(b.shape) differ")
        var out = a
        out.data.withUnsafeMutableBufferPointer { o in
            b.data.withUnsafeBufferPointer { q in for i in 0 ..< o.count { o[i] *= q[i] } }
        }
        return out
    }

    /// Multiplies every element by a scalar.
    public func scaled(_ s: Float) -> Tensor {
        var out = self
        out.data.withUnsafeMutableBufferPointer { o in for i in 0 ..< o.count { o[i] *= s } }
        return out
    }

    /// Adds a per-channel vector [C] to every row of the [rows, C] view.
    public func addingChannels(_ v: [Float]) -> Tensor {
        precondition(v.count == lastDim, "addingChannels: \(v.count) values for \(lastDim) channels")
        var out = self
        let c = lastDim
        out.data.withUnsafeMutableBufferPointer { o in
            for r in 0 ..< rows { for j in 0 ..< c { o[r * c + j] += v[j] } }
        }
        return out
    }

    /// Splits the last dimension into `parts` equal chunks (torch.chunk(dim=-1)).
    public func chunkedLast(_ parts: Int) -> [Tensor] {
        precondition(lastDim % parts == 0, "chunkedLast: \(lastDim) not divisible by \(parts)")
        let c = lastDim, w = c / parts
        var shape = self.shape
        shape[shape.count - 1] = w
        return (0 ..< parts).map { p in
            var out = [Float](repeating: 0, count: rows * w)
            data.withUnsafeBufferPointer { src in
                for r in 0 ..< rows { for j in 0 ..< w { out[r * w + j] = src[r * c + p * w + j] } }
            }
            return Tensor(shape: shape, data: out)
        }
    }
}
