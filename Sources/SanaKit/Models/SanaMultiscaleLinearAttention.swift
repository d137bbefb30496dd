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

    /// x: [B, H, W, C] → [B, H, W, C].
    func callAsFunction(_ x: Tensor) -> Tensor {
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let tokens = h * w, d = headDim, sources = 1 + multiscale.count
        var qkv: Tensor  // [B, H, W, 3·inner]
        if let splitQKV {
            let parts = splitQKV.map { $0.apply(x) }
            qkv = Tensor(zeros: [b, h, w, 3 * inner])
            for (p, t) in parts.enumerated() {
                for r in 0 ..< t.rows { for j in 0 ..< inner { qkv.data[r * 3 * inner + p * inner + j] = t.data[r * inner + j] } }
            }
        } else {
            qkv = toQKV.apply(x)
        }
        // attended: [B, H·W, heads·(1+S)·d]; source s (0: qkv, s ≥ 1: multiscale s−1) fills channels s·inner …
        var attended = [Float](repeating: 0, count: b * tokens * inner * sources)
        // The multi-scale sources first: they read the pre-ReLU qkv; source 0 last, so it can take qkv's storage
        // (the attention overwrites q and k with their ReLU) without a copy.
        for s in Array(1 ..< sources) + [0] {
            var src: Tensor
            if s == 0 {
                src = qkv
                qkv = Tensor(zeros: [0])
            } else {
                src = groupedPointwise(qkv.depthwiseConv2d(weight: multiscale[s - 1].projIn, bias: nil,
                                                           kernel: multiscale[s - 1].kernel), multiscale[s - 1].projOut)
            }
            let ld = 3 * inner, outLd = inner * sources
            src.data.withUnsafeMutableBufferPointer { sp in
                attended.withUnsafeMutableBufferPointer { op in
                    for n in 0 ..< b {
                        for g in 0 ..< inner / d {
                            // group g of image n: q, k, v are [tokens, d] slices with row stride 3·inner
                            let base = sp.baseAddress! + n * tokens * ld + g * 3 * d
                            reluLinearAttention(q: base, k: base + d, v: base + 2 * d, tokens: tokens, dim: d, ld: ld,
                                                out: op.baseAddress! + n * tokens * outLd + s * inner + g * d,
                                                outLd: outLd)
                        }
                    }
                }
            }
        }
        var out = toOut.apply(Tensor(shape: [b, h, w, inner * sources], data: attended))
        normOut.apply(&out)
        out.addInPlace(x)
        return out
    }

    /// proj_out: 1×1 conv with 3·heads groups of d channels; weight [3·inner, d] (row g·d + o, column i).
    /// x: [B, H, W, 3·inner] → same shape.
    private func groupedPointwise(_ x: Tensor, _ weight: [Float]) -> Tensor {
        let d = headDim, c = 3 * inner, rows = x.rows
        var out = [Float](repeating: 0, count: x.count)
        x.data.withUnsafeBufferPointer { xp in
            weight.withUnsafeBufferPointer { wp in
                out.withUnsafeMutableBufferPointer { yp in
                    for g in 0 ..< c / d {
                        // Y[:, g·d ..< g·d+d] = X[:, g·d ..< g·d+d] · W_gᵀ, W_g = weight rows g·d ..< g·d+d
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(d), Int32(d), 1,
                                    xp.baseAddress! + g * d, Int32(c), wp.baseAddress! + g * d * d, Int32(d), 0,
                                    yp.baseAddress! + g * d, Int32(c))
                    }
                }
            }
        }
        return Tensor(shape: x.shape, data: out)
    }
}

/// ReLU linear attention of one head: q, k, v are [tokens, d] with row stride `ld` (channels-last slices);
/// out[n, i] = Σⱼ relu(q)[n, j]·KV[i, j] / (Σⱼ relu(q)[n, j]·ksum[j] + eps) with KV = vᵀ·relu(k) [d, d] and
/// ksum = Σₙ relu(k)[n, :] (the reference's "pad v with a row of ones" trick). q and k are overwritten by relu.
/// Same math as Ops/LinearAttention.swift — merge.
private func reluLinearAttention(q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>,
                                 v: UnsafeMutablePointer<Float>, tokens: Int, dim d: Int, ld: Int,
                                 out: UnsafeMutablePointer<Float>, outLd: Int) {
    var ksum = [Float](repeating: 0, count: d)
    for n in 0 ..< tokens {
        for j in 0 ..< d {
            q[n * ld + j] = max(q[n * ld + j], 0)
            let kv = max(k[n * ld + j], 0)
            k[n * ld + j] = kv
            ksum[j] += kv
        }
    }
    // KV [d, d] = vᵀ · k  (v, k: [tokens, d] with stride ld)
    var kvm = [Float](repeating: 0, count: d * d)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(d), Int32(d), Int32(tokens), 1, v, Int32(ld), k,
                Int32(ld), 0, &kvm, Int32(d))
    // out [tokens, d] = q · KVᵀ
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tokens), Int32(d), Int32(d), 1, q, Int32(ld), kvm,
                Int32(d), 0, out, Int32(outLd))
    for n in 0 ..< tokens {
        var den: Float = 0
        for j in 0 ..< d { den += q[n * ld + j] * ksum[j] }
        let inv = 1 / (den + SanaMultiscaleLinearAttention.eps)
        for i in 0 ..< d { out[n * outLd + i] *= inv }
    }
}
