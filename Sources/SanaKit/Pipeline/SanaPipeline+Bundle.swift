// The pipeline wired to a bundle (docs/FORMAT.md): configs from the header, the tokenizer from its files, and one loader
// per network that reads that network's component when its stage starts. Nothing but the header is read here; the
// memory plan (MemoryPlan+Bundle.swift) is computed from the header's tensor table.
import CSanaKernels
import Foundation
import SanaFormat

extension SanaPipeline {
    /// Opens the bundle at `bundlePath` (the header only: weights are read stage by stage while generating).
    /// - memoryBudget: bytes of resident memory the process may use; every request is checked against it before any
    ///   work, and prefetch depth and decoder tiling are planned from it. nil: no bound (prefetch on; the decoder
    ///   tiles only beyond 1 GiB of activations).
    /// - threads: worker threads for the kernels and OpenBLAS (process-wide); nil leaves them at all cores.
    public init(bundlePath: String, memoryBudget: Int? = nil, threads: Int? = nil, dumpDirectory: String? = nil) throws {
        if let threads {
            guard threads >= 1 else { throw GenerationError.invalidRequest("threads must be at least 1, got \(threads)") }
            sana_set_threads(Int32(threads))
            OpenBLAS.setThreads(threads)
        }
        let bundle = try SanaBundle(path: bundlePath)
        let models = try BundleModels(bundle: bundle, memoryBudget: memoryBudget)
        self.init(config: models.pipelineConfig, components: models.components, dumpDirectory: dumpDirectory)
        if memoryBudget != nil { memoryPlanner = models.plan }
    }
}

/// The three networks' configs and loaders for one bundle.
struct BundleModels {
    let bundle: SanaBundle
    let gemma: Gemma2Config
    let transformer: SanaTransformerConfig
    let vae: AutoencoderDCConfig
    let plan: BundleMemoryPlan

    /// `baseline` overrides the measured resident memory the plan starts from (tests).
    init(bundle: SanaBundle, memoryBudget: Int?, baseline: Int? = nil) throws {
        self.bundle = bundle
        func decode<T: Decodable>(_ type: T.Type, _ component: String) throws -> T {
            do { return try JSONDecoder().decode(type, from: bundle.config(component)) } catch let e as BundleError {
                throw e
            } catch {
                throw GenerationError.badModelConfig("\(bundle.path): \(component) config: \(error)")
            }
        }
        gemma = try decode(Gemma2Config.self, "text_encoder")
        transformer = try decode(SanaTransformerConfig.self, "transformer")
        vae = try decode(AutoencoderDCConfig.self, "vae")
        try gemma.validate()
        try transformer.validate()
        try vae.validate()
        guard !transformer.guidanceEmbeds else {
            throw GenerationError.badModelConfig("the transformer has guidance_embeds (Sana Sprint), which SanaPipeline does not run")
        }
        guard transformer.captionChannels == gemma.hiddenSize else {
            throw GenerationError.badModelConfig("transformer caption_channels \(transformer.captionChannels) ≠ text encoder hidden_size \(gemma.hiddenSize)")
        }
        guard vae.latentChannels == transformer.inChannels else {
            throw GenerationError.badModelConfig("vae latent_channels \(vae.latentChannels) ≠ transformer in_channels \(transformer.inChannels)")
        }
        plan = try BundleMemoryPlan(bundle: bundle, gemma: gemma, transformer: transformer, vae: vae, budget: memoryBudget, baseline: baseline)
    }

    var pipelineConfig: PipelineConfig {
        PipelineConfig(latentChannels: transformer.inChannels, transformerOutChannels: transformer.resolvedOutChannels,
                       timestepScale: transformer.timestepScale, vaeScaleFactor: vae.spatialCompressionRatio,
                       scalingFactor: vae.scalingFactor, schedulerConfigJSON: bundle.schedulerConfig,
                       transformerLayers: transformer.numLayers)
    }

    var components: PipelineComponents {
        let bundle = self.bundle, gemma = self.gemma, transformer = self.transformer, vae = self.vae, plan = self.plan
        return PipelineComponents(
            textEncoder: { try BundleTextEncoder(bundle: bundle, config: gemma) },
            transformer: { try BundleDenoiser(component: bundle.component("transformer"), config: transformer, plan: plan) },
            decoder: { try BundleDecoder(component: bundle.component("vae"), config: vae, plan: plan) })
    }
}

