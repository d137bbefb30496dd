// Gemma2DecoderLayer, Gemma2Attention and Gemma2MLP (transformers/models/gemma2/modeling_gemma2.py):
//   x = x + post_attention_layernorm(self_attn(input_layernorm(x)))
//   x = x + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(x)))
// RMSNorms use (1 + weight) in float32; attention is grouped-query with RoPE, logits scaled by
// query_pre_attn_scalar^-0.5 and soft-capped, causal, sliding-window on "sliding_attention" layers.
import SanaFormat

struct Gemma2DecoderLayer {
    let index: Int
    let config: Gemma2Config
    let qProj: Linear  // layers.i.self_attn.q_proj  [heads·D, hidden]
    let kProj: Linear  // layers.i.self_attn.k_proj  [kvHeads·D, hidden]
    let vProj: Linear  // layers.i.self_attn.v_proj  [kvHeads·D, hidden]
    let oProj: Linear  // layers.i.self_attn.o_proj  [hidden, heads·D]
    let gateProj: Linear  // layers.i.mlp.gate_proj  [intermediate, hidden]
    let upProj: Linear  // layers.i.mlp.up_proj      [intermediate, hidden]
    let downProj: Linear  // layers.i.mlp.down_proj  [hidden, intermediate]
    // 1 + weight of layers.i.{input_layernorm, post_attention_layernorm, pre_feedforward_layernorm,
    // post_feedforward_layernorm}.weight [hidden]
    let inputNorm: [Float], postAttentionNorm: [Float], preFeedforwardNorm: [Float], postFeedforwardNorm: [Float]

    static let norms = ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"]

    static func tensorNames(_ i: Int, _ c: Gemma2Config) -> [String] {
        let p = "layers.\(i)."
        var names = ["q_proj", "k_proj", "v_proj", "o_proj"].map { p + "self_attn.\($0).weight" }
        if c.attentionBias { names += ["q_proj", "k_proj", "v_proj", "o_proj"].map { p + "self_attn.\($0).bias" } }
        names += ["gate_proj", "up_proj", "down_proj"].map { p + "mlp.\($0).weight" }
        names += norms.map { p + "\($0).weight" }
        return names
    }

    init(_ source: WeightSource, _ i: Int, _ c: Gemma2Config) throws {
        index = i
        config = c
        let p = "layers.\(i).", h = c.hiddenSize, qw = c.numAttentionHeads * c.headDim, kvw = c.numKeyValueHeads * c.headDim
        qProj = try Linear(source, p + "self_attn.q_proj", shape: [qw, h], bias: c.attentionBias)
        kProj = try Linear(source, p + "self_attn.k_proj", shape: [kvw, h], bias: c.attentionBias)
        vProj = try Linear(source, p + "self_attn.v_proj", shape: [kvw, h], bias: c.attentionBias)
        oProj = try Linear(source, p + "self_attn.o_proj", shape: [h, qw], bias: c.attentionBias)
        gateProj = try Linear(source, p + "mlp.gate_proj", shape: [c.intermediateSize, h], bias: false)
        upProj = try Linear(source, p + "mlp.up_proj", shape: [c.intermediateSize, h], bias: false)
        downProj = try Linear(source, p + "mlp.down_proj", shape: [h, c.intermediateSize], bias: false)
        let n = try Gemma2DecoderLayer.norms.map { try source.floats(p + "\($0).weight", shape: [h]).map { 1 + $0 } }
        (inputNorm, postAttentionNorm, preFeedforwardNorm, postFeedforwardNorm) = (n[0], n[1], n[2], n[3])
    }

    /// x [R, hidden]: the planned rows of every sequence, concatenated in plan order.
    func callAsFunction(_ x: Tensor, plans: [Gemma2Model.Plan], rope: RotaryEmbedding, record: PrefixRecorder?) -> Tensor {
        let eps = Float(config.rmsNormEps)
        let attn = attention(x.rmsNorm(weight: inputNorm, eps: eps), plans: plans, rope: rope, record: record)
        let h = x + attn.rmsNorm(weight: postAttentionNorm, eps: eps)
        let m = h.rmsNorm(weight: preFeedforwardNorm, eps: eps)
        let mlp = downProj.apply(gatedActivation(gateProj.apply(m), upProj.apply(m)))
        return h + mlp.rmsNorm(weight: postFeedforwardNorm, eps: eps)
    }

    /// act(gate) ⊙ up in one pass over gate's storage; gelu-tanh (every released Gemma-2) vectorized (Ops/FastMath.swift).
    private func gatedActivation(_ gate: Tensor, _ up: Tensor) -> Tensor {
        var g = config.activation == .geluTanh ? gate : config.activation.apply(gate)
        g.data.withUnsafeMutableBufferPointer { gp in
            if config.activation == .geluTanh { fastGELUTanhInPlace(gp.baseAddress!, gp.count) }
            up.data.withUnsafeBufferPointer { upp in for i in 0 ..< gp.count { gp[i] *= upp[i] } }
        }
        return g
    }

    private func attention(_ x: Tensor, plans: [Gemma2Model.Plan], rope: RotaryEmbedding, record: PrefixRecorder?) -> Tensor {
        let heads = config.numAttentionHeads, kvHeads = config.numKeyValueHeads, d = config.headDim
        var q = qProj.apply(x), k = kProj.apply(x)  // [R, heads·D], [R, kvHeads·D]
        let v = vProj.apply(x)
        let positions = plans.flatMap { Array($0.start ..< $0.end) }
        rope.apply(&q, heads: heads, positions: positions)
        rope.apply(&k, heads: kvHeads, positions: positions)
        let window = config.isSliding(index) ? config.slidingWindow : nil
        let scale = Float(1 / config.queryPreAttnScalar.squareRoot())
        let softcap = config.attnLogitSoftcapping.map { Float($0) }
        let kvw = kvHeads * d
        var out = Tensor(zeros: [x.rows, heads * d])
        var row = 0
        for (b, p) in plans.enumerated() {
            let n = p.end - p.start
            defer { row += n }
            guard n > 0 else { continue }
            // Keys/values of positions 0 ..< end: the cached prefix rows, then this call's rows.
            var keys: [Float] = [], values: [Float] = []
            if let cache = p.cache {
                keys = Array(cache.keys[index][0 ..< p.start * kvw])
                values = Array(cache.values[index][0 ..< p.start * kvw])
            }
            keys += k.data[row * kvw ..< (row + n) * kvw]
            values += v.data[row * kvw ..< (row + n) * kvw]
            if b == 0, let record {
                record.keys.append(keys)
                record.values.append(values)
            }
            let qRows = Tensor(shape: [n, heads * d], data: Array(q.data[row * heads * d ..< (row + n) * heads * d]))
            let start = p.start, valid = p.valid
            let o = scaledDotProductAttention(
                q: qRows, k: Tensor(shape: [p.end, kvw], data: keys), v: Tensor(shape: [p.end, kvw], data: values),
                heads: heads, kvHeads: kvHeads, scale: scale, softcap: softcap) { t in
                    // Query at position start + t sees keys kv ≤ pos, kv > pos − window, kv < valid.
                    let pos = start + t
                    let lo = window.map { max(0, pos - $0 + 1) } ?? 0
                    let hi = min(pos, valid - 1)
                    return lo <= hi ? lo ..< hi + 1 : 0 ..< 0
                }
            out.data.replaceSubrange(row * heads * d ..< (row + n) * heads * d, with: o.data)
        }
        return oProj.apply(out)
    }
}
