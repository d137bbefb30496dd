import Foundation

// Follows the `__init__` arguments of diffusers/models/transformers/sana_transformer.py `SanaTransformer2DModel`
// (the transformer's config.json). Every default below is diffusers' default.

/// Configuration of the Sana Linear DiT, decoded from `transformer/config.json` and validated once.
public struct SanaTransformerConfig: Codable, Sendable, Equatable {
    public var inChannels = 32
    /// nil in the JSON means "same as in_channels" (the reference's `out_channels or in_channels`).
    public var outChannels: Int? = 32
    public var numAttentionHeads = 70
    public var attentionHeadDim = 32
    public var numLayers = 20
    public var numCrossAttentionHeads: Int? = 20
    public var crossAttentionHeadDim: Int? = 112
    public var crossAttentionDim: Int? = 2240
    public var captionChannels = 2304
    public var mlpRatio = 2.5
    /// Training only; ignored at inference.
    public var dropout = 0.0
    /// Bias on the self-attention q/k/v projections.
    public var attentionBias = false
    /// Base latent size: sets the sin-cos position embedding's base grid (sample_size / patch_size).
    public var sampleSize = 32
    public var patchSize = 1
    /// Affine weight/bias on norm2 (the feed-forward's pre-norm); norm1 never has one.
    public var normElementwiseAffine = false
    public var normEps = 1e-6
    /// Non-nil turns on the sin-cos position embedding (released Sana 1.0/1.5 configs: null, so none).
    public var interpolationScale: Double? = nil
    /// Sana Sprint: adds a guidance embedding; `guidance` becomes a required input.
    public var guidanceEmbeds = false
    /// Sana Sprint: the pipeline multiplies the guidance scale by this before the forward (the model does not).
    public var guidanceEmbedsScale = 0.1
    /// "rms_norm_across_heads" (Sana 1.5 / Sprint) or nil.
    public var qkNorm: String? = nil
    /// The pipeline multiplies timesteps by this before the forward (the model does not).
    public var timestepScale = 1.0

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels"
        case outChannels = "out_channels"
        case numAttentionHeads = "num_attention_heads"
        case attentionHeadDim = "attention_head_dim"
        case numLayers = "num_layers"
        case numCrossAttentionHeads = "num_cross_attention_heads"
        case crossAttentionHeadDim = "cross_attention_head_dim"
        case crossAttentionDim = "cross_attention_dim"
        case captionChannels = "caption_channels"
        case mlpRatio = "mlp_ratio"
        case dropout
        case attentionBias = "attention_bias"
        case sampleSize = "sample_size"
        case patchSize = "patch_size"
        case normElementwiseAffine = "norm_elementwise_affine"
        case normEps = "norm_eps"
        case interpolationScale = "interpolation_scale"
        case guidanceEmbeds = "guidance_embeds"
        case guidanceEmbedsScale = "guidance_embeds_scale"
        case qkNorm = "qk_norm"
        case timestepScale = "timestep_scale"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SanaTransformerConfig()
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? d.inChannels
        // Present-but-null means "same as in_channels"; absent means the default 32.
        outChannels = c.contains(.outChannels) ? try c.decodeIfPresent(Int.self, forKey: .outChannels) : d.outChannels
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        attentionHeadDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) ?? d.attentionHeadDim
        numLayers = try c.decodeIfPresent(Int.self, forKey: .numLayers) ?? d.numLayers
        numCrossAttentionHeads = c.contains(.numCrossAttentionHeads)
            ? try c.decodeIfPresent(Int.self, forKey: .numCrossAttentionHeads) : d.numCrossAttentionHeads
        crossAttentionHeadDim = c.contains(.crossAttentionHeadDim)
            ? try c.decodeIfPresent(Int.self, forKey: .crossAttentionHeadDim) : d.crossAttentionHeadDim
        crossAttentionDim = c.contains(.crossAttentionDim)
            ? try c.decodeIfPresent(Int.self, forKey: .crossAttentionDim) : d.crossAttentionDim
        captionChannels = try c.decodeIfPresent(Int.self, forKey: .captionChannels) ?? d.captionChannels
        mlpRatio = try c.decodeIfPresent(Double.self, forKey: .mlpRatio) ?? d.mlpRatio
        dropout = try c.decodeIfPresent(Double.self, forKey: .dropout) ?? d.dropout
        attentionBias = try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? d.attentionBias
        sampleSize = try c.decodeIfPresent(Int.self, forKey: .sampleSize) ?? d.sampleSize
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        normElementwiseAffine = try c.decodeIfPresent(Bool.self, forKey: .normElementwiseAffine) ?? d.normElementwiseAffine
        normEps = try c.decodeIfPresent(Double.self, forKey: .normEps) ?? d.normEps
        interpolationScale = try c.decodeIfPresent(Double.self, forKey: .interpolationScale)
        guidanceEmbeds = try c.decodeIfPresent(Bool.self, forKey: .guidanceEmbeds) ?? d.guidanceEmbeds
        guidanceEmbedsScale = try c.decodeIfPresent(Double.self, forKey: .guidanceEmbedsScale) ?? d.guidanceEmbedsScale
        qkNorm = try c.decodeIfPresent(String.self, forKey: .qkNorm)
        timestepScale = try c.decodeIfPresent(Double.self, forKey: .timestepScale) ?? d.timestepScale
    }

    /// Decodes and validates `config.json` (extra keys such as "_class_name" are ignored).
    public static func load(path: String) throws -> SanaTransformerConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.badInput("\(path): cannot read the transformer config")
        }
        let config: SanaTransformerConfig
        do {
            config = try JSONDecoder().decode(SanaTransformerConfig.self, from: data)
        } catch {
            throw ModelError.unsupportedConfig(component: component, reason: "\(path): \(error)")
        }
        try config.validate()
        return config
    }

    static let component = "SanaTransformer2DModel"

    // MARK: derived sizes

    /// Model width C = heads · head_dim.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    public var resolvedOutChannels: Int { outChannels ?? inChannels }
    public var crossHeads: Int { numCrossAttentionHeads ?? 0 }
    public var crossHeadDim: Int { crossAttentionHeadDim ?? 0 }
    /// GLUMBConv hidden width, int(mlp_ratio · C) as the reference rounds it.
    public var feedForwardHidden: Int { Int(mlpRatio * Double(innerDim)) }
    public var usesQKNorm: Bool { qkNorm != nil }
    public var usesPositionEmbedding: Bool { interpolationScale != nil }

    /// Throws `ModelError.unsupportedConfig` naming the first value this runtime (or the reference) cannot run.
    public func validate() throws {
        func fail(_ reason: String) -> ModelError { .unsupportedConfig(component: Self.component, reason: reason) }
        let positive: [(String, Int)] = [
            ("in_channels", inChannels), ("num_attention_heads", numAttentionHeads),
            ("attention_head_dim", attentionHeadDim), ("num_layers", numLayers), ("caption_channels", captionChannels),
            ("sample_size", sampleSize), ("patch_size", patchSize),
        ]
        for (name, v) in positive where v <= 0 { throw fail("\(name) = \(v) must be positive") }
        if let o = outChannels, o <= 0 { throw fail("out_channels = \(o) must be positive") }
        // The reference builds a block without cross-attention when these are null, then fails in forward.
        guard crossHeads > 0 else { throw fail("num_cross_attention_heads must be a positive integer") }
        guard crossHeadDim > 0 else { throw fail("cross_attention_head_dim must be a positive integer") }
        // The caption projection outputs inner_dim, which the cross-attention's to_k/to_v consume.
        guard crossAttentionDim == innerDim else {
            throw fail("cross_attention_dim \(crossAttentionDim.map(String.init) ?? "null") must equal num_attention_heads · attention_head_dim = \(innerDim)")
        }
        guard mlpRatio > 0, feedForwardHidden > 0 else { throw fail("mlp_ratio = \(mlpRatio) must be positive") }
        guard normEps > 0 else { throw fail("norm_eps = \(normEps) must be positive") }
        if let q = qkNorm, q != "rms_norm_across_heads" {
            throw fail("qk_norm \"\(q)\" (supported: null, \"rms_norm_across_heads\")")
        }
        if let s = interpolationScale {
            guard s > 0 else { throw fail("interpolation_scale = \(s) must be positive") }
            // get_2d_sincos_pos_embed splits C in two halves, each a sin/cos pair.
            guard innerDim % 4 == 0 else { throw fail("the sin-cos position embedding needs inner_dim divisible by 4, got \(innerDim)") }
        }
    }
}