// MARK: - Conformances

extension BundleComponent: TensorShapeLookup {
    public func shape(of name: String) -> [Int]? { try? info(name).shape }
}

/// Rows of embed_tokens.weight read from the bundle's row chunks: each chunk holding requested ids is decompressed
/// once, so the 256k-row table is never resident.
struct BundleEmbeddingReader: EmbeddingRowReader {
    let component: BundleComponent
    let record: TensorRecord

    init(component: BundleComponent, name: String, shape: [Int]) throws {
        record = try component.info(name)
        guard record.shape == shape else { throw ModelError.shapeMismatch(tensor: name, expected: shape, actual: record.shape) }
        self.component = component
    }

    func rows(_ indices: [Int]) throws -> (values: [Float], storage: StorageType) {
        let cols = record.cols
        var out = [Float](repeating: 0, count: indices.count * cols)
        // Positions of the requested ids, grouped by the row chunk (frame) that holds them.
        let byChunk = Dictionary(grouping: indices.indices) { indices[$0] / record.chunkRows }
        for (_, positions) in byChunk {
            let ids = positions.map { indices[$0] }
            guard let lo = ids.min(), let hi = ids.max() else { continue }
            let block = try component.rows(of: record.name, lo ..< hi + 1)  // [hi + 1 − lo, cols]
            for p in positions {
                let r = indices[p] - lo
                out.replaceSubrange(p * cols ..< (p + 1) * cols, with: block[r * cols ..< (r + 1) * cols])
            }
        }
        return (out, record.storageType ?? .f32)
    }
}

/// Tokenizer + Gemma-2 + SanaPipeline's prompt path. One prompt encoder (and instruction prefix cache) per
/// (max sequence length, instruction) setting, kept for this stage.
final class BundleTextEncoder: TextEncoding {
    let tokenizer: GemmaTokenizer
    let model: Gemma2Model
    /// The instruction's prefix cache stored at conversion, if the bundle has one (header checked, not yet read).
    let storedPrefixCache: StoredPrefixCache?
    private(set) var encoders: [String: SanaPromptEncoder] = [:]

    init(bundle: SanaBundle, config: Gemma2Config) throws {
        let tokenizerConfig = bundle.header.tokenizer["tokenizer_config.json"] != nil
            ? try bundle.tokenizerFile("tokenizer_config.json") : nil
        tokenizer = try GemmaTokenizer(tokenizerJSON: bundle.tokenizerFile("tokenizer.json"), configJSON: tokenizerConfig)
        let source = try bundle.component("text_encoder")
        let embedding = try BundleEmbeddingReader(component: source, name: "embed_tokens.weight",
                                                  shape: [config.vocabSize, config.hiddenSize])
        model = try Gemma2Model(config: config, source: source, embedding: embedding)
        storedPrefixCache = try Gemma2PrefixCache.stored(in: bundle, config: config)
    }

    func encode(prompts: [String], negativePrompts: [String]?, maxSequenceLength: Int, complexHumanInstruction: Bool)
        throws -> (positive: PromptEmbeddings, negative: PromptEmbeddings?) {
        let key = "\(maxSequenceLength) \(complexHumanInstruction)"
        let encoder = try encoders[key] ?? SanaPromptEncoder(
            tokenizer: tokenizer, encoder: model, maxSequenceLength: maxSequenceLength,
            instruction: complexHumanInstruction ? SanaPromptEncoder.defaultComplexHumanInstruction : nil,
            storedPrefixCache: storedPrefixCache)
        encoders[key] = encoder
        let (pos, neg) = try encoder.encode(prompts: prompts, negativePrompts: negativePrompts ?? [])
        func embeddings(_ o: SanaPromptEncoder.Output) -> PromptEmbeddings {
            PromptEmbeddings(embeds: o.embeds, mask: Tensor(shape: [o.mask.count, o.mask.first?.count ?? 0],
                                                            data: o.mask.flatMap { $0.map(Float.init) }))
        }
        return (embeddings(pos), negativePrompts == nil ? nil : embeddings(neg))
    }
}

