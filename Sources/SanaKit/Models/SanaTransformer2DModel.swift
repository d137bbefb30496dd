import Foundation
import SanaFormat

// Follows diffusers/models/transformers/sana_transformer.py `SanaTransformer2DModel.forward` (inference path: no
// self-attention mask, no ControlNet residuals, no LoRA). Released configurations: Sana 1.0 (600M / 1600M at
// 512–4K), Sana 1.5 (qk_norm "rms_norm_across_heads"), Sana Sprint (guidance_embeds). timestep_scale and
// guidance_embeds_scale are applied by the pipeline before the forward, exactly as in the reference.
//
// Layout: the public forward takes and returns the reference NCHW latent [B, C, H, W]; inside, tokens are
// channels-last [B, H'·W', C] (H' = H/p, W' = W/p), feature maps [B, H', W', C].

/// A (state-dict key, reference shape) pair.
typealias TensorShape = (name: String, shape: [Int])

/// "<prefix>.weight" with `shape` (and "<prefix>.bias" [shape[0]]): one Linear / conv / affine norm.
func linearShapes(_ prefix: String, _ shape: [Int], bias: Bool = true) -> [TensorShape] {
    bias ? [(prefix + ".weight", shape), (prefix + ".bias", [shape[0]])] : [(prefix + ".weight", shape)]
}

/// A weight source that can tell a tensor's shape without reading its data (safetensors headers, bundle tables),
/// so a model checks every shape when it is built rather than when a streamed layer is first read.
public protocol TensorShapeLookup {
    func shape(of name: String) -> [Int]?
}

extension SafetensorsFile: TensorShapeLookup {
    public func shape(of name: String) -> [Int]? { entries[name]?.shape }
}

extension SafetensorsDirectory: TensorShapeLookup {
    public func shape(of name: String) -> [Int]? { files.lazy.compactMap { $0.entries[name]?.shape }.first }
}

/// The Sana Linear DiT. Holds the small tensors (embeddings, output head) and streams the blocks from `source`.
public final class SanaTransformer2DModel: Sendable {
    /// The timestep embedding: adaLN-single, or Sprint's timestep + guidance embedding.
    public enum TimeEmbedding: Sendable {
        case single(AdaLayerNormSingle)                            // time_embed.emb.*, time_embed.linear
        case guided(SanaCombinedTimestepGuidanceEmbeddings)        // time_embed.{timestep,guidance}_embedder, .linear
    }

    public let config: SanaTransformerConfig
    public let source: WeightSource
    public let blockLoader: SanaTransformerBlockLoader
    public let patchEmbed: PatchEmbed                              // patch_embed.proj
    public let timeEmbed: TimeEmbedding                            // time_embed.*
    public let captionProjection: PixArtAlphaTextProjection        // caption_projection.linear_{1,2}
    public let captionNormWeight: [Float]                          // caption_norm.weight [C] (RMSNorm eps 1e-5)
    public let normOut: SanaModulatedNorm                          // scale_shift_table [2, C]
    public let projOut: Linear                                     // proj_out: [p·p·out, C] + bias

    static let component = SanaTransformerConfig.component

    /// Every state-dict key of the model under `config`, with its reference shape, in a stable order.
    public static func expectedTensors(_ config: SanaTransformerConfig) -> [(name: String, shape: [Int])] {
        let c = config.innerDim, p = config.patchSize
        var t = PatchEmbed.tensorShapes("patch_embed", config: config)
        t += config.guidanceEmbeds ? SanaCombinedTimestepGuidanceEmbeddings.tensorShapes("time_embed", dim: c)
            : AdaLayerNormSingle.tensorShapes("time_embed", dim: c)
        t += PixArtAlphaTextProjection.tensorShapes("caption_projection", inFeatures: config.captionChannels, hiddenSize: c)
        t.append(("caption_norm.weight", [c]))
        for i in 0 ..< config.numLayers { t += SanaTransformerBlock.tensorShapes(i, config) }
        t.append(("scale_shift_table", [2, c]))
        t += linearShapes("proj_out", [p * p * config.resolvedOutChannels, c])
        return t
    }

