import COpenBLAS
import CSanaKernels
import Foundation

// SanaTransformerBlock's forward (SanaTransformerBlock.swift) computed a slice of tokens at a time, so that at 1024²
// (latent 32×32: B = 2 × 1024 tokens × 2240 channels, 18 MB per full activation, 92 MB for the feed-forward's
// 2·hidden width) only the residual stream, relu(q) of every token and small per-slice temporaries are live. Same
// arithmetic per token as the whole-tensor formulation; only the order of the linear attention's sums over tokens
// differs (float rounding). The residual stream x is updated in place, and every working buffer comes from a
// DiTBlockScratch that the block runner keeps for all of its blocks (no per-block allocation or page faults).
//
//   pass A, slices of rows: h = LN(x)·(1+scale)+shift; q, k, v = to_q/to_k/to_v(h) from one quantization of h;
//           relu(q) kept for pass B; per batch and head: kv += relu(k)ᵀ·v [dim, dim], ksum += Σ relu(k) [dim]
//   pass B, slices of rows: x += gate·to_out(q·kv / (q·ksum + eps));
//           x += to_out2(softmax(to_q2(x)·k2ᵀ/√d + bias)·v2)   (k2, v2 of the kept caption tokens, once per block)
//   pass C, bands of image rows: t = silu(conv_inverted(LN(x)·(1+scale)+shift)) for the band plus one row of
//           halo above and below (kept from the previous band, never recomputed); depthwise 3×3 on t; GLU;
//           x += gate·conv_point(…)

extension SanaTransformerBlock {
    /// Rows of activations per slice (and tokens per feed-forward band): big enough for the GEMM kernels to reuse
    /// each weight tile, small enough that the 2·hidden-wide temporaries stay small.
    static let sliceRows = 512

    /// x [B, N, C] → [B, N, C] on a copy of x with buffers of its own (tests, the block's public call).
    func streamedForward(_ x: Tensor, modulation: [[Float]], caption: Tensor, captionBias: Tensor?,
                         height: Int, width: Int, sliceRows: Int = SanaTransformerBlock.sliceRows,
                         identityAttention: Range<Int> = 0 ..< 0) -> Tensor {
        var out = x
        streamedForward(&out, modulation: modulation, caption: caption, captionBias: captionBias, height: height,
                        width: width, sliceRows: sliceRows, identityAttention: identityAttention, scratch: DiTBlockScratch())
        return out
    }

