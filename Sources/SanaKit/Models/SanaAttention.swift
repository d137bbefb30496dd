import SanaFormat

// Follows diffusers/models/attention_processor.py `Attention` as SanaTransformerBlock builds it, with its two
// processors: attn1 = SanaLinearAttnProcessor2_0 (ReLU linear self-attention, Ops/LinearAttention.swift) and
// attn2 = SanaAttnProcessor2_0 in sana_transformer.py (softmax cross-attention over the caption,
// Ops/CrossAttention.swift). qk_norm "rms_norm_across_heads" is RMSNorm(heads·dim, eps 1e-5, affine) on the
// projected q and k before the heads split. Dropout (to_out.1) is the identity at inference.

public struct SanaAttention: Sendable {
    public enum Kind: Sendable { case linearSelf, softmaxCross }

    public let kind: Kind
    public let heads: Int
    public let toQ: Linear       // <prefix>.to_q: [heads·dim, query_dim] (+ bias)
    public let toK: Linear       // <prefix>.to_k: [heads·dim, kv_dim] (+ bias)
    public let toV: Linear       // <prefix>.to_v: [heads·dim, kv_dim] (+ bias)
    public let toOut: Linear     // <prefix>.to_out.0: [query_dim, heads·dim] + bias
    public let normQ: [Float]?   // <prefix>.norm_q.weight: [heads·dim]
    public let normK: [Float]?   // <prefix>.norm_k.weight: [heads·dim]

    /// Shapes and names of one attention module; `bias` is the q/k/v projections' bias (to_out always has one).
    struct Layout {
        var kind: Kind
        var queryDim: Int, kvDim: Int, heads: Int, headDim: Int, bias: Bool, qkNorm: Bool
        var inner: Int { heads * headDim }

        func tensorShapes(_ prefix: String) -> [TensorShape] {
            var n = linearShapes(prefix + ".to_q", [inner, queryDim], bias: bias)
            n += linearShapes(prefix + ".to_k", [inner, kvDim], bias: bias) + linearShapes(prefix + ".to_v", [inner, kvDim], bias: bias)
            n += linearShapes(prefix + ".to_out.0", [queryDim, inner])
            if qkNorm { n += [(prefix + ".norm_q.weight", [inner]), (prefix + ".norm_k.weight", [inner])] }
            return n
        }
    }

    /// The self-attention (attn1) and cross-attention (attn2) layouts of a block.
    static func layouts(_ c: SanaTransformerConfig) -> (attn1: Layout, attn2: Layout) {
        (Layout(kind: .linearSelf, queryDim: c.innerDim, kvDim: c.innerDim, heads: c.numAttentionHeads,
                headDim: c.attentionHeadDim, bias: c.attentionBias, qkNorm: c.usesQKNorm),
         Layout(kind: .softmaxCross, queryDim: c.innerDim, kvDim: c.crossAttentionDim ?? c.innerDim, heads: c.crossHeads,
                headDim: c.crossHeadDim, bias: true, qkNorm: c.usesQKNorm))
    }

    init(_ source: WeightSource, _ prefix: String, _ l: Layout) throws {
        kind = l.kind
        heads = l.heads
        toQ = try Linear(source, prefix + ".to_q", shape: [l.inner, l.queryDim], bias: l.bias)
        toK = try Linear(source, prefix + ".to_k", shape: [l.inner, l.kvDim], bias: l.bias)
        toV = try Linear(source, prefix + ".to_v", shape: [l.inner, l.kvDim], bias: l.bias)
        toOut = try Linear(source, prefix + ".to_out.0", shape: [l.queryDim, l.inner])
        normQ = l.qkNorm ? try source.floats(prefix + ".norm_q.weight", shape: [l.inner]) : nil
        normK = l.qkNorm ? try source.floats(prefix + ".norm_k.weight", shape: [l.inner]) : nil
    }

    /// x [B, N, query_dim]; context [B, L, kv_dim] (cross-attention only; self-attention attends to x);
    /// keyBias [B, L] the additive caption-mask bias → [B, N, query_dim].
    public func callAsFunction(_ x: Tensor, context: Tensor? = nil, keyBias: Tensor? = nil) -> Tensor {
        let kvInput = context ?? x
        var q = toQ.apply(x), k = toK.apply(kvInput)
        let v = toV.apply(kvInput)
        if let normQ { q = q.rmsNorm(weight: normQ, eps: 1e-5) }
        if let normK { k = k.rmsNorm(weight: normK, eps: 1e-5) }
        // q, k, v stay [B, N, heads·dim]: head-major channels are the reference's unflatten(heads, -1).
        let attended: Tensor
        switch kind {
        case .linearSelf: attended = reluLinearAttention(query: q, key: k, value: v, heads: heads)
        case .softmaxCross: attended = scaledDotProductAttention(query: q, key: k, value: v, heads: heads, keyBias: keyBias)
        }
        return toOut.apply(attended)
    }
}