    /// Validates the config, checks that `source` holds exactly the expected tensors (and, when it can tell shapes
    /// cheaply, that each has its expected shape), then loads everything except the blocks.
    public init(source: WeightSource, config: SanaTransformerConfig,
                blockLoader: SanaTransformerBlockLoader = SequentialBlockLoader()) throws {
        try config.validate()
        let expected = Self.expectedTensors(config)
        try ModelError.checkExactTensorNames(expected: Set(expected.map(\.name)), present: source.tensorNames,
                                             component: Self.component)
        if let lookup = source as? TensorShapeLookup {
            for (name, shape) in expected {
                if let actual = lookup.shape(of: name), actual != shape {
                    throw ModelError.shapeMismatch(tensor: name, expected: shape, actual: actual)
                }
            }
        }

        let c = config.innerDim
        self.config = config
        self.source = source
        self.blockLoader = blockLoader
        patchEmbed = try PatchEmbed(source, "patch_embed", config: config)
        timeEmbed = config.guidanceEmbeds ? .guided(try SanaCombinedTimestepGuidanceEmbeddings(source, "time_embed", dim: c))
            : .single(try AdaLayerNormSingle(source, "time_embed", dim: c))
        captionProjection = try PixArtAlphaTextProjection(source, "caption_projection", inFeatures: config.captionChannels,
                                                          hiddenSize: c)
        captionNormWeight = try source.floats("caption_norm.weight", shape: [c])
        normOut = SanaModulatedNorm(scaleShiftTable: try source.floats("scale_shift_table", shape: [2, c]))
        projOut = try Linear(source, "proj_out", shape: [config.patchSize * config.patchSize * config.resolvedOutChannels, c])
    }

    /// Loads a diffusers `transformer/` folder: config.json and its safetensors file(s).
    public convenience init(directory: String, blockLoader: SanaTransformerBlockLoader = SequentialBlockLoader()) throws {
        let config = try SanaTransformerConfig.load(path: (directory as NSString).appendingPathComponent("config.json"))
        try self.init(source: try SafetensorsDirectory(path: directory), config: config, blockLoader: blockLoader)
    }

    /// Block `index` read from the source (its tensors' shapes checked).
    public func loadBlock(_ index: Int) throws -> SanaTransformerBlock {
        try SanaTransformerBlock(source, index: index, config: config)
    }

