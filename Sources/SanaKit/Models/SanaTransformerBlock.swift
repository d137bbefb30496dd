import SanaFormat

// Follows diffusers/models/transformers/sana_transformer.py `SanaTransformerBlock`: adaLN-single modulated
// linear self-attention, unmodulated softmax cross-attention over the caption, and the GLUMBConv feed-forward
// applied on the token grid.

/// One DiT block. Built from the source right before it runs and dropped right after (the model streams blocks).
public struct SanaTransformerBlock: Sendable {
    public let index: Int
    public let attn1: SanaAttention          // transformer_blocks.i.attn1.*  (linear self-attention)
    public let attn2: SanaAttention          // transformer_blocks.i.attn2.*  (cross-attention)
    public let norm2Weight: [Float]?         // transformer_blocks.i.norm2.weight [C] (norm_elementwise_affine only)
    public let norm2Bias: [Float]?           // transformer_blocks.i.norm2.bias [C]
    public let ff: GLUMBConv                 // transformer_blocks.i.ff.*
    public let scaleShiftTable: [Float]      // transformer_blocks.i.scale_shift_table: [6, C]
    public let normEps: Float

    static func prefix(_ index: Int) -> String { "transformer_blocks.\(index)" }

    /// The state-dict keys and shapes of block `index` under `config`.
    static func tensorShapes(_ index: Int, _ config: SanaTransformerConfig) -> [TensorShape] {
        let p = prefix(index), c = config.innerDim, hidden = config.feedForwardHidden
        let (a1, a2) = SanaAttention.layouts(config)
        var n = a1.tensorShapes(p + ".attn1") + a2.tensorShapes(p + ".attn2")
        if config.normElementwiseAffine { n += linearShapes(p + ".norm2", [c]) }
        n += linearShapes(p + ".ff.conv_inverted", [2 * hidden, c, 1, 1]) + linearShapes(p + ".ff.conv_depth", [2 * hidden, 1, 3, 3])
        n += linearShapes(p + ".ff.conv_point", [c, hidden, 1, 1], bias: false)
        return n + [(p + ".scale_shift_table", [6, c])]
    }

    public init(_ source: WeightSource, index: Int, config: SanaTransformerConfig) throws {
        let p = Self.prefix(index), c = config.innerDim
        let (a1, a2) = SanaAttention.layouts(config)
        self.index = index
        attn1 = try SanaAttention(source, p + ".attn1", a1)
        attn2 = try SanaAttention(source, p + ".attn2", a2)
        norm2Weight = config.normElementwiseAffine ? try source.floats(p + ".norm2.weight", shape: [c]) : nil
        norm2Bias = config.normElementwiseAffine ? try source.floats(p + ".norm2.bias", shape: [c]) : nil
        ff = try GLUMBConv(source, p + ".ff", inChannels: c, outChannels: c, expandRatio: config.mlpRatio,
                           rmsNorm: false, residualConnection: false)
        scaleShiftTable = try source.floats(p + ".scale_shift_table", shape: [6, c])
        normEps = Float(config.normEps)
    }

    /// x [B, H'·W', C] tokens of an H'×W' grid; timestepModulation [B, 6C]; caption [B, L, C] (projected and
    /// normed); captionBias [B, L] the additive mask bias → [B, H'·W', C]. Batch elements `identityAttention` run
    /// the self-attention as the identity (perturbed-attention guidance, PerturbedAttention.swift).
    public func callAsFunction(_ x: Tensor, timestepModulation: Tensor, caption: Tensor, captionBias: Tensor?,
                               height: Int, width: Int, identityAttention: Range<Int> = 0 ..< 0) -> Tensor {
        var out = x
        forward(&out, timestepModulation: timestepModulation, caption: caption, captionBias: captionBias, height: height,
                width: width, identityAttention: identityAttention, scratch: DiTBlockScratch())
        return out
    }

    /// The block's forward on x in place, with working buffers from `scratch` (kept by the block runner).
    func forward(_ x: inout Tensor, timestepModulation: Tensor, caption: Tensor, captionBias: Tensor?, height: Int,
                 width: Int, identityAttention: Range<Int>, scratch: DiTBlockScratch) {
        let b = x.shape[0], c = x.lastDim
        // (table[None] [1, 6, C] + modulation.reshape(B, 6, C)).chunk(6, dim=1): part k of batch bi is
        // table[k] + modulation[bi, k·C ..< (k+1)·C].
        func part(_ k: Int) -> [Float] {
            var v = [Float](repeating: 0, count: b * c)
            for bi in 0 ..< b { for j in 0 ..< c { v[bi * c + j] = scaleShiftTable[k * c + j] + timestepModulation.data[(bi * 6 + k) * c + j] } }
            return v
        }
        // Computed a slice of tokens at a time (SanaTransformerBlock+Streamed.swift):
        //   out = x + gate_msa · attn1(LN(x)·(1 + scale_msa) + shift_msa)
        //   out = out + attn2(out, caption)   (the reference applies no norm before attn2)
        //   out = out + gate_mlp · ff(LN(out)·(1 + scale_mlp) + shift_mlp)   (ff on the H'×W' grid)
        streamedForward(&x, modulation: (0 ..< 6).map(part), caption: caption, captionBias: captionBias,
                        height: height, width: width, identityAttention: identityAttention, scratch: scratch)
    }
}