    /// x [B, N, C] → [B, N, C] in place (the residual stream is updated where it lies: pass A reads every row
    /// before pass B writes any, pass B writes only its own slice, and pass C overwrites a band's rows only after
    /// every band that reads them as halo has normed them); see the file header. Working buffers come from
    /// `scratch`, which the block runner keeps for all blocks. `sliceRows` is a parameter so tests can force many
    /// slices and bands on tiny inputs. Batch elements `identityAttention` take to_v(h) in place of the linear
    /// attention (PAG's perturbed element).
    func streamedForward(_ x: inout Tensor, modulation: [[Float]], caption: Tensor, captionBias: Tensor?,
                         height: Int, width: Int, sliceRows: Int = SanaTransformerBlock.sliceRows,
                         identityAttention: Range<Int> = 0 ..< 0, scratch: DiTBlockScratch) {
        let (b, n, c) = (x.shape[0], x.shape[1], x.lastDim)
        let total = b * n
        let slices = stride(from: 0, to: total, by: sliceRows).map { $0 ..< min($0 + sliceRows, total) }
        let mod = BlockModulation(modulation)
        let heads = attn1.heads, inner = attn1.toQ.outFeatures
        let cross = CrossAttentionKeys(attn2, caption: caption, bias: captionBias)  // once per block
        let ffPlan = FeedForwardBands(ff, height: height, width: width, bandTokens: sliceRows)

        // Every buffer sized before any pointer is taken (growing one would move it).
        let slice = min(sliceRows, total)  // rows of the largest slice
        scratch.reserve([.queries: total * inner, .normed: max(slice, ffPlan.normedRows) * c, .keys: slice * inner,
                         .values: slice * inner, .attended: slice * max(inner, cross.widthV),
                         .crossQueries: slice * cross.width, .projected: max(slice, ffPlan.outRows) * c,
                         .band: ffPlan.bandFloats, .gated: ffPlan.gatedFloats])
        let (qAll, normed, keys, values) = (scratch[.queries], scratch[.normed], scratch[.keys], scratch[.values])
        let (attended, projected) = (scratch[.attended], scratch[.projected])

        let stats = KeyStatistics(batches: b, heads: heads, inner: inner)
        x.data.withUnsafeMutableBufferPointer { xp in
            let xb = xp.baseAddress!
            // Pass A: q, k and v of every token from one quantization of h; relu(q) kept for pass B (perturbed
            // elements keep to_v(h) there instead), the per-head key statistics summed over each batch's tokens.
            for rows in slices {
                let m = rows.count
                modulatedNorm(xb, rows: rows, tokens: n, channels: c, shift: mod.shiftMSA, onePlusScale: mod.scaleMSA,
                              weight: nil, bias: nil, into: normed)
                let q = qAll + rows.lowerBound * inner
                Linear.apply([attn1.toQ, attn1.toK, attn1.toV], normed, rows: m, into: [q, keys, values])
                if let w = attn1.normK { rmsNorm(keys, rows: m, channels: inner, weight: w) }
                reluInPlace(keys, m * inner)
                for seg in batchSegments(rows, tokens: n) {
                    let off = (seg.rows.lowerBound - rows.lowerBound) * inner, count = seg.rows.count * inner
                    if identityAttention.contains(seg.batch) {
                        (q + off).update(from: values + off, count: count)
                        continue
                    }
                    if let w = attn1.normQ { rmsNorm(q + off, rows: seg.rows.count, channels: inner, weight: w) }
                    reluInPlace(q + off, count)
                    accumulateKeyStatistics(keys + off, values + off, rows: seg.rows.count, batch: seg.batch, into: stats)
                }
            }

            // Pass B: x += gate·to_out(attention) and x += cross-attention, slice by slice.
            for rows in slices {
                let m = rows.count, xr = xb + rows.lowerBound * c
                for seg in batchSegments(rows, tokens: n) {
                    let off = (seg.rows.lowerBound - rows.lowerBound) * inner, q = qAll + seg.rows.lowerBound * inner
                    if identityAttention.contains(seg.batch) {
                        (attended + off).update(from: q, count: seg.rows.count * inner)  // to_v(h), from pass A
                    } else {
                        linearAttentionRows(q: q, rows: seg.rows.count, batch: seg.batch, stats: stats, into: attended + off)
                    }
                }
                attn1.toOut.apply(attended, rows: m, into: projected)
                addGated(xr, projected, gate: mod.gateMSA, firstRow: rows.lowerBound, rows: m, tokens: n, channels: c)
                cross.attend(xr, rows: rows, tokens: n, queries: scratch[.crossQueries], attended: attended, into: projected)
                addGated(xr, projected, gate: nil, firstRow: rows.lowerBound, rows: m, tokens: n, channels: c)
            }

            // Pass C: the feed-forward over bands of image rows, added in place.
            feedForwardInBands(xb, batches: b, channels: c, plan: ffPlan, mod: mod, scratch: scratch)
        }
    }

