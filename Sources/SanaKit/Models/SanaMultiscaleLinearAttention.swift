import COpenBLAS
import SanaFormat

// Follows diffusers/models/attention_processor.py `SanaMultiscaleLinearAttention`, its
// `SanaMultiscaleAttentionProjection` and `SanaMultiscaleAttnProcessor2_0`:
//   qkv = cat(to_q(x), to_k(x), to_v(x))                      channels [3·inner], inner = heads·d
//   each kernel size k: proj_out(proj_in(qkv))                  depthwise k×k, then 1×1 grouped (3·heads groups of d)
//   reshape cat(qkv, scale₁, …) to (B, heads·(1+S), 3·d, H·W)   → per group: q, k, v of d channels each
//   ReLU linear attention per group, to_out (no bias), norm_out over channels, + input.
// Note the grouping: groups of 3·d consecutive channels of cat(q, k, v), so group 0's "query" is to_q's first d
// channels, its "key" to_q's next d, …: we reproduce that layout exactly, it is what the weights were trained with.
// The reference switches to "quadratic" attention when H·W ≤ d; that branch computes the same quotient
// Σₘ v·(kᵀq)ₘₙ / (Σₘ (kᵀq)ₘₙ + eps), so the linear form is used for every size (the fixtures cover both branches).

struct SanaMultiscaleLinearAttention: Sendable {
    let toQKV: Linear                 // to_q, to_k, to_v: [inner, C] each, no bias; rows concatenated when stored alike
    let splitQKV: [Linear]?           // the three separately when their storage types differ
    let multiscale: [(kernel: Int, projIn: [Float], projOut: [Float])]
    // to_qkv_multiscale.{s}.proj_in.weight [3·inner, 1, k, k], .proj_out.weight [3·inner, d, 1, 1] (float: small)
    let toOut: Linear                 // to_out: [out, inner·(1+S)], no bias
    let normOut: DCAENorm             // norm_out: rms_norm or batch_norm over out channels
    let headDim: Int
    let inner: Int

    static let eps: Float = 1e-15

    init(_ source: WeightSource, _ prefix: String, channels c: Int, headDim d: Int, kernelSizes: [Int],
         norm: AutoencoderDCConfig.NormType) throws {
        let heads = c / d  // num_attention_heads = int(in_channels // attention_head_dim * mult), mult = 1
        let inner = heads * d
        self.inner = inner
        headDim = d
        let q = try Linear(source, prefix + ".to_q", shape: [inner, c], bias: false)
        let k = try Linear(source, prefix + ".to_k", shape: [inner, c], bias: false)
        let v = try Linear(source, prefix + ".to_v", shape: [inner, c], bias: false)
        if q.weight.type == k.weight.type && q.weight.type == v.weight.type {
            // One product for q, k and v: the packed [3·inner, C] matrix.
            let fused = StoredTensor.concatenatingRows(name: prefix + ".to_qkv", [q.weight, k.weight, v.weight])
            toQKV = Linear(weight: fused, bias: nil)
            splitQKV = nil
        } else {
            toQKV = q
            splitQKV = [q, k, v]
        }
        multiscale = try kernelSizes.enumerated().map { s, ks in
            let p = prefix + ".to_qkv_multiscale.\(s)"
            return (ks, try source.floats(p + ".proj_in.weight", shape: [3 * inner, 1, ks, ks]),
                    try source.floats(p + ".proj_out.weight", shape: [3 * inner, d, 1, 1]))
        }
        toOut = try Linear(source, prefix + ".to_out", shape: [c, inner * (1 + kernelSizes.count)], bias: false)
        normOut = try DCAENorm(source, prefix + ".norm_out", type: norm, channels: c)
    }

    /// Largest multi-scale kernel radius: how many rows / columns of neighbours one position's q, k, v read.
    var radius: Int { (multiscale.map(\.kernel).max() ?? 1) / 2 }
    var sourceCount: Int { 1 + multiscale.count }

    /// Zero statistics for a batch of `batch` images.
    func emptyStatistics(batch: Int) -> LinearAttentionStatistics {
        LinearAttentionStatistics(batch: batch, sources: sourceCount, heads: inner / headDim, headDim: headDim)
    }

