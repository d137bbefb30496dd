import COpenBLAS
import CSanaKernels
import Foundation

// SanaTransformerBlock's forward (SanaTransformerBlock.swift) computed a slice of tokens at a time, so that at 1024²
// (B = 2 × 4096 tokens × 2240 channels: 73 MB per full activation, 367 MB for the feed-forward's 2·hidden width)
// only the residual stream and small per-slice temporaries are live. Same arithmetic per token as the whole-tensor
// formulation; only the order of the linear attention's sums over tokens differs (float rounding).
//
//   pass A, slices of rows: h = LN(x)·(1+scale)+shift; relu(k) = relu(to_k(h)), v = to_v(h);
//           per batch and head: kv += relu(k)ᵀ·v [dim, dim], ksum += Σ relu(k) [dim]
//   pass B, slices of rows: q = relu(to_q(h)); y = x + gate·to_out(q·kv / (q·ksum + eps));
//           y += to_out2(softmax(to_q2(y)·k2ᵀ/√d + bias)·v2)   (k2, v2 of the caption, computed once)
//   pass C, bands of image rows: t = silu(conv_inverted(LN(y)·(1+scale)+shift)) for the band plus one row of
//           halo above and below (kept from the previous band, never recomputed); depthwise 3×3 on t; GLU;
//           out = y + gate·conv_point(…)

extension SanaTransformerBlock {
    /// Rows of activations per slice (and tokens per feed-forward band): big enough for the GEMM kernels to reuse
    /// each weight tile, small enough that the 2·hidden-wide temporaries stay in the allocator's reusable heap.
    static let sliceRows = 512