    /// dst [rows.count, C] = LN(x[rows]) (affine when weight/bias are given) · onePlusScale + shift, per batch
    /// element (row r of [B·N, C] belongs to batch r / N; vectors [B·C]). Without norm affine the modulation is the
    /// LayerNorm's own affine step (one pass).
    func modulatedNorm(_ x: UnsafePointer<Float>, rows: Range<Int>, tokens n: Int, channels c: Int, shift: [Float],
                       onePlusScale: [Float], weight: [Float]?, bias: [Float]?, into dst: UnsafeMutablePointer<Float>) {
        sana_dit_copy(dst, x + rows.lowerBound * c, Int64(rows.count * c))
        for seg in batchSegments(rows, tokens: n) {
            let out = dst + (seg.rows.lowerBound - rows.lowerBound) * c, m = Int64(seg.rows.count), bc = seg.batch * c
            shift.withUnsafeBufferPointer { sh in
                onePlusScale.withUnsafeBufferPointer { sc in
                    if weight == nil && bias == nil {
                        sana_layer_norm(out, m, Int64(c), sc.baseAddress! + bc, sh.baseAddress! + bc, normEps)
                        return
                    }
                    weight.withUnsafeBufferPointerOrNil { wp in
                        bias.withUnsafeBufferPointerOrNil { bp in sana_layer_norm(out, m, Int64(c), wp, bp, normEps) }
                    }
                    for r in 0 ..< seg.rows.count {
                        let o = out + r * c
                        for j in 0 ..< c { o[j] = o[j] * sc[bc + j] + sh[bc + j] }
                    }
                }
            }
        }
    }

    /// stats.kv[batch, hd] [d, d] += relu(k)_hdᵀ · v_hd and stats.ksum[batch, hd] += Σ_rows relu(k)_hd over `rows`
    /// rows of k and v ([rows, inner], head-major channels).
    private func accumulateKeyStatistics(_ k: UnsafePointer<Float>, _ v: UnsafePointer<Float>, rows m: Int, batch: Int,
                                         into stats: KeyStatistics) {
        let (kb, vb, d, inner) = (SendablePointer(k), SendablePointer(v), stats.dim, stats.inner)
        forEachPartInParallel(stats.heads) { _, hs in
            for hd in hs {
                // kv[b, hd] [d, d] += k_hdᵀ [d, m] · v_hd [m, d] (rows inner apart)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(m), 1,
                            kb.value + hd * d, Int32(inner), vb.value + hd * d, Int32(inner), 1, stats.kv(batch, hd), Int32(d))
                // ksum[b, hd] += Σ_rows k_hd
                let s = stats.ksum(batch, hd)
                for r in 0 ..< m {
                    let kr = kb.value + r * inner + hd * d
                    for j in 0 ..< d { s[j] += kr[j] }
                }
            }
        }
    }

    /// Linear-attention output of `rows` query rows of batch `batch`: att[r, hd·d ..< (hd+1)·d] =
    /// relu(q)[r, hd]·kv[b, hd] / (relu(q)[r, hd]·ksum[b, hd] + eps) (eps 1e-15, as reluLinearAttention).
    private func linearAttentionRows(q: UnsafePointer<Float>, rows m: Int, batch: Int, stats: KeyStatistics,
                                     into att: UnsafeMutablePointer<Float>) {
        let (qb, ab, d, inner) = (SendablePointer(q), SendablePointer(att), stats.dim, stats.inner)
        forEachPartInParallel(stats.heads) { _, hs in
            for hd in hs {
                // att_hd [m, d] = q_hd [m, d] · kv[b, hd] [d, d]
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(d), Int32(d), 1,
                            qb.value + hd * d, Int32(inner), stats.kv(batch, hd), Int32(d), 0, ab.value + hd * d, Int32(inner))
                let ks = stats.ksum(batch, hd)
                for r in 0 ..< m {
                    let qr = qb.value + r * inner + hd * d, ar = ab.value + r * inner + hd * d
                    var den: Float = 0
                    for j in 0 ..< d { den += qr[j] * ks[j] }
                    let inv = 1 / (den + 1e-15)
                    for e in 0 ..< d { ar[e] *= inv }
                }
            }
        }
    }

    /// x += gate ⊙ GLUMBConv(LN(x)·(1 + scale) + shift), over bands of image rows, in place (see the header).
    private func feedForwardInBands(_ x: UnsafeMutablePointer<Float>, batches b: Int, channels c: Int,
                                    plan: FeedForwardBands, mod: BlockModulation, scratch: DiTBlockScratch) {
        let (height, width, bandRows, rowFloats) = (plan.height, plan.width, plan.bandRows, plan.rowFloats)
        let n = height * width
        let (t, normed, gated, projected) = (scratch[.band], scratch[.normed], scratch[.gated], scratch[.projected])
        let depthwise = DepthwiseGLU(weight: ff.convDepthWeight, bias: ff.convDepthBias, channels: plan.wide)
        for bi in 0 ..< b {
            var y0 = 0
            while y0 < height {
                let y1 = min(y0 + bandRows, height), rowsHere = y1 - y0
                // t slot s holds image row y0 − 1 + s. Slots 0 and 1 (rows y0 − 1, y0) come from the previous band's
                // last two slots; the first band has a zero row above the frame and computes row 0 itself.
                let fresh: Range<Int>  // image rows computed now
                if y0 == 0 {
                    t.update(repeating: 0, count: rowFloats)
                    fresh = 0 ..< min(y1 + 1, height)
                } else {
                    // the previous band was full: its slots bandRows, bandRows + 1 are rows y0 − 1, y0
                    t.update(from: t + bandRows * rowFloats, count: 2 * rowFloats)
                    fresh = min(y0 + 1, height) ..< min(y1 + 1, height)
                }
                if !fresh.isEmpty {
                    let first = bi * n + fresh.lowerBound * width, rows = first ..< first + fresh.count * width
                    modulatedNorm(x, rows: rows, tokens: n, channels: c, shift: mod.shiftMLP, onePlusScale: mod.scaleMLP,
                                  weight: norm2Weight, bias: norm2Bias, into: normed)
                    // silu(conv_inverted(·)) straight into the band's slots: [fresh·W, wide]
                    let slot = t + (fresh.lowerBound - (y0 - 1)) * rowFloats
                    ff.convInverted.applySiLU(normed, rows: rows.count, into: slot)
                }
                if y1 == height {  // zero row below the frame
                    (t + (rowsHere + 1) * rowFloats).update(repeating: 0, count: rowFloats)
                }
                depthwise.apply(t, rows: rowsHere, width: width, into: gated)  // [rowsHere·W, hidden]
                ff.convPoint.apply(gated, rows: rowsHere * width, into: projected)  // [rowsHere·W, C]
                let first = bi * n + y0 * width
                addGated(x + first * c, projected, gate: mod.gateMLP, firstRow: first, rows: rowsHere * width, tokens: n,
                         channels: c)
                y0 = y1
            }
        }
    }
}

