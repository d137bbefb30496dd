import CSanaKernels
import Foundation

extension Tensor {
    /// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · weight (weight nil: no affine).
    /// Statistics in float32 as the reference computes them (diffusers RMSNorm upcasts to float32).
    /// Body in C (sana_rms_norm): rows in parallel, vectorized.
    public func rmsNorm(weight: [Float]?, bias: [Float]? = nil, eps: Float) -> Tensor {
        var out = self
        out.rmsNormInPlace(weight: weight, bias: bias, eps: eps)
        return out
    }

    /// `rmsNorm` overwriting this tensor (no second copy of a large activation).
    public mutating func rmsNormInPlace(weight: [Float]?, bias: [Float]? = nil, eps: Float) {
        let c = lastDim, rows = self.rows
        precondition(weight.map { $0.count == c } ?? true && bias.map { $0.count == c } ?? true, "rmsNorm: affine size ≠ \(c)")
        data.withUnsafeMutableBufferPointer { o in
            weight.withUnsafeBufferPointerOrNil { wp in
                bias.withUnsafeBufferPointerOrNil { bp in sana_rms_norm(o.baseAddress, Int64(rows), Int64(c), wp, bp, eps) }
            }
        }
    }

    /// LayerNorm over the last dimension (weight/bias nil: no affine), biased variance like torch.
    /// Body in C (sana_layer_norm).
    public func layerNorm(weight: [Float]?, bias: [Float]?, eps: Float) -> Tensor {
        let c = lastDim
        precondition(weight.map { $0.count == c } ?? true && bias.map { $0.count == c } ?? true, "layerNorm: affine size ≠ \(c)")
        var out = self
        out.data.withUnsafeMutableBufferPointer { o in
            weight.withUnsafeBufferPointerOrNil { wp in
                bias.withUnsafeBufferPointerOrNil { bp in sana_layer_norm(o.baseAddress, Int64(rows), Int64(c), wp, bp, eps) }
            }
        }
        return out
    }
}
