import Foundation

extension Tensor {
    /// RMSNorm over the last dimension: x / sqrt(mean(x²) + eps) · weight (weight nil: no affine).
    /// Statistics in float32 as the reference computes them (diffusers RMSNorm upcasts to float32).
    public func rmsNorm(weight: [Float]?, bias: [Float]? = nil, eps: Float) -> Tensor {
        var out = self
        out.rmsNormInPlace(weight: weight, bias: bias, eps: eps)
        return out
    }

    /// `rmsNorm` overwriting this tensor (no second copy of a large activation).
    public mutating func rmsNormInPlace(weight: [Float]?, bias: [Float]? = nil, eps: Float) {
        let c = lastDim, rows = self.rows
        data.withUnsafeMutableBufferPointer { o in
            for r in 0 ..< rows {
                var ss: Float = 0
                for j in 0 ..< c { ss += o[r * c + j] * o[r * c + j] }
                let inv = 1 / (ss / Float(c) + eps).squareRoot()
                for j in 0 ..< c {
                    var v = o[r * c + j] * inv
                    if let weight { v *= weight[j] }
                    if let bias { v += bias[j] }
                    o[r * c + j] = v
                }
            }
        }
    }

    /// LayerNorm over the last dimension (weight/bias nil: no affine), biased variance like torch.
    public func layerNorm(weight: [Float]?, bias: [Float]?, eps: Float) -> Tensor {
        let c = lastDim
        var out = self
        out.data.withUnsafeMutableBufferPointer { o in
            for r in 0 ..< rows {
                var mean: Float = 0
                for j in 0 ..< c { mean += o[r * c + j] }
                mean /= Float(c)
                var v: Float = 0
                for j in 0 ..< c { let d = o[r * c + j] - mean; v += d * d }
                let inv = 1 / (v / Float(c) + eps).squareRoot()
                for j in 0 ..< c {
                    var y = (o[r * c + j] - mean) * inv
                    if let weight { y *= weight[j] }
                    if let bias { y += bias[j] }
                    o[r * c + j] = y
                }
            }
        }
        return out
    }
}