/// x[r] += gate[batch of row firstRow + r] ⊙ y[r] (gate nil: x[r] += y[r]) over `rows` rows of [B·N, C] (threaded C).
func addGated(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, gate: [Float]?, firstRow: Int, rows: Int,
              tokens n: Int, channels c: Int) {
    gate.withUnsafeBufferPointerOrNil { g in sana_dit_add_gated(x, y, g, Int64(firstRow), Int64(rows), Int64(n), Int64(c)) }
}

/// relu in place over count values (threaded C).
func reluInPlace(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
    sana_activate(x, Int64(count), Int32(SANA_ACT_RELU.rawValue))
}

/// RMSNorm (eps 1e-5, affine weight) of `rows` rows in place: the attention's qk-norm.
func rmsNorm(_ x: UnsafeMutablePointer<Float>, rows: Int, channels c: Int, weight: [Float]) {
    weight.withUnsafeBufferPointer { sana_rms_norm(x, Int64(rows), Int64(c), $0.baseAddress, nil, 1e-5) }
}

/// A block's adaLN-single modulation as the streamed forward uses it, each [B·C] batch-major: shift, 1 + scale
/// (the factor the norm multiplies by), gate, for the attention (MSA) and the feed-forward (MLP).
struct BlockModulation {
    let shiftMSA: [Float], scaleMSA: [Float], gateMSA: [Float]
    let shiftMLP: [Float], scaleMLP: [Float], gateMLP: [Float]