    /// x [B, N, C] → [B, N, C]; see the file header.
    /// `sliceRows` is a parameter so tests can force many slices and bands on tiny inputs. Batch elements
    /// `identityAttention` take to_v(h) in place of the linear attention (PAG's perturbed element).
    func streamedForward(_ x: Tensor, modulation: [[Float]], caption: Tensor, captionBias: Tensor?,
                         height: Int, width: Int, sliceRows: Int = SanaTransformerBlock.sliceRows,
                         identityAttention: Range<Int> = 0 ..< 0) -> Tensor {
        let (b, n, c) = (x.shape[0], x.shape[1], x.lastDim)
        let total = b * n
        let slices = stride(from: 0, to: total, by: sliceRows).map { $0 ..< min($0 + sliceRows, total) }
        let (shiftMSA, scaleMSA, gateMSA, shiftMLP, scaleMLP, gateMLP) =
            (modulation[0], modulation[1], modulation[2], modulation[3], modulation[4], modulation[5])

        // Pass A: the linear attention's per-head key statistics over every token of each batch.
        let heads = attn1.heads, d = c / heads
        var kv = [Float](repeating: 0, count: b * heads * d * d)  // [B, heads, d, d]
        var ksum = [Float](repeating: 0, count: b * heads * d)    // [B, heads, d]
        for rows in slices {
            let h = x.modulatedNormRows(rows, tokens: n, shift: shiftMSA, scale: scaleMSA, eps: normEps)
            var k = attn1.toK.apply(h)
            if let w = attn1.normK { k.rmsNormInPlace(weight: w, eps: 1e-5) }
            k.reluInPlace()
            let v = attn1.toV.apply(h)
            for seg in batchSegments(rows, tokens: n) {
                let off = (seg.rows.lowerBound - rows.lowerBound) * c, m = seg.rows.count
                k.data.withUnsafeBufferPointer { kp in
                    v.data.withUnsafeBufferPointer { vp in
                        kv.withUnsafeMutableBufferPointer { kvp in
                            ksum.withUnsafeMutableBufferPointer { ksp in
                                let (kb, vb) = (SendablePointer(kp.baseAddress! + off), SendablePointer(vp.baseAddress! + off))
                                let (kvb, ksb) = (SendablePointer(kvp.baseAddress! + seg.batch * heads * d * d),
                                                  SendablePointer(ksp.baseAddress! + seg.batch * c))
                                forEachHeadInParallel(heads) { _, hs in
                                    for hd in hs {
                                        // kv[b, hd] [d, d] += k_hdᵀ [d, m] · v_hd [m, d] (rows c apart)
                                        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(m), 1,
                                                    kb.value + hd * d, Int32(c), vb.value + hd * d, Int32(c), 1,
                                                    kvb.value + hd * d * d, Int32(d))
                                        // ksum[b, hd] += Σ_rows k_hd
                                        for r in 0 ..< m { for j in hd * d ..< (hd + 1) * d { ksb.value[j] += kb.value[r * c + j] } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }

        // The caption's keys and values for the cross-attention, once per block.
        let cross = CrossAttentionKeys(attn2, caption: caption, bias: captionBias)

        // Pass B: self-attention output and cross-attention, slice by slice, into y.
        var y = Tensor(zeros: x.shape)
        for rows in slices {
            let h = x.modulatedNormRows(rows, tokens: n, shift: shiftMSA, scale: scaleMSA, eps: normEps)
            var q = attn1.toQ.apply(h)
            if let w = attn1.normQ { q.rmsNormInPlace(weight: w, eps: 1e-5) }
            q.reluInPlace()
            var att = Tensor(zeros: q.shape)
            let segments = batchSegments(rows, tokens: n)
            // PAG's identity attention: v = to_v(h) for the perturbed elements' rows (computed only if there are any).
            let identityV = segments.contains { identityAttention.contains($0.batch) } ? attn1.toV.apply(h) : nil
            for seg in segments {
                if let identityV, identityAttention.contains(seg.batch) {
                    let w = att.lastDim, lo = (seg.rows.lowerBound - rows.lowerBound) * w, hi = lo + seg.rows.count * w
                    att.data.replaceSubrange(lo ..< hi, with: identityV.data[lo ..< hi])
                    continue
                }
                linearAttentionRows(q: q, kv: kv, ksum: ksum, segment: seg, sliceStart: rows.lowerBound,
                                    heads: heads, into: &att)
            }
            var slice = x.rowSlice(rows)
            slice.addGatedInPlace(attn1.toOut.apply(att), gate: gateMSA, firstRow: rows.lowerBound, tokens: n)
            slice.addInPlace(cross.attend(slice, rows: rows, tokens: n))
            y.data.withUnsafeMutableBufferPointer { yp in
                slice.data.withUnsafeBufferPointer { sp in
                    (yp.baseAddress! + rows.lowerBound * c).update(from: sp.baseAddress!, count: sp.count)
                }
            }
        }

        // Pass C: the feed-forward over bands of image rows.
        return feedForwardInBands(y, height: height, width: width, shift: shiftMLP, scale: scaleMLP, gate: gateMLP,
                                  bandTokens: sliceRows)
    }

    /// Linear-attention output of the rows of one batch segment: att[r, hd·d ..< (hd+1)·d] =
    /// relu(q)[r, hd]·kv[b, hd] / (relu(q)[r, hd]·ksum[b, hd] + eps) (eps 1e-15, as reluLinearAttention).
    private func linearAttentionRows(q: Tensor, kv: [Float], ksum: [Float], segment seg: BatchSegment, sliceStart: Int,
                                     heads: Int, into att: inout Tensor) {
        let c = q.lastDim, d = c / heads, off = (seg.rows.lowerBound - sliceStart) * c, m = seg.rows.count
        q.data.withUnsafeBufferPointer { qp in
            kv.withUnsafeBufferPointer { kvp in
                ksum.withUnsafeBufferPointer { ksp in
                    att.data.withUnsafeMutableBufferPointer { ap in
                        let (qb, ab) = (SendablePointer(qp.baseAddress! + off), SendablePointer(ap.baseAddress! + off))
                        let (kvb, ksb) = (SendablePointer(kvp.baseAddress! + seg.batch * heads * d * d),
                                          SendablePointer(ksp.baseAddress! + seg.batch * c))
                        forEachHeadInParallel(heads) { _, hs in
                            for hd in hs {
                                // att_hd [m, d] = q_hd [m, d] · kv[b, hd] [d, d]
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(d), Int32(d), 1,
                                            qb.value + hd * d, Int32(c), kvb.value + hd * d * d, Int32(d), 0,
                                            ab.value + hd * d, Int32(c))
                                for r in 0 ..< m {
                                    let base = r * c + hd * d
                                    var den: Float = 0
                                    for j in 0 ..< d { den += qb.value[base + j] * ksb.value[hd * d + j] }
                                    let inv = 1 / (den + 1e-15)
                                    for e in 0 ..< d { ab.value[base + e] *= inv }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// out = y + gate ⊙ GLUMBConv(LN(y)·(1 + scale) + shift), computed over bands of image rows (see the header).
    private func feedForwardInBands(_ y: Tensor, height: Int, width: Int, shift: [Float], scale: [Float],
                                    gate: [Float], bandTokens: Int) -> Tensor {
        let (b, c) = (y.shape[0], y.lastDim), n = height * width
        let wide = ff.convInverted.outFeatures, hidden = wide / 2, rowFloats = width * wide
        let bandRows = max(1, min(height, bandTokens / max(width, 1)))
        var out = y
        // t rows band.lowerBound − 1 ..< band.upperBound + 1 of the current batch: [bandRows + 2, W, wide]
        var t = [Float](repeating: 0, count: (bandRows + 2) * rowFloats)
        let depthwise = DepthwiseGLU(weight: ff.convDepthWeight, bias: ff.convDepthBias, channels: wide)
        for bi in 0 ..< b {
            var y0 = 0
            while y0 < height {
                let y1 = min(y0 + bandRows, height), rowsHere = y1 - y0
                // t slot s holds image row y0 − 1 + s. Slots 0 and 1 (rows y0 − 1, y0) come from the previous band's
                // last two slots; the first band has a zero row above the frame and computes row 0 itself.
                let fresh: Range<Int>  // image rows computed now
                if y0 == 0 {
                    for i in 0 ..< rowFloats { t[i] = 0 }
                    fresh = 0 ..< min(y1 + 1, height)
                } else {
                    let prev = bandRows  // the previous band was full: its slots bandRows, bandRows + 1 are rows y0 − 1, y0
                    t.withUnsafeMutableBufferPointer { tp in
                        tp.baseAddress!.update(from: tp.baseAddress! + prev * rowFloats, count: 2 * rowFloats)
                    }
                    fresh = min(y0 + 1, height) ..< min(y1 + 1, height)
                }
                if !fresh.isEmpty {
                    let first = bi * n + fresh.lowerBound * width, rows = first ..< first + fresh.count * width
                    var h = y.modulatedNormRows(rows, tokens: n, shift: shift, scale: scale, eps: normEps,
                                                weight: norm2Weight, bias: norm2Bias)
                    h = ff.convInverted.apply(h)  // [fresh·W, wide]
                    h.data.withUnsafeMutableBufferPointer { hp in
                        let (base, count) = (SendablePointer(hp.baseAddress!), hp.count)
                        forEachHeadInParallel(64) { _, parts in  // 64 equal parts of the elements
                            let lo = parts.lowerBound * count / 64, hi = parts.upperBound * count / 64
                            fastSiLUInPlace(base.value + lo, hi - lo)
                        }
                    }
                    let slot = fresh.lowerBound - (y0 - 1)
                    t.withUnsafeMutableBufferPointer { tp in
                        h.data.withUnsafeBufferPointer { hp in
                            (tp.baseAddress! + slot * rowFloats).update(from: hp.baseAddress!, count: hp.count)
                        }
                    }
                }
                if y1 == height {  // zero row below the frame
                    t.withUnsafeMutableBufferPointer { tp in
                        (tp.baseAddress! + (rowsHere + 1) * rowFloats).update(repeating: 0, count: rowFloats)
                    }
                }
                var gated = [Float](repeating: 0, count: rowsHere * width * hidden)  // [rowsHere·W, hidden]
                depthwise.apply(t, rows: rowsHere, width: width, into: &gated)
                let f = ff.convPoint.apply(Tensor(shape: [rowsHere * width, hidden], data: gated))  // [rowsHere·W, C]
                let first = bi * n + y0 * width
                out.data.withUnsafeMutableBufferPointer { op in
                    f.data.withUnsafeBufferPointer { fp in
                        for r in 0 ..< rowsHere * width {
                            let o = (first + r) * c
                            for j in 0 ..< c { op[o + j] += gate[bi * c + j] * fp[r * c + j] }
                        }
                    }
                }
                y0 = y1
            }
        }
        return out
    }
}

/// Rows lo ..< hi of the flattened [B·N, C] activations that belong to batch `batch`.
struct BatchSegment {
    let batch: Int
    let rows: Range<Int>
}

/// Splits a row range of [B·N, C] at batch boundaries (N tokens per batch).
func batchSegments(_ rows: Range<Int>, tokens n: Int) -> [BatchSegment] {
    var out: [BatchSegment] = [], r = rows.lowerBound
    while r < rows.upperBound {
        let b = r / n, end = min(rows.upperBound, (b + 1) * n)
        out.append(BatchSegment(batch: b, rows: r ..< end))
        r = end
    }
    return out
}

/// The cross-attention's caption side (to_k, to_v and norm_k of the caption), computed once per block, and the
/// attention of query rows against it. Keys masked by the caption bias are dropped: with the reference's additive
/// (1 − mask)·(−10000) their softmax weight is exp(−10000 + Δ) = exactly 0 in float32 for any score spread Δ below
/// ~9900, so skipping them changes nothing (a batch whose keys are all masked keeps them all: uniform weights).
struct CrossAttentionKeys {
    let attention: SanaAttention
    /// Per batch: the kept keys' rows [L_b, heads·d], values [L_b, heads·dV] and their biases [L_b].
    let keys: [[Float]], values: [[Float]], biases: [[Float]]
    let width: Int, widthV: Int

    init(_ a: SanaAttention, caption: Tensor, bias: Tensor?) {
        attention = a
        var k = a.toK.apply(caption)  // [B, L, heads·d]
        if let w = a.normK { k.rmsNormInPlace(weight: w, eps: 1e-5) }
        let v = a.toV.apply(caption)
        let (b, l) = (caption.shape[0], caption.shape[1])
        width = k.lastDim
        widthV = v.lastDim
        var keys: [[Float]] = [], values: [[Float]] = [], biases: [[Float]] = []
        for bi in 0 ..< b {
            let row = (0 ..< l).map { bias?.data[bi * l + $0] ?? 0 }
            let top = row.max() ?? 0
            let kept = (0 ..< l).filter { row[$0] > top - 1000 }  // see the type's comment
            var kb: [Float] = [], vb: [Float] = []
            for j in kept {
                let t = bi * l + j  // caption token j of batch bi
                kb += k.data[t * width ..< (t + 1) * width]
                vb += v.data[t * widthV ..< (t + 1) * widthV]
            }
            keys.append(kb)
            values.append(vb)
            biases.append(kept.map { row[$0] })
        }
        (self.keys, self.values, self.biases) = (keys, values, biases)
    }

    /// to_out(softmax(to_q(x)·kᵀ/√d + bias)·v) for query rows `rows` of [B·N, C] (x holds just those rows).
    func attend(_ x: Tensor, rows: Range<Int>, tokens n: Int) -> Tensor {
        var q = attention.toQ.apply(x)
        if let w = attention.normQ { q.rmsNormInPlace(weight: w, eps: 1e-5) }
        let heads = attention.heads, d = width / heads, dv = widthV / heads
        let scale = 1 / Float(d).squareRoot()
        var att = Tensor(zeros: [x.rows, widthV])
        for seg in batchSegments(rows, tokens: n) {
            let keys = keys[seg.batch], values = values[seg.batch], bias = biases[seg.batch]
            let lk = bias.count, m = seg.rows.count, off = seg.rows.lowerBound - rows.lowerBound
            let workers = max(1, Int(sana_get_threads()))
            var scores = [Float](repeating: 0, count: workers * m * lk)  // per worker: one head's [m, L_b]
            q.data.withUnsafeBufferPointer { qp in
                keys.withUnsafeBufferPointer { kp in
                    values.withUnsafeBufferPointer { vp in
                        att.data.withUnsafeMutableBufferPointer { ap in
                            scores.withUnsafeMutableBufferPointer { sp in
                                let (qb, kb, vb) = (SendablePointer(qp.baseAddress! + off * width), SendablePointer(kp.baseAddress!),
                                                    SendablePointer(vp.baseAddress!))
                                let (ab, sb) = (SendablePointer(ap.baseAddress! + off * widthV), SendablePointer(sp.baseAddress!))
                                let (width, widthV) = (self.width, self.widthV)
                                forEachHeadInParallel(heads) { worker, hs in
                                    let s = sb.value + worker * m * lk
                                    for hd in hs {
                                        // scores [m, L_b] = scale · q_hd [m, d] · k_hdᵀ [d, L_b]
                                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(lk), Int32(d), scale,
                                                    qb.value + hd * d, Int32(width), kb.value + hd * d, Int32(width), 0, s, Int32(lk))
                                        for r in 0 ..< m { for j in 0 ..< lk { s[r * lk + j] += bias[j] } }
                                        for r in 0 ..< m { softmaxInPlace(s + r * lk, lk) }
                                        // att_hd [m, dv] = p [m, L_b] · v_hd [L_b, dv]
                                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(dv), Int32(lk), 1,
                                                    s, Int32(lk), vb.value + hd * dv, Int32(widthV), 0, ab.value + hd * dv, Int32(widthV))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return attention.toOut.apply(att)
    }
}

/// The depthwise 3×3 convolution (weight [wide, 1, 3, 3] + bias, zero padding) followed by the GLU gate
/// (first half · silu(second half)), on a band of rows with their halo: t [rows + 2, W, wide] → gated [rows, W, hidden].
/// The weights are transposed to [9, wide] so every tap is a contiguous, vectorizable multiply-add over channels.
struct DepthwiseGLU {
    let taps: [Float]  // [9, wide]: taps[(ky·3 + kx)·wide + ch] = weight[ch, 0, ky, kx]
    let bias: [Float]
    let channels: Int

    init(weight: [Float], bias: [Float], channels: Int) {
        var taps = [Float](repeating: 0, count: 9 * channels)
        for ch in 0 ..< channels { for k in 0 ..< 9 { taps[k * channels + ch] = weight[ch * 9 + k] } }
        self.taps = taps
        self.bias = bias
        self.channels = channels
    }

    func apply(_ t: [Float], rows: Int, width: Int, into gated: inout [Float]) {
        let wide = channels, hidden = wide / 2
        let positions = rows * width
        let workers = max(1, min(Int(sana_get_threads()), positions))
        t.withUnsafeBufferPointer { tp in
            taps.withUnsafeBufferPointer { wp in
                bias.withUnsafeBufferPointer { bp in
                    gated.withUnsafeMutableBufferPointer { gp in
                        let ptrs = BandPointers(t: tp.baseAddress!, w: wp.baseAddress!, b: bp.baseAddress!, g: gp.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: workers) { worker in
                            let (tb, wb, bb, gb) = (ptrs.t, ptrs.w, ptrs.b, ptrs.g)
                            var acc = [Float](repeating: 0, count: wide)
                            acc.withUnsafeMutableBufferPointer { accp in
                                let a = accp.baseAddress!
                                for p in (worker * positions / workers) ..< ((worker + 1) * positions / workers) {
                                    let oy = p / width, ox = p % width  // output row oy is t slot oy + 1
                                    a.update(from: bb, count: wide)
                                    for ky in 0 ..< 3 {
                                        for kx in 0 ..< 3 {
                                            let ix = ox + kx - 1
                                            guard ix >= 0 && ix < width else { continue }
                                            let src = tb + ((oy + ky) * width + ix) * wide, w = wb + (ky * 3 + kx) * wide
                                            for ch in 0 ..< wide { a[ch] += src[ch] * w[ch] }
                                        }
                                    }
                                    fastSiLUInPlace(a + hidden, hidden)
                                    let g = gb + p * hidden
                                    for j in 0 ..< hidden { g[j] = a[j] * a[hidden + j] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The band's buffers, shared read-only (t, w, b) or written at disjoint positions (g) by the workers.
private struct BandPointers: @unchecked Sendable {
    let t: UnsafePointer<Float>, w: UnsafePointer<Float>, b: UnsafePointer<Float>
    let g: UnsafeMutablePointer<Float>
}

extension Tensor {
    /// Rows `rows` of the [B·N, C] view, layer-normed (affine when weight/bias are given) and modulated with
    /// batch-major shift/scale [B·C] (row r belongs to batch r / N): LN(x)·(1 + scale) + shift, as
    /// `layerNorm(...).modulated(...)`.
    func modulatedNormRows(_ rows: Range<Int>, tokens n: Int, shift: [Float], scale: [Float], eps: Float,
                           weight: [Float]? = nil, bias: [Float]? = nil) -> Tensor {
        var h = rowSlice(rows).layerNorm(weight: weight, bias: bias, eps: eps)
        let c = lastDim
        h.data.withUnsafeMutableBufferPointer { o in
            for r in 0 ..< rows.count {
                let bc = (rows.lowerBound + r) / n * c, row = r * c
                for j in 0 ..< c { o[row + j] = o[row + j] * (1 + scale[bc + j]) + shift[bc + j] }
            }
        }
        return h
    }

    /// Rows `rows` of the [rows, C] view as a [rows.count, C] tensor.
    func rowSlice(_ rows: Range<Int>) -> Tensor {
        let c = lastDim
        return Tensor(shape: [rows.count, c], data: Array(data[rows.lowerBound * c ..< rows.upperBound * c]))
    }

    mutating func reluInPlace() {
        data.withUnsafeMutableBufferPointer { p in for i in 0 ..< p.count { p[i] = max(p[i], 0) } }
    }

    /// self[r] += gate[batch of row firstRow + r] ⊙ y[r] for a slice of the [B·N, C] rows (N tokens per batch).
    mutating func addGatedInPlace(_ y: Tensor, gate: [Float], firstRow: Int, tokens n: Int) {
        precondition(count == y.count, "addGatedInPlace: \(shape) and \(y.shape)")
        let c = lastDim, rows = self.rows
        data.withUnsafeMutableBufferPointer { o in
            y.data.withUnsafeBufferPointer { q in
                for r in 0 ..< rows {
                    let bc = (firstRow + r) / n * c
                    for j in 0 ..< c { o[r * c + j] += gate[bc + j] * q[r * c + j] }
                }
            }
        }
    }
}
