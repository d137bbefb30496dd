// Softmax and multi-head scaled-dot-product attention (the eager attention of transformers/diffusers), float32.
// Masks are given as one contiguous allowed key range per query, which covers causal, sliding-window, right-padding
// and key-padding masks. A query with no allowed key gets what an additive finfo.min mask gives in the reference:
// every logit becomes the same value, so the softmax is uniform over all keys.
import COpenBLAS
import CSanaKernels
import Foundation

extension Tensor {
    /// Softmax over the last dimension (max-subtracted, float32).
    public func softmaxLastDim() -> Tensor {
        var out = self
        let c = lastDim
        out.data.withUnsafeMutableBufferPointer { p in
            for r in 0 ..< rows { softmaxInPlace(p.baseAddress! + r * c, c) }
        }
        return out
    }
}

/// In-place softmax of `count` floats.
@inline(__always) func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
    guard count > 0 else { return }
    var m = -Float.infinity
    for j in 0 ..< count { m = max(m, x[j]) }
    // e^(x − max) ≤ 1; clampedExp (Ops/FastMath.swift) vectorizes where expf would be a call per element.
    for j in 0 ..< count { x[j] = clampedExp(x[j] - m) }
    var sum: Float = 0
    for j in 0 ..< count { sum += x[j] }
    let inv = 1 / sum
    for j in 0 ..< count { x[j] *= inv }
}

/// Multi-head attention over one sequence: q [Lq, heads·d], k and v [Lk, kvHeads·d] (grouped-query: query head h
/// reads key/value head h / (heads / kvHeads), as repeat_kv does) → [Lq, heads·d].
/// Logits are `scale · q·k`, then `cap · tanh(logit / cap)` when `softcap` is set, then masked by `keyRange(i)`
/// (the keys query row i may see; an empty range means uniform weights over all Lk keys, see the file header).
public func scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, heads: Int, kvHeads: Int, scale: Float,
                                     softcap: Float? = nil, keyRange: (Int) -> Range<Int>) -> Tensor {
    precondition(heads % kvHeads == 0 && q.lastDim % heads == 0, "attention: \(heads) heads, \(kvHeads) kv heads, q width \(q.lastDim)")
    let d = q.lastDim / heads
    let lq = q.rows, lk = k.rows
    precondition(k.lastDim == kvHeads * d && v.shape == k.shape, "attention: k \(k.shape), v \(v.shape), head dim \(d)")
    var out = Tensor(zeros: [lq, heads * d])
    guard lq > 0, lk > 0 else { return out }
    let group = heads / kvHeads
    let ranges = (0 ..< lq).map { i -> Range<Int> in
        let r = keyRange(i)
        return r.clamped(to: 0 ..< lk)
    }
    let workers = max(1, min(Int(sana_get_threads()), heads))
    var scores = [Float](repeating: 0, count: workers * lq * lk)  // per worker: one head's [Lq, Lk]
    q.data.withUnsafeBufferPointer { qp in
        k.data.withUnsafeBufferPointer { kp in
            v.data.withUnsafeBufferPointer { vp in
                out.data.withUnsafeMutableBufferPointer { op in
                    scores.withUnsafeMutableBufferPointer { sp in
                        let (qb, kb, vb) = (SendablePointer(qp.baseAddress!), SendablePointer(kp.baseAddress!), SendablePointer(vp.baseAddress!))
                        let (ob, sb) = (SendablePointer(op.baseAddress!), SendablePointer(sp.baseAddress!))
                        forEachPartInParallel(heads) { worker, hs in
                            let s = sb.value + worker * lq * lk
                            for h in hs {
                                let kvh = h / group
                                // scores = scale · Q_h · K_hᵀ, Q_h = q[:, h·d ..< (h+1)·d] (row stride heads·d).
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(lq), Int32(lk), Int32(d), scale,
                                            qb.value + h * d, Int32(heads * d), kb.value + kvh * d,
                                            Int32(kvHeads * d), 0, s, Int32(lk))
                                for i in 0 ..< lq {
                                    let row = s + i * lk
                                    let r = ranges[i]
                                    if r.isEmpty {
                                        for j in 0 ..< lk { row[j] = 1 / Float(lk) }
                                        continue
                                    }
                                    if let cap = softcap { fastSoftcapInPlace(row + r.lowerBound, r.count, cap: cap) }
                                    for j in 0 ..< r.lowerBound { row[j] = 0 }
                                    softmaxInPlace(row + r.lowerBound, r.count)
                                    for j in r.upperBound ..< lk { row[j] = 0 }
                                }
                                // out[:, h·d ..< (h+1)·d] = P · V_h.
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(lq), Int32(d), Int32(lk), 1,
                                            s, Int32(lk), vb.value + kvh * d, Int32(kvHeads * d), 0,
                                            ob.value + h * d, Int32(heads * d))
                            }
                        }
                    }
                }
            }
        }
    }
    return out
}