    /// parts: the six chunks shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp.
    init(_ parts: [[Float]]) {
        (shiftMSA, scaleMSA, gateMSA) = (parts[0], parts[1].map { 1 + $0 }, parts[2])
        (shiftMLP, scaleMLP, gateMLP) = (parts[3], parts[4].map { 1 + $0 }, parts[5])
    }
}

/// The linear attention's key statistics of one block, zeroed at creation: kv [B, heads, d, d] = Σ relu(k)ᵀ·v and
/// ksum [B, heads, d] = Σ relu(k) over each batch element's tokens. Workers write disjoint heads.
final class KeyStatistics: @unchecked Sendable {
    let heads: Int, dim: Int, inner: Int
    private let kvValues: UnsafeMutablePointer<Float>, ksumValues: UnsafeMutablePointer<Float>

    init(batches: Int, heads: Int, inner: Int) {
        (self.heads, dim, self.inner) = (heads, inner / heads, inner)
        kvValues = .allocate(capacity: batches * heads * dim * dim)
        kvValues.initialize(repeating: 0, count: batches * heads * dim * dim)
        ksumValues = .allocate(capacity: batches * inner)
        ksumValues.initialize(repeating: 0, count: batches * inner)
    }

    deinit {
        kvValues.deallocate()
        ksumValues.deallocate()
    }

    /// kv[batch, head]: [d, d]
    func kv(_ batch: Int, _ head: Int) -> UnsafeMutablePointer<Float> { kvValues + (batch * heads + head) * dim * dim }
    /// ksum[batch, head]: [d]
    func ksum(_ batch: Int, _ head: Int) -> UnsafeMutablePointer<Float> { ksumValues + batch * inner + head * dim }
}

/// The feed-forward's band geometry: bands of `bandRows` image rows (about bandTokens tokens), each with one
/// halo row above and below of silu(conv_inverted(·)) [wide channels].
struct FeedForwardBands {
    let height: Int, width: Int, bandRows: Int, wide: Int, hidden: Int
    var rowFloats: Int { width * wide }
    /// t [bandRows + 2, W, wide]
    var bandFloats: Int { (bandRows + 2) * rowFloats }
    /// gated [bandRows·W, hidden]
    var gatedFloats: Int { bandRows * width * hidden }
    /// Rows normed at once (the first band computes its rows and the halo below) and output rows per band.
    var normedRows: Int { min(bandRows + 1, height) * width }
    var outRows: Int { bandRows * width }

    init(_ ff: GLUMBConv, height: Int, width: Int, bandTokens: Int) {
        self.height = height
        self.width = width
        bandRows = max(1, min(height, bandTokens / max(width, 1)))
        wide = ff.convInverted.outFeatures
        hidden = wide / 2
    }
}

/// The streamed block forward's working buffers, kept by the block runner (SanaTransformer2DModel's forward) for
/// all of its blocks, so that no block allocates (and page-faults) its large temporaries anew: relu(q) of every
/// token, the slices' normed input, k, v, attention and projection outputs, and the feed-forward band. Contents are
/// uninitialized until written; buffers grow on demand and are freed with the scratch. Local to the DiT runner.
final class DiTBlockScratch {
    enum Buffer: Int, CaseIterable { case queries, normed, keys, values, attended, crossQueries, projected, band, gated }

    private var pointers: [UnsafeMutablePointer<Float>?] = Array(repeating: nil, count: Buffer.allCases.count)
    private var capacities = [Int](repeating: 0, count: Buffer.allCases.count)

    init() {}