    /// x: [B, H, W, C] → [B, H, W, C]: the reference's computation, statistics taken over the whole frame.
    /// A frame whose q/k/v exceed one band is done in two passes over row bands (statistics, then output), which
    /// computes the projections twice but keeps the temporaries at band size.
    func callAsFunction(_ x: Tensor, budget: Int = DCAEBands.bandFloats) -> Tensor {
        if runsInBands(x, budget: budget) {
            var stats = emptyStatistics(batch: x.shape[0])
            accumulateStatistics(x, rows: 0 ..< x.shape[1], cols: 0 ..< x.shape[2], into: &stats, budget: budget)
            return apply(x, statistics: stats, budget: budget)
        }
        // One band: each source's statistics are complete before it is attended, so one pass does both.
        var stats = emptyStatistics(batch: x.shape[0])
        return output(x, rows: 0 ..< x.shape[1]) { s, src in
            accumulate(&src, rows: 0 ..< src.shape[1], cols: 0 ..< src.shape[2], source: s, into: &stats)
            return attend(&src, source: s, statistics: stats)
        }
    }

    /// True when `callAsFunction(x)` works in more than one band (two passes; its output then comes from
    /// `apply`, from the BufferPool in effect).
    func runsInBands(_ x: Tensor, budget: Int = DCAEBands.bandFloats) -> Bool {
        DCAEBands.split(height: x.shape[1], rowFloats: rowFloats(x), budget: budget).count > 1
    }

    /// Adds the statistics of the positions rows × cols of x (all of x is used as their neighbourhood).
    func accumulateStatistics(_ x: Tensor, rows: Range<Int>, cols: Range<Int>, into stats: inout LinearAttentionStatistics,
                              budget: Int = DCAEBands.bandFloats) {
        for band in DCAEBands.split(height: rows.count, rowFloats: rowFloats(x), budget: budget) {
            let r = (rows.lowerBound + band.lowerBound) ..< (rows.lowerBound + band.upperBound)
            forEachSource(x, rows: r) { s, src in
                accumulate(&src, rows: 0 ..< src.shape[1], cols: cols, source: s, into: &stats)
            }
        }
    }

    /// x: [B, H, W, C] → [B, H, W, C] with the given (whole-frame) statistics: every position's output depends on
    /// x only within `radius`, so a window of a frame gives exactly the frame's output away from its edges.
    func apply(_ x: Tensor, statistics stats: LinearAttentionStatistics, budget: Int = DCAEBands.bandFloats) -> Tensor {
        // The bands partition the rows: every element is pasted, so the storage is not zeroed (a pooled buffer).
        var out = Tensor(shape: x.shape, data: BufferPool.uninitialized(count: x.count))
        for band in DCAEBands.split(height: x.shape[1], rowFloats: rowFloats(x), budget: budget) {
            out.paste(output(x, rows: band) { s, src in attend(&src, source: s, statistics: stats) }, row: band.lowerBound)
        }
        return out
    }

    /// Floats per row of x held by one band: q/k/v, a multi-scale source being built (two buffers), the attended
    /// values and the projected output.
    private func rowFloats(_ x: Tensor) -> Int {
        x.shape[0] * x.shape[2] * (9 * inner + inner * sourceCount + x.shape[3])
    }

    /// to_out(attended) → norm_out → + x for the rows `rows` of x; `attended(s, src)` turns source s into its
    /// attended values [B·rows·W, inner].
    private func output(_ x: Tensor, rows: Range<Int>,
                        _ attended: (Int, inout Tensor) -> [Float]) -> Tensor {
        let (b, w) = (x.shape[0], x.shape[2])
        let tokens = rows.count * w, sources = sourceCount
        // all: [B, rows, W, inner·(1+S)]; source s fills channels s·inner ..< (s+1)·inner
        var all = BufferPool.freshUninitialized(b * tokens * inner * sources)  // every source fills its channels
        forEachSource(x, rows: rows) { s, src in
            let a = attended(s, &src)
            all.withUnsafeMutableBufferPointer { o in
                a.withUnsafeBufferPointer { p in
                    guard let to = o.baseAddress, let from = p.baseAddress else { return }
                    // token t: inner values of source s at channel s·inner of row t
                    for t in 0 ..< b * tokens { (to + t * inner * sources + s * inner).update(from: from + t * inner, count: inner) }
                }
            }
        }
        var out = toOut.apply(Tensor(shape: [b, rows.count, w, inner * sources], data: all))
        normOut.apply(&out)
        out.addInPlace(x.window(rows: rows))
        return out
    }

