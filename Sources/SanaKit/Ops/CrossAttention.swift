import COpenBLAS
import Foundation

// Softmax (scaled dot-product) attention with an additive key bias: what torch's F.scaled_dot_product_attention
// computes in diffusers' SanaAttnProcessor2_0 / AttnProcessor2_0 (the Sana DiT cross-attention over the caption).
// The caption mask reaches here already converted to a bias, as SanaTransformer2DModel.forward does:
// (1 − mask)·(−10000), so a masked key gets −10000 rather than −inf and even a fully masked row stays finite
// (a uniform average), never NaN.

/// softmax(q·kᵀ·scale + bias) · v per batch and head.
/// q [B, Nq, heads, dim], k [B, Nk, heads, dim], v [B, Nk, heads, dimV] (or rank-3 [B, N, heads·dim] with `heads`)
/// → [B, Nq, heads, dimV] (rank as q's). `keyBias` [B, Nk] is added to every query's scores; scale defaults to
/// 1/√dim as SDPA's.
public func scaledDotProductAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, keyBias: Tensor? = nil,
                                      scale: Float? = nil) -> Tensor {
    let a = AttentionHeads("scaledDotProductAttention", query, key, value, heads: heads)
    let (b, nq, nk, hd, hdv, dv) = (a.batch, a.nq, a.nk, a.rowQK, a.rowV, a.dimV)
    if let keyBias { precondition(keyBias.shape == [b, nk], "attention: key bias \(keyBias.shape) for [\(b), \(nk)] keys") }
    guard !a.isEmpty else { return Tensor(zeros: a.outShape) }
    let alpha = scale ?? 1 / Float(a.dim).squareRoot()
    var out = [Float](repeating: 0, count: a.outCount)
    var scores = [Float](repeating: 0, count: nq * nk)  // one head's [Nq, Nk] scores, then probabilities
    let bias = keyBias?.data ?? []
    a.forEach(query.data, key.data, value.data, &out) { qb, kb, vb, ob, bi in
        scores.withUnsafeMutableBufferPointer { sp in
            guard let s = sp.baseAddress else { return }
            // scores[Nq, Nk] = scale · q[Nq, d] · kᵀ[d, Nk]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(nq), Int32(nk), Int32(a.dim), alpha,
                        qb, Int32(hd), kb, Int32(hd), 0, s, Int32(nk))
            for n in 0 ..< nq {
                let row = s + n * nk
                if !bias.isEmpty { for m in 0 ..< nk { row[m] += bias[bi * nk + m] } }
                // Max-subtracted softmax in float32.
                var mx = -Float.infinity
                for m in 0 ..< nk { mx = max(mx, row[m]) }
                var sum: Float = 0
                for m in 0 ..< nk { row[m] = expf(row[m] - mx); sum += row[m] }
                let inv = 1 / sum
                for m in 0 ..< nk { row[m] *= inv }
            }
            // out[Nq, dv] = p[Nq, Nk] · v[Nk, dv]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nq), Int32(dv), Int32(nk), 1,
                        s, Int32(nk), vb, Int32(hdv), 0, ob, Int32(hdv))
        }
    }
    return Tensor(shape: a.outShape, data: out)
}
