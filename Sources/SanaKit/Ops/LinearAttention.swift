import COpenBLAS

// ReLU linear attention, the core of diffusers' SanaLinearAttnProcessor2_0 (attention_processor.py; the Sana DiT
// self-attention) and of SanaMultiscaleLinearAttention.apply_linear_attention (the DC-AE's multiscale attention).
//
// The reference pads the value with a row of ones, v' = [v; 1], and computes (v' · relu(k)ᵀ) · relu(q) in float32,
// then divides the first `dim` rows by the last one plus eps. The padded row is exactly
//     den[n] = Σ_j relu(q)[n, j] · Σ_m relu(k)[m, j],
// so this computes kv = relu(k)ᵀ·v and ksum = Σ_m relu(k)[m] once per head instead of carrying the ones row.
// Every value is float32 as in the reference; eps (1e-15 in both references) keeps an all-zero relu(q) or relu(k)
// at 0/eps = 0 instead of 0/0, and since numerator and denominator are sums of the same nonnegative weights
// |out| ≤ max|v|: no NaN and no blow-up for any finite input.

/// ReLU linear attention over q [B, Nq, heads, dim], k [B, Nk, heads, dim], v [B, Nk, heads, dimV] → [B, Nq, heads, dimV]:
///     out[b, n, h, :] = Σ_m (relu(q[b,n,h])·relu(k[b,m,h])) v[b,m,h,:] / (Σ_m relu(q[b,n,h])·relu(k[b,m,h]) + eps)
/// Rank-3 inputs [B, N, heads·dim] are accepted with `heads` given (channels head-major, as `unflatten(heads, -1)`).
public func reluLinearAttention(query: Tensor, key: Tensor, value: Tensor, heads: Int, eps: Float = 1e-15) -> Tensor {
    let a = AttentionHeads("reluLinearAttention", query, key, value, heads: heads)
    guard !a.isEmpty else { return Tensor(zeros: a.outShape) }
    let (d, dv, hd, hdv, nq, nk) = (a.dim, a.dimV, a.rowQK, a.rowV, a.nq, a.nk)
    let q = Activation.relu.apply(query), k = Activation.relu.apply(key)
    var out = [Float](repeating: 0, count: a.outCount)
    var kv = [Float](repeating: 0, count: d * dv)  // relu(k)ᵀ·v of one head: [dim, dimV]
    var ksum = [Float](repeating: 0, count: d)     // Σ_m relu(k)[m]: [dim]
    a.forEach(q.data, k.data, value.data, &out) { qb, kb, vb, ob, _ in
        // kv[d, dv] = kᵀ[d, Nk] · v[Nk, dv]
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(dv), Int32(nk), 1,
                    kb, Int32(hd), vb, Int32(hdv), 0, &kv, Int32(dv))
        for j in 0 ..< d { ksum[j] = 0 }
        for m in 0 ..< nk { for j in 0 ..< d { ksum[j] += kb[m * hd + j] } }
        // out[Nq, dv] = q[Nq, d] · kv[d, dv]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(nq), Int32(dv), Int32(d), 1,
                    qb, Int32(hd), kv, Int32(dv), 0, ob, Int32(hdv))
        for n in 0 ..< nq {
            var den: Float = 0
            for j in 0 ..< d { den += qb[n * hd + j] * ksum[j] }
            let inv = 1 / (den + eps)
            for e in 0 ..< dv { ob[n * hdv + e] *= inv }
        }
    }
    return Tensor(shape: a.outShape, data: out)
}

/// The operand shapes shared by both attention cores, checked once, and the loop over (batch, head).
struct AttentionHeads {
    let batch, nq, nk, heads: Int
    /// Per-head widths of q/k and of v, and the row strides heads·dim / heads·dimV.
    let dim, dimV, rowQK, rowV: Int
    /// The output's shape: q's, with the last dimension for v's width.
    let outShape: [Int]
    var outCount: Int { batch * nq * rowV }
    /// Nothing to attend to or nothing asked (the callers return zeros, which also keeps every pointer non-nil).
    var isEmpty: Bool { outCount == 0 || nk == 0 || dim == 0 }

    init(_ op: String, _ query: Tensor, _ key: Tensor, _ value: Tensor, heads: Int) {
        let (b, nq, hd) = attentionDims(query, heads: heads, "query")
        let (bk, nk, hdk) = attentionDims(key, heads: heads, "key")
        let (bv, nv, hdv) = attentionDims(value, heads: heads, "value")
        precondition(b == bk && b == bv && nk == nv && hd == hdk, "\(op): q \(query.shape), k \(key.shape), v \(value.shape)")
        (batch, self.nq, self.nk, self.heads) = (b, nq, nk, heads)
        (dim, dimV, rowQK, rowV) = (hd / heads, hdv / heads, hd, hdv)
        var shape = query.shape
        shape[shape.count - 1] = query.rank == 4 ? hdv / heads : hdv
        outShape = shape
    }

    /// Calls body(q, k, v, out, batch) for every batch and head with pointers to that head's [N, dim] matrices:
    /// head h of batch b starts at b·N·rowStride + h·dim and its rows are rowStride = heads·dim apart.
    func forEach(_ q: [Float], _ k: [Float], _ v: [Float], _ out: inout [Float],
                 _ body: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) {
        precondition(!isEmpty && out.count == outCount)
        q.withUnsafeBufferPointer { qp in
            k.withUnsafeBufferPointer { kp in
                v.withUnsafeBufferPointer { vp in
                    out.withUnsafeMutableBufferPointer { op in
                        guard let q0 = qp.baseAddress, let k0 = kp.baseAddress, let v0 = vp.baseAddress,
                              let o0 = op.baseAddress else { return }
                        for b in 0 ..< batch {
                            for h in 0 ..< heads {
                                body(q0 + b * nq * rowQK + h * dim, k0 + b * nk * rowQK + h * dim,
                                     v0 + b * nk * rowV + h * dimV, o0 + b * nq * rowV + h * dimV, b)
                            }
                        }
                    }
                }
            }
        }
    }
}

/// (batch, tokens, heads·dim) of a [B, N, heads, dim] or [B, N, heads·dim] attention operand.
func attentionDims(_ t: Tensor, heads: Int, _ what: String) -> (Int, Int, Int) {
    precondition(heads > 0, "attention: heads must be positive")
    switch t.rank {
    case 4:
        precondition(t.shape[2] == heads, "attention \(what): shape \(t.shape) does not have \(heads) heads")
        return (t.shape[0], t.shape[1], t.shape[2] * t.shape[3])
    case 3:
        precondition(t.shape[2] % heads == 0, "attention \(what): \(t.shape[2]) channels not divisible by \(heads) heads")
        return (t.shape[0], t.shape[1], t.shape[2])
    default:
        preconditionFailure("attention \(what): expected [B, N, heads, dim] or [B, N, heads·dim], got \(t.shape)")
    }
}
