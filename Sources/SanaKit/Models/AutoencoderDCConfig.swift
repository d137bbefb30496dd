import Foundation

// Follows diffusers/models/autoencoders/autoencoder_dc.py `AutoencoderDC.__init__` (the vae's config.json).
// Defaults are diffusers' defaults; a released config.json usually sets most of them.

/// One value or one per stage: diffusers accepts `"rms_norm"` as well as `["batch_norm", …, "rms_norm"]`.
public enum OneOrPerStage<T: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    case one(T)
    case perStage([T])

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(T.self) { self = .one(v) } else { self = .perStage(try c.decode([T].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case let .one(v): try c.encode(v)
        case let .perStage(v): try c.encode(v)
        }
    }

    /// The per-stage list for `stages` stages (nil when a list has the wrong length).
    func expanded(_ stages: Int) -> [T]? {
        switch self {
        case let .one(v): return Array(repeating: v, count: stages)
        case let .perStage(v): return v.count == stages ? v : nil
        }
    }
}

public struct AutoencoderDCConfig: Codable, Sendable, Equatable {
    public var inChannels = 3
    public var latentChannels = 32
    public var attentionHeadDim = 32
    public var encoderBlockTypes: OneOrPerStage<String> = .one("ResBlock")
    public var decoderBlockTypes: OneOrPerStage<String> = .one("ResBlock")
    public var encoderBlockOutChannels = [128, 256, 512, 512, 1024, 1024]
    public var decoderBlockOutChannels = [128, 256, 512, 512, 1024, 1024]
    public var encoderLayersPerBlock = [2, 2, 2, 3, 3, 3]
    public var decoderLayersPerBlock = [3, 3, 3, 3, 3, 3]
    public var encoderQkvMultiscales: [[Int]] = [[], [], [], [5], [5], [5]]
    public var decoderQkvMultiscales: [[Int]] = [[], [], [], [5], [5], [5]]
    /// "pixel_shuffle" or "interpolate" (nearest ×2 then conv).
    public var upsampleBlockType = "pixel_shuffle"
    /// "pixel_unshuffle", or anything else (released configs say "Conv"): a stride-2 conv.
    public var downsampleBlockType = "pixel_unshuffle"
    public var decoderNormTypes: OneOrPerStage<String> = .one("rms_norm")
    public var decoderActFns: OneOrPerStage<String> = .one("silu")
    public var encoderOutShortcut = true
    public var decoderInShortcut = true
    public var decoderConvActFn = "relu"
    /// Latents are multiplied by this for the DiT; `decode` expects latents already divided by it (SanaPipeline).
    public var scalingFactor: Double = 1.0

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels"
        case latentChannels = "latent_channels"
        case attentionHeadDim = "attention_head_dim"
        case encoderBlockTypes = "encoder_block_types"
        case decoderBlockTypes = "decoder_block_types"
        case encoderBlockOutChannels = "encoder_block_out_channels"
        case decoderBlockOutChannels = "decoder_block_out_channels"
        case encoderLayersPerBlock = "encoder_layers_per_block"
        case decoderLayersPerBlock = "decoder_layers_per_block"
        case encoderQkvMultiscales = "encoder_qkv_multiscales"
        case decoderQkvMultiscales = "decoder_qkv_multiscales"
        case upsampleBlockType = "upsample_block_type"
        case downsampleBlockType = "downsample_block_type"
        case decoderNormTypes = "decoder_norm_types"
        case decoderActFns = "decoder_act_fns"
        case encoderOutShortcut = "encoder_out_shortcut"
        case decoderInShortcut = "decoder_in_shortcut"
        case decoderConvActFn = "decoder_conv_act_fn"
        case scalingFactor = "scaling_factor"
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AutoencoderDCConfig()
        func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        inChannels = try get(.inChannels, d.inChannels)
        latentChannels = try get(.latentChannels, d.latentChannels)
        attentionHeadDim = try get(.attentionHeadDim, d.attentionHeadDim)
        encoderBlockTypes = try get(.encoderBlockTypes, d.encoderBlockTypes)
        decoderBlockTypes = try get(.decoderBlockTypes, d.decoderBlockTypes)
        encoderBlockOutChannels = try get(.encoderBlockOutChannels, d.encoderBlockOutChannels)
        decoderBlockOutChannels = try get(.decoderBlockOutChannels, d.decoderBlockOutChannels)
        encoderLayersPerBlock = try get(.encoderLayersPerBlock, d.encoderLayersPerBlock)
        decoderLayersPerBlock = try get(.decoderLayersPerBlock, d.decoderLayersPerBlock)
        encoderQkvMultiscales = try get(.encoderQkvMultiscales, d.encoderQkvMultiscales)
        decoderQkvMultiscales = try get(.decoderQkvMultiscales, d.decoderQkvMultiscales)
        upsampleBlockType = try get(.upsampleBlockType, d.upsampleBlockType)
        downsampleBlockType = try get(.downsampleBlockType, d.downsampleBlockType)
        decoderNormTypes = try get(.decoderNormTypes, d.decoderNormTypes)
        decoderActFns = try get(.decoderActFns, d.decoderActFns)
        encoderOutShortcut = try get(.encoderOutShortcut, d.encoderOutShortcut)
        decoderInShortcut = try get(.decoderInShortcut, d.decoderInShortcut)
        decoderConvActFn = try get(.decoderConvActFn, d.decoderConvActFn)
        scalingFactor = try get(.scalingFactor, d.scalingFactor)
    }

    /// Decodes a vae config.json (unknown keys such as "_class_name" are ignored) and validates it.
    public static func load(json: Data) throws -> AutoencoderDCConfig {
        let config: AutoencoderDCConfig
        do {
            config = try JSONDecoder().decode(AutoencoderDCConfig.self, from: json)
        } catch {
            throw ModelError.unsupportedConfig(component: "vae", reason: "config.json does not decode: \(error)")
        }
        try config.validate()
        return config
    }

    public static func load(path: String) throws -> AutoencoderDCConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.badInput("vae config: cannot read \(path)")
        }
        return try load(json: data)
    }

    /// Spatial factor between image and latent: 2^(stages − 1) (diffusers takes it from the encoder's channel list).
    public var spatialCompressionRatio: Int { 1 << max(encoderBlockOutChannels.count - 1, 0) }

    // MARK: resolved, validated per-stage settings

    public enum BlockType: String, Sendable { case resBlock = "ResBlock", efficientViT = "EfficientViTBlock" }
    public enum NormType: String, Sendable { case rmsNorm = "rms_norm", batchNorm = "batch_norm" }

    /// One stage of the encoder or decoder after defaults and validation.
    public struct Stage: Sendable, Equatable {
        public let channels: Int
        public let layers: Int
        public let blockType: BlockType
        public let qkvMultiscales: [Int]
        public let normType: NormType
        public let activation: Activation
    }

    public var upsampleInterpolate: Bool { upsampleBlockType == "interpolate" }
    public var downsamplePixelUnshuffle: Bool { downsampleBlockType == "pixel_unshuffle" }

    func fail(_ reason: String) -> ModelError { .unsupportedConfig(component: "vae", reason: reason) }

    public func decoderStages() throws -> [Stage] {
        let n = decoderBlockOutChannels.count
        guard let types = decoderBlockTypes.expanded(n) else { throw fail("decoder_block_types: \(n) stages expected") }
        guard let norms = decoderNormTypes.expanded(n) else { throw fail("decoder_norm_types: \(n) stages expected") }
        guard let acts = decoderActFns.expanded(n) else { throw fail("decoder_act_fns: \(n) stages expected") }
        return try stages("decoder", decoderBlockOutChannels, decoderLayersPerBlock, types, decoderQkvMultiscales,
                          norms, acts)
    }

    /// The encoder always uses RMSNorm and SiLU in its blocks (Encoder.__init__ hard-codes them).
    public func encoderStages() throws -> [Stage] {
        let n = encoderBlockOutChannels.count
        guard let types = encoderBlockTypes.expanded(n) else { throw fail("encoder_block_types: \(n) stages expected") }
        return try stages("encoder", encoderBlockOutChannels, encoderLayersPerBlock, types, encoderQkvMultiscales,
                          Array(repeating: "rms_norm", count: n), Array(repeating: "silu", count: n))
    }

    private func stages(_ side: String, _ channels: [Int], _ layers: [Int], _ types: [String], _ scales: [[Int]],
                        _ norms: [String], _ acts: [String]) throws -> [Stage] {
        let n = channels.count
        guard n >= 2 else { throw fail("\(side)_block_out_channels: at least 2 stages needed, got \(n)") }
        guard layers.count == n else { throw fail("\(side)_layers_per_block has \(layers.count) entries for \(n) stages") }
        guard scales.count == n else { throw fail("\(side)_qkv_multiscales has \(scales.count) entries for \(n) stages") }
        guard channels.allSatisfy({ $0 > 0 }) else { throw fail("\(side)_block_out_channels must be positive: \(channels)") }
        guard layers.allSatisfy({ $0 >= 0 }) else { throw fail("\(side)_layers_per_block must be ≥ 0: \(layers)") }
        guard layers[0] > 0 || layers[1] > 0 else { throw fail("\(side)_layers_per_block: stages 0 and 1 are both empty") }
        return try (0 ..< n).map { i in
            guard let t = BlockType(rawValue: types[i]) else { throw fail("\(side) block type '\(types[i])'") }
            guard let norm = NormType(rawValue: norms[i]) else { throw fail("\(side) norm type '\(norms[i])'") }
            guard let act = Activation(referenceName: acts[i]) else { throw fail("\(side) activation '\(acts[i])'") }
            if t == .efficientViT {
                guard attentionHeadDim > 0, channels[i] % attentionHeadDim == 0 else {
                    throw fail("\(side) stage \(i): \(channels[i]) channels not divisible by attention_head_dim \(attentionHeadDim)")
                }
                guard scales[i].allSatisfy({ $0 > 0 && $0 % 2 == 1 }) else {
                    throw fail("\(side) stage \(i): qkv_multiscales kernel sizes must be odd and positive: \(scales[i])")
                }
            }
            return Stage(channels: channels[i], layers: layers[i], blockType: t, qkvMultiscales: scales[i],
                         normType: norm, activation: act)
        }
    }

    /// Checks every setting once; the model builders rely on it.
    public func validate() throws {
        guard inChannels > 0, latentChannels > 0 else { throw fail("in_channels and latent_channels must be positive") }
        guard ["pixel_shuffle", "interpolate"].contains(upsampleBlockType) else {
            throw fail("upsample_block_type '\(upsampleBlockType)' (pixel_shuffle or interpolate)")
        }
        guard Activation(referenceName: decoderConvActFn) != nil else { throw fail("decoder_conv_act_fn '\(decoderConvActFn)'") }
        guard scalingFactor.isFinite, scalingFactor > 0 else { throw fail("scaling_factor \(scalingFactor)") }
        let dec = try decoderStages(), enc = try encoderStages()
        guard dec.count == enc.count else {
            throw fail("encoder has \(enc.count) stages, decoder \(dec.count): the spatial compression must agree")
        }
        // Channel-duplicating shortcuts need whole repeat counts and whole group sizes.
        for i in 0 ..< dec.count - 1 where dec[i].layers > 0 {
            let (cin, cout) = (dec[i + 1].channels, dec[i].channels)
            guard (cout * 4) % cin == 0 else { throw fail("decoder stage \(i): up block \(cin) → \(cout) channels has no whole repeat count") }
        }
        for i in 0 ..< enc.count - 1 where enc[i].layers > 0 {
            let (cin, cout) = (enc[i].channels, enc[i + 1].channels)
            guard (cin * 4) % cout == 0 else { throw fail("encoder stage \(i): down block \(cin) → \(cout) channels has no whole group size") }
            if downsamplePixelUnshuffle {
                guard cout % 4 == 0 else { throw fail("encoder stage \(i): \(cout) channels not divisible by 4 for pixel_unshuffle") }
            }
        }
        let encFirst = enc[0].layers > 0 ? enc[0].channels : enc[1].channels
        if enc[0].layers == 0 && downsamplePixelUnshuffle && encFirst % 4 != 0 {
            throw fail("encoder conv_in: \(encFirst) channels not divisible by 4 for pixel_unshuffle")
        }
        if decoderInShortcut {
            guard dec[dec.count - 1].channels % latentChannels == 0 else {
                throw fail("decoder_in_shortcut: \(dec[dec.count - 1].channels) channels not a multiple of latent_channels \(latentChannels)")
            }
        }
        if encoderOutShortcut {
            guard enc[enc.count - 1].channels % latentChannels == 0 else {
                throw fail("encoder_out_shortcut: \(enc[enc.count - 1].channels) channels not a multiple of latent_channels \(latentChannels)")
            }
        }
    }
}