extension SanaPromptEncoder {
    /// The prompt encoder of a bundle as `sana generate` builds it: the bundle's tokenizer, Gemma-2 streamed from the
    /// bundle, and the instruction's prefix cache stored at conversion (unless `storedPrefixCache` is false).
    public convenience init(bundle: SanaBundle, maxSequenceLength: Int = 300,
                            instruction: [String]? = SanaPromptEncoder.defaultComplexHumanInstruction,
                            storedPrefixCache: Bool = true) throws {
        let config = try Gemma2Config.decode(bundle.config("text_encoder"), origin: "\(bundle.path): text_encoder")
        try config.validate()
        let text = try BundleTextEncoder(bundle: bundle, config: config)
        try self.init(tokenizer: text.tokenizer, encoder: text.model, maxSequenceLength: maxSequenceLength,
                      instruction: instruction, storedPrefixCache: storedPrefixCache ? text.storedPrefixCache : nil)
    }
}

/// Streams the DiT's blocks from the bundle, each block's tensors in one read of the file (`group(prefix:)`);
/// with `prefetch`, block i+1 is read on a background thread while block i runs. The loader's `load` argument (a
/// tensor-by-tensor read) is not used.
final class BundleBlockLoader: SanaTransformerBlockLoader, @unchecked Sendable {
    let component: BundleComponent
    let config: SanaTransformerConfig
    private let lock = NSLock()
    private var prefetchEnabled = true  // guarded by `lock`; set by BundleDenoiser between forward passes

    init(component: BundleComponent, config: SanaTransformerConfig) {
        self.component = component
        self.config = config
    }

    var prefetch: Bool {
        get { lock.withLock { prefetchEnabled } }
        set { lock.withLock { prefetchEnabled = newValue } }
    }

    func forEachBlock(_ count: Int, _ load: @escaping @Sendable (Int) throws -> SanaTransformerBlock,
                      _ body: (SanaTransformerBlock) throws -> Void) throws {
        let component = self.component, config = self.config
        let read: @Sendable (Int) throws -> SanaTransformerBlock = { i in
            try SanaTransformerBlock(component.group(prefix: SanaTransformerBlock.prefix(i) + "."), index: i, config: config)
        }
        let loader: any SanaTransformerBlockLoader = prefetch ? PrefetchingBlockLoader() : SequentialBlockLoader()
        try loader.forEachBlock(count, read, body)
    }
}

/// SanaTransformer2DModel on a bundle component; prefetch is planned per forward from the latent size.
struct BundleDenoiser: DenoisingModel {
    let model: SanaTransformer2DModel
    let loader: BundleBlockLoader
    let plan: BundleMemoryPlan

    init(component: BundleComponent, config: SanaTransformerConfig, plan: BundleMemoryPlan) throws {
        loader = BundleBlockLoader(component: component, config: config)
        model = try SanaTransformer2DModel(source: component, config: config, blockLoader: loader)
        self.plan = plan
    }

    func forward(latents: Tensor, timestep: [Float], encoderHiddenStates: Tensor, encoderMask: Tensor) throws -> Tensor {
        try forward(latents: latents, timestep: timestep, encoderHiddenStates: encoderHiddenStates, encoderMask: encoderMask,
                    perturbed: nil)
    }

    func forward(latents: Tensor, timestep: [Float], encoderHiddenStates: Tensor, encoderMask: Tensor,
                 perturbed: PerturbedAttention?) throws -> Tensor {
        if latents.rank == 4, encoderHiddenStates.rank == 3 {
            loader.prefetch = plan.prefetch(batch: latents.shape[0], latentHeight: latents.shape[2],
                                            latentWidth: latents.shape[3], tokens: encoderHiddenStates.shape[1])
        }
        return try model(hiddenStates: latents, timestep: timestep, encoderHiddenStates: encoderHiddenStates,
                         encoderAttentionMask: encoderMask, perturbed: perturbed)
    }
}

/// The DC-AE decoder (the encoder half is not loaded), tiled as the memory plan says.
struct BundleDecoder: LatentDecoding {
    let vae: AutoencoderDC
    let plan: BundleMemoryPlan

    init(component: BundleComponent, config: AutoencoderDCConfig, plan: BundleMemoryPlan) throws {
        vae = try AutoencoderDC(config: config, source: component, parts: .decoder)
        self.plan = plan
    }

    func decode(latents: Tensor) throws -> Tensor {
        guard latents.rank == 4 else { return try vae.decode(latents) }  // its own error names the shape
        return try vae.decode(latents, tiling: plan.decoderTiling(latentHeight: latents.shape[2], latentWidth: latents.shape[3]))
    }
}