    /// Calls body(s, src) for each source s of the rows `rows` of x: src [B, rows, W, 3·inner] is qkv (s = 0) or
    /// multi-scale projection s (s ≥ 1), computed from x's rows widened by `radius` so that the depthwise
    /// convolution sees the same neighbours as on the whole of x. Multi-scale sources come first (they read qkv
    /// before ReLU); source 0 last, handed over without a copy.
    private func forEachSource(_ x: Tensor, rows: Range<Int>, _ body: (Int, inout Tensor) -> Void) {
        let h = x.shape[1]
        let lo = multiscale.isEmpty ? rows.lowerBound : max(rows.lowerBound - radius, 0)
        let hi = multiscale.isEmpty ? rows.upperBound : min(rows.upperBound + radius, h)
        let xs = x.window(rows: lo ..< hi)
        let inside = (rows.lowerBound - lo) ..< (rows.upperBound - lo)  // rows of xs that are `rows` of x
        var qkv: Tensor  // [B, hi − lo, W, 3·inner]
        if let splitQKV {
            let parts = splitQKV.map { $0.apply(xs) }
            qkv = Tensor(zeros: Array(xs.shape.dropLast()) + [3 * inner])
            for (p, t) in parts.enumerated() {
                for r in 0 ..< t.rows { for j in 0 ..< inner { qkv.data[r * 3 * inner + p * inner + j] = t.data[r * inner + j] } }
            }
        } else {
            qkv = toQKV.apply(xs)
        }
        for (s, scale) in multiscale.enumerated() {
            var src = groupedPointwise(qkv.depthwiseConv2d(weight: scale.projIn, bias: nil, kernel: scale.kernel),
                                       scale.projOut).window(rows: inside)
            body(s + 1, &src)
        }
        var src = qkv.window(rows: inside)
        qkv = Tensor(zeros: [0])
        body(0, &src)
    }