    /// The forward pass.
    /// - hiddenStates: latent [B, in_channels, H, W] (reference NCHW), H and W multiples of patch_size.
    /// - timestep: [B] (already multiplied by timestep_scale, as the pipeline does).
    /// - encoderHiddenStates: caption embeddings [B, L, caption_channels].
    /// - encoderAttentionMask: [B, L], 1 keep / 0 masked (nil: attend to every token).
    /// - guidance: [B], required exactly when the config has guidance_embeds (already × guidance_embeds_scale).
    /// - perturbed: perturbed-attention guidance (PerturbedAttention.swift): these batch elements run identity
    ///   self-attention in these blocks.
    /// - Returns: [B, out_channels, H, W] (reference NCHW).
    public func callAsFunction(hiddenStates: Tensor, timestep: [Float], encoderHiddenStates: Tensor,
                               encoderAttentionMask: Tensor? = nil, guidance: [Float]? = nil,
                               perturbed: PerturbedAttention? = nil) throws -> Tensor {
        try checkInputs(hiddenStates, timestep, encoderHiddenStates, encoderAttentionMask, guidance)
        if let perturbed {
            let b = hiddenStates.shape[0]
            guard perturbed.batches.lowerBound >= 0, perturbed.batches.upperBound <= b,
                  perturbed.blocks.allSatisfy({ (0 ..< self.config.numLayers).contains($0) }) else {
                throw ModelError.badInput("\(Self.component): perturbed attention on batch elements \(perturbed.batches) of \(b), "
                    + "blocks \(perturbed.blocks.sorted()) of \(self.config.numLayers)")
            }
        }
        let b = hiddenStates.shape[0], p = config.patchSize
        let hp = hiddenStates.shape[2] / p, wp = hiddenStates.shape[3] / p
        let outC = config.resolvedOutChannels

        // The mask becomes an additive bias (1 − mask)·(−10000), as the reference converts a 2-D mask.
        let captionBias = encoderAttentionMask.map { m in
            Tensor(shape: m.shape, data: m.data.map { (1 - $0) * -10000 })
        }

        var x = patchEmbed(hiddenStates)  // [B, H'·W', C]
        let (modulation, embedded): (Tensor, Tensor)
        switch timeEmbed {
        case let .single(t): (modulation, embedded) = t(timestep: timestep)
        case let .guided(t): (modulation, embedded) = t(timestep: timestep, guidance: guidance ?? [])
        }
        let caption = captionProjection(encoderHiddenStates).rmsNorm(weight: captionNormWeight, eps: 1e-5)  // [B, L, C]

        let source = self.source, config = self.config
        // The blocks update x in place and share one set of working buffers (SanaTransformerBlock+Streamed.swift).
        let scratch = DiTBlockScratch()
        try blockLoader.forEachBlock(config.numLayers, { try SanaTransformerBlock(source, index: $0, config: config) }) { block in
            block.forward(&x, timestepModulation: modulation, caption: caption, captionBias: captionBias, height: hp,
                          width: wp, identityAttention: perturbed?.batches(inBlock: block.index) ?? 0 ..< 0, scratch: scratch)
        }

        x = projOut.apply(normOut(x, embeddedTimestep: embedded))  // [B, H'·W', p·p·out]
        // Unpatchify: [B, H', W', p, p, out] → permute (0, 5, 1, 3, 2, 4) → [B, out, H', p, W', p] = [B, out, H, W].
        return x.reshaped([b, hp, wp, p, p, outC]).permuted([0, 5, 1, 3, 2, 4]).reshaped([b, outC, hp * p, wp * p])
    }

    /// Bad input is a typed error naming the argument, never a crash.
    private func checkInputs(_ hidden: Tensor, _ timestep: [Float], _ text: Tensor, _ mask: Tensor?, _ guidance: [Float]?) throws {
        func bad(_ s: String) -> ModelError { .badInput("\(Self.component): \(s)") }
        let p = config.patchSize
        guard hidden.rank == 4, hidden.shape[0] > 0, hidden.shape[1] == config.inChannels else {
            throw bad("hidden_states must be [B, \(config.inChannels), H, W], got \(hidden.shape)")
        }
        let (b, h, w) = (hidden.shape[0], hidden.shape[2], hidden.shape[3])
        guard h > 0, w > 0, h % p == 0, w % p == 0 else {
            throw bad("latent size \(h)×\(w) must be positive multiples of patch_size \(p)")
        }
        guard timestep.count == b else { throw bad("timestep has \(timestep.count) values for batch \(b)") }
        guard text.rank == 3, text.shape[0] == b, text.shape[1] > 0, text.shape[2] == config.captionChannels else {
            throw bad("encoder_hidden_states must be [\(b), L ≥ 1, \(config.captionChannels)], got \(text.shape)")
        }
        if let mask, mask.shape != [b, text.shape[1]] {
            throw bad("encoder_attention_mask must be [\(b), \(text.shape[1])], got \(mask.shape)")
        }
        switch (config.guidanceEmbeds, guidance) {
        case (true, nil): throw bad("this model has guidance_embeds: guidance [B] is required")
        case (false, .some): throw bad("guidance given but the model has no guidance embedding")
        case let (true, .some(g)) where g.count != b: throw bad("guidance has \(g.count) values for batch \(b)")
        default: break
        }
    }
}