    /// Grows every listed buffer to at least its count (a grown buffer's contents are dropped; pointers taken
    /// before are invalid).
    func reserve(_ sizes: [Buffer: Int]) {
        for (buffer, count) in sizes where capacities[buffer.rawValue] < count {
            pointers[buffer.rawValue]?.deallocate()
            pointers[buffer.rawValue] = UnsafeMutablePointer<Float>.allocate(capacity: count)
            capacities[buffer.rawValue] = count
        }
    }

    /// The buffer's memory (reserved beforehand).
    subscript(_ buffer: Buffer) -> UnsafeMutablePointer<Float> {
        guard let p = pointers[buffer.rawValue] else { preconditionFailure("DiTBlockScratch: \(buffer) not reserved") }
        return p
    }

    deinit { for p in pointers { p?.deallocate() } }
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
/// attention of query rows against it. Keys masked by the caption bias are dropped before their projections: with
/// the reference's additive (1 − mask)·(−10000) their softmax weight is exp(−10000 + Δ) = exactly 0 in float32 for
/// any score spread Δ below ~9900, so skipping them changes nothing (a batch whose keys are all masked keeps them
/// all: uniform weights). The projections run per row (activation quantization included), so projecting only the
/// kept rows gives those rows' values exactly.
///
/// When the block's projections run with rounded activations (int8 / int4 / bf16 weights on the kernels) and the CPU
/// has bf16 dot products, the attention core itself runs with bf16 operands and float32 sums
/// (sana_dit_cross_attention, as a bf16 PyTorch pipeline computes it; docs/NUMERICS.md "Linear DiT"): the keys and
/// values are packed for it here, once per block. f32 weights keep the float32 core.
struct CrossAttentionKeys {
    let attention: SanaAttention
    /// Per batch: the kept keys' rows [L_b, heads·d], values [L_b, heads·dV] and their biases [L_b].
    let keys: [[Float]], values: [[Float]], biases: [[Float]]
    /// Per batch: keys and values packed for sana_dit_cross_attention, or nil for the float32 core.
    let packed: [[UInt16]]?
    let width: Int, widthV: Int

    init(_ a: SanaAttention, caption: Tensor, bias: Tensor?) {
        attention = a
        let (b, l, cin) = (caption.shape[0], caption.shape[1], caption.lastDim)
        let (width, widthV) = (a.toK.outFeatures, a.toV.outFeatures)
        (self.width, self.widthV) = (width, widthV)
        var kept: [[Int]] = [], biases: [[Float]] = []
        for bi in 0 ..< b {
            let row = (0 ..< l).map { bias?.data[bi * l + $0] ?? 0 }
            let top = row.max() ?? 0
            kept.append((0 ..< l).filter { row[$0] > top - 1000 })  // see the type's comment
            biases.append(kept[bi].map { row[$0] })
        }
        // The kept caption rows of every batch, one after the other: [Σ L_b, cin]
        var rows = [Float]()
        rows.reserveCapacity(kept.reduce(0) { $0 + $1.count } * cin)
        for bi in 0 ..< b { for j in kept[bi] { rows += caption.data[(bi * l + j) * cin ..< (bi * l + j + 1) * cin] } }
        let total = rows.count / max(cin, 1)
        var k = [Float](repeating: 0, count: total * width), v = [Float](repeating: 0, count: total * widthV)
        rows.withUnsafeBufferPointer { xp in
            k.withUnsafeMutableBufferPointer { kp in
                v.withUnsafeMutableBufferPointer { vp in
                    Linear.apply([a.toK, a.toV], xp.baseAddress!, rows: total, into: [kp.baseAddress!, vp.baseAddress!])
                    if let w = a.normK { rmsNorm(kp.baseAddress!, rows: total, channels: width, weight: w) }
                }
            }
        }
        var keys: [[Float]] = [], values: [[Float]] = [], first = 0
        for bi in 0 ..< b {
            let end = first + kept[bi].count
            keys.append(Array(k[first * width ..< end * width]))
            values.append(Array(v[first * widthV ..< end * widthV]))
            first = end
        }
        (self.keys, self.values, self.biases) = (keys, values, biases)
        let (heads, rounded) = (a.heads, a.toQ.runsOnKernels && a.toQ.weight.type != .f32)
        var packed: [[UInt16]]? = nil
        if rounded && sana_dit_cross_attention_has_kernel() != 0 {
            let (d, dv) = (Int64(width / heads), Int64(widthV / heads))
            packed = []
            for bi in 0 ..< b {
                let lk = Int64(biases[bi].count)
                var p = [UInt16](repeating: 0, count: Int(sana_dit_cross_kv_bytes(lk, Int64(heads), d, dv)) / 2)
                // No memory for the pack: the float32 core, as on a CPU without the kernel.
                guard sana_dit_cross_kv_pack(keys[bi], values[bi], lk, Int64(heads), d, dv, &p) != 0 else { packed = nil; break }
                packed?.append(p)
            }
        }
        self.packed = packed
    }

