// Follows diffusers/models/transformers/sana_transformer.py `SanaModulatedNorm`: LayerNorm (no affine, eps 1e-6),
// then shift/scale from the model's scale_shift_table [2, C] plus the embedded timestep [B, C].

public struct SanaModulatedNorm: Sendable {
    public let scaleShiftTable: [Float]  // scale_shift_table: [2, C] (row 0 shift, row 1 scale)
    public let eps: Float = 1e-6

    /// x [B, N, C], embeddedTimestep [B, C] → LN(x)·(1 + scale) + shift.
    public func callAsFunction(_ x: Tensor, embeddedTimestep: Tensor) -> Tensor {
        let c = x.lastDim, b = x.shape[0]
        // (table[None] + temb[:, None]).chunk(2, dim=1): shift = table[0] + temb, scale = table[1] + temb.
        var shift = [Float](repeating: 0, count: b * c), scale = shift
        for bi in 0 ..< b {
            for j in 0 ..< c {
                let t = embeddedTimestep.data[bi * c + j]
                shift[bi * c + j] = scaleShiftTable[j] + t
                scale[bi * c + j] = scaleShiftTable[c + j] + t
            }
        }
        return x.layerNorm(weight: nil, bias: nil, eps: eps).modulated(shift: shift, scale: scale)
    }
}

extension Tensor {
    /// x·(1 + scale) + shift with per-batch vectors: x [B, N, C], shift and scale [B·C] (batch-major).
    func modulated(shift: [Float], scale: [Float]) -> Tensor {
        let b = shape[0], c = lastDim, n = count / max(b * c, 1)
        precondition(shift.count == b * c && scale.count == b * c, "modulated: \(shift.count) shifts for [\(b), \(c)]")
        var out = self
        out.data.withUnsafeMutableBufferPointer { o in
            for bi in 0 ..< b {
                for t in 0 ..< n {
                    let row = (bi * n + t) * c
                    for j in 0 ..< c { o[row + j] = o[row + j] * (1 + scale[bi * c + j]) + shift[bi * c + j] }
                }
            }
        }
        return out
    }

    /// x + gate ⊙ y with a per-batch gate: x, y [B, N, C], gate [B·C] (batch-major).
    func addingGated(_ y: Tensor, gate: [Float]) -> Tensor {
        precondition(shape == y.shape, "addingGated: shapes \(shape) and \(y.shape) differ")
        let b = shape[0], c = lastDim, n = count / max(b * c, 1)
        precondition(gate.count == b * c, "addingGated: \(gate.count) gates for [\(b), \(c)]")
        var out = self
        out.data.withUnsafeMutableBufferPointer { o in
            y.data.withUnsafeBufferPointer { yp in
                for bi in 0 ..< b {
                    for t in 0 ..< n {
                        let row = (bi * n + t) * c
                        for j in 0 ..< c { o[row + j] += gate[bi * c + j] * yp[row + j] }
                    }
                }
            }
        }
        return out
    }
}