    /// Adds Σ v·relu(k)ᵀ and Σ relu(k) over the positions rows × cols of src [B, h, w, 3·inner] to the statistics
    /// of source s (overwrites k there with relu(k)).
    private func accumulate(_ src: inout Tensor, rows: Range<Int>, cols: Range<Int>, source s: Int,
                            into stats: inout LinearAttentionStatistics) {
        let (b, h, w) = (src.shape[0], src.shape[1], src.shape[2])
        let d = headDim, ld = 3 * inner
        // Whole rows are contiguous: one run of rows·w tokens, else one run of cols per row.
        let runs: [(start: Int, tokens: Int)] = cols == 0 ..< w
            ? [(rows.lowerBound * w, rows.count * w)]
            : rows.map { ($0 * w + cols.lowerBound, cols.count) }
        let layout = stats.layout  // read before the exclusive access to stats.values below
        let heads = inner / d
        src.data.withUnsafeMutableBufferPointer { sp in
            stats.values.withUnsafeMutableBufferPointer { st in
                let (srcBase, statBase) = (SendablePointer(sp.baseAddress!), SendablePointer(st.baseAddress!))
                // Heads (of every image) over our workers, each sgemm on one OpenBLAS thread (ParallelParts.swift:
                // a threaded OpenBLAS would wake its pool for these small products and spin); each head writes
                // only its own statistics and its own k columns.
                forEachPartInParallel(b * heads) { _, items in
                    for item in items {
                        let (n, g) = (item / heads, item % heads)
                        let acc = statBase.value + layout.offset(image: n, source: s, head: g)  // KV [d, d] then ksum [d]
                        for run in runs {
                            // group g of image n: k, v are [tokens, d] slices with row stride 3·inner
                            let k = srcBase.value + (n * h * w + run.start) * ld + g * 3 * d + d, v = k + d
                            for t in 0 ..< run.tokens { for j in 0 ..< d {
                                let kv = max(k[t * ld + j], 0)
                                k[t * ld + j] = kv
                                acc[d * d + j] += kv
                            } }
                            // KV [d, d] += vᵀ · relu(k)
                            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(run.tokens), 1,
                                        v, Int32(ld), k, Int32(ld), 1, acc, Int32(d))
                        }
                    }
                }
            }
        }
    }

    /// Attended values of source s: out[n, i] = Σⱼ relu(q)[n, j]·KV[i, j] / (Σⱼ relu(q)[n, j]·ksum[j] + eps), the
    /// reference's "pad v with a row of ones" quotient; src [B, h, w, 3·inner] → [B·h·w, inner] (q overwritten).
    private func attend(_ src: inout Tensor, source s: Int, statistics stats: LinearAttentionStatistics) -> [Float] {
        let b = src.shape[0], tokens = src.shape[1] * src.shape[2], d = headDim, ld = 3 * inner
        let heads = inner / d, layout = stats.layout
        // out [B·h·w, inner]: head g writes its d columns of every token (uninitialized: all are written).
        var out = BufferPool.freshUninitialized(b * tokens * inner)
        src.data.withUnsafeMutableBufferPointer { sp in
            stats.values.withUnsafeBufferPointer { st in
                out.withUnsafeMutableBufferPointer { op in
                    let (srcBase, statBase, outBase) = (SendablePointer(sp.baseAddress!), SendablePointer(st.baseAddress!),
                                                        SendablePointer(op.baseAddress!))
                    // Heads over our workers, OpenBLAS single-threaded (see accumulate); disjoint q and out columns.
                    forEachPartInParallel(b * heads) { _, items in
                        for item in items {
                            let (n, g) = (item / heads, item % heads)
                            let kv = statBase.value + layout.offset(image: n, source: s, head: g), ksum = kv + d * d
                            let q = srcBase.value + n * tokens * ld + g * 3 * d, o = outBase.value + n * tokens * inner + g * d
                            for t in 0 ..< tokens { for j in 0 ..< d { q[t * ld + j] = max(q[t * ld + j], 0) } }
                            // o [tokens, d] = relu(q) · KVᵀ
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(d), Int32(d), 1,
                                        q, Int32(ld), kv, Int32(d), 0, o, Int32(inner))
                            for t in 0 ..< tokens {
                                var den: Float = 0
                                for j in 0 ..< d { den += q[t * ld + j] * ksum[j] }
                                let inv = 1 / (den + Self.eps)
                                for i in 0 ..< d { o[t * inner + i] *= inv }
                            }
                        }
                    }
                }
            }
        }
        return out
    }

    /// proj_out: 1×1 conv with 3·heads groups of d channels; weight [3·inner, d] (row g·d + o, column i).
    /// x: [B, H, W, 3·inner] → same shape.
    private func groupedPointwise(_ x: Tensor, _ weight: [Float]) -> Tensor {
        let d = headDim, c = 3 * inner, rows = x.rows
        // Y [rows, c]: group g writes its d columns (uninitialized: all are written)
        var out = BufferPool.freshUninitialized(x.count)
        x.data.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { yp in
                    let (xb, wb, yb) = (SendablePointer(xp.baseAddress!), SendablePointer(wp.baseAddress!), SendablePointer(yp.baseAddress!))
                    // Groups over our workers, OpenBLAS single-threaded (see accumulate).
                    forEachPartInParallel(c / d) { _, groups in
                        for g in groups {
                            // Y[:, g·d ..< g·d+d] = X[:, g·d ..< g·d+d] · W_gᵀ, W_g = weight rows g·d ..< g·d+d
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(d), Int32(d), 1,
                                        xb.value + g * d, Int32(c), wb.value + g * d * d, Int32(d), 0, yb.value + g * d, Int32(c))
                        }
                    }
                }
            }
        }
        return Tensor(shape: x.shape, data: out)
    }
}

/// What ReLU linear attention needs from all positions, per image, source and head: KV = Σₙ v·relu(k)ᵀ [d, d]
/// and ksum = Σₙ relu(k) [d]. Computed over the whole frame once, it makes the attention of any window exact
/// (tiled decoding, AutoencoderDC+Tiling.swift). Layout [B, sources, heads, d·d + d].
struct LinearAttentionStatistics: Sendable {
    struct Layout: Sendable {
        let sources: Int
        let heads: Int
        let headDim: Int

        func offset(image n: Int, source s: Int, head g: Int) -> Int {
            ((n * sources + s) * heads + g) * (headDim * headDim + headDim)
        }
    }

    var values: [Float]
    let layout: Layout

    init(batch: Int, sources: Int, heads: Int, headDim d: Int) {
        values = [Float](repeating: 0, count: batch * sources * heads * (d * d + d))
        layout = Layout(sources: sources, heads: heads, headDim: d)
    }

    /// Adds another partial sum (the statistics of a disjoint set of positions).
    mutating func add(_ other: LinearAttentionStatistics) {
        precondition(values.count == other.values.count, "LinearAttentionStatistics.add: sizes differ")
        for i in 0 ..< values.count { values[i] += other.values[i] }
    }
}