    /// to_out(softmax(to_q(x)·kᵀ/√d + bias)·v) for query rows `rows` of [B·N, C], x pointing at the first of them,
    /// into out [rows, C]; `queries` [rows, heads·d] and `attended` [rows, heads·dV] are working buffers.
    func attend(_ x: UnsafePointer<Float>, rows: Range<Int>, tokens n: Int, queries: UnsafeMutablePointer<Float>,
                attended: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        attention.toQ.apply(x, rows: rows.count, into: queries)
        if let w = attention.normQ { rmsNorm(queries, rows: rows.count, channels: width, weight: w) }
        let heads = attention.heads, d = width / heads, dv = widthV / heads
        let scale = 1 / Float(d).squareRoot()
        for seg in batchSegments(rows, tokens: n) {
            let keys = keys[seg.batch], values = values[seg.batch], bias = biases[seg.batch]
            let lk = bias.count, m = seg.rows.count, off = seg.rows.lowerBound - rows.lowerBound
            if let packed, sana_dit_cross_attention(queries + off * width, Int64(m), Int64(heads), Int64(d), Int64(dv),
                                                    packed[seg.batch], Int64(lk), bias, scale, attended + off * widthV) != 0 {
                continue
            }
            let workers = max(1, Int(sana_get_threads()))
            var scores = [Float](repeating: 0, count: workers * m * lk)  // per worker: one head's [m, L_b]
            keys.withUnsafeBufferPointer { kp in
                values.withUnsafeBufferPointer { vp in
                    bias.withUnsafeBufferPointer { bp in
                        scores.withUnsafeMutableBufferPointer { sp in
                            let (qb, kb, vb, bb) = (SendablePointer(queries + off * width), SendablePointer(kp.baseAddress!),
                                                    SendablePointer(vp.baseAddress!), SendablePointer(bp.baseAddress!))
                            let (ab, sb) = (SendablePointer(attended + off * widthV), SendablePointer(sp.baseAddress!))
                            let (width, widthV) = (self.width, self.widthV)
                            forEachPartInParallel(heads) { worker, hs in
                                let s = sb.value + worker * m * lk
                                for hd in hs {
                                    // scores [m, L_b] = scale · q_hd [m, d] · k_hdᵀ [d, L_b]
                                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(lk), Int32(d), scale,
                                                qb.value + hd * d, Int32(width), kb.value + hd * d, Int32(width), 0, s, Int32(lk))
                                    sana_dit_softmax_bias(s, Int64(m), Int64(lk), bb.value)  // + mask bias, softmax per row
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
        attention.toOut.apply(attended, rows: rows.count, into: out)
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

    func apply(_ t: UnsafePointer<Float>, rows: Int, width: Int, into gated: UnsafeMutablePointer<Float>) {
        taps.withUnsafeBufferPointer { wp in
            bias.withUnsafeBufferPointer { bp in
                sana_dit_depthwise_glu(t, Int64(rows), Int64(width), Int64(channels), wp.baseAddress, bp.baseAddress, gated)
            }
        }
    }
}
