// The text-to-image sampling loop of diffusers/pipelines/sana/pipeline_sana.py (SanaPipeline.__call__), written
// against three small protocols that the real components (Gemma-2 encoder, Linear DiT, DC-AE) conform to.
// Layout at these boundaries follows the reference: latents are NCHW [B, C, h, w], images [B, 3, H, W].
// Not reproduced: use_resolution_binning (we sample at the requested size, like use_resolution_binning=False),
// num_images_per_prompt > 1, custom timesteps/sigmas, PAG.
import Foundation
import SanaFormat

/// The prompt half of the pipeline: tokenizer + Gemma-2 + SanaPipeline's token selection.
public protocol TextEncoding {
    /// Encodes `prompts` like SanaPipeline.encode_prompt: with the complex human instruction prepended when
    /// `complexHumanInstruction` is on, then keeping token 0 and the last `maxSequenceLength − 1`. `negativePrompts`
    /// (if given, same count) are encoded in the same pass without the instruction, to `maxSequenceLength` tokens.
    /// Returns embeddings [B, L, C] and attention masks [B, L] (1 for real tokens, 0 for padding) with
    /// L = maxSequenceLength for both.
    func encode(prompts: [String], negativePrompts: [String]?, maxSequenceLength: Int, complexHumanInstruction: Bool)
        throws -> (positive: PromptEmbeddings, negative: PromptEmbeddings?)
}

/// Prompt embeddings [B, L, C] and their mask [B, L].
public struct PromptEmbeddings: Sendable {
    public var embeds: Tensor
    public var mask: Tensor
    public init(embeds: Tensor, mask: Tensor) {
        self.embeds = embeds
        self.mask = mask
    }
}

/// The denoiser (SanaTransformer2DModel.forward).
public protocol DenoisingModel {
    /// `latents` [B, inChannels, h, w]; `timestep` [B] already multiplied by the config's timestep_scale;
    /// `encoderHiddenStates` [B, L, C]; `encoderMask` [B, L]. Returns [B, outChannels, h, w].
    func forward(latents: Tensor, timestep: [Float], encoderHiddenStates: Tensor, encoderMask: Tensor) throws -> Tensor
}

/// The latent decoder (AutoencoderDC.decode).
public protocol LatentDecoding {
    /// `latents` [B, C, h, w], already divided by scaling_factor. Returns images [B, 3, h·f, w·f] in about −1…1.
    func decode(latents: Tensor) throws -> Tensor
}

/// What the pipeline needs to know about the bundle before loading any weights.
public struct PipelineConfig: Sendable {
    /// transformer config in_channels (latent channels).
    public var latentChannels: Int
    /// transformer config out_channels (= latentChannels, or twice that for learned sigma).
    public var transformerOutChannels: Int
    /// transformer config timestep_scale.
    public var timestepScale: Double
    /// 2^(len(vae encoder_block_out_channels) − 1): 32 for the f32c32 DC-AE.
    public var vaeScaleFactor: Int
    /// vae config scaling_factor.
    public var scalingFactor: Double
    /// scheduler/scheduler_config.json of the bundle.
    public var schedulerConfigJSON: Data

    public init(latentChannels: Int, transformerOutChannels: Int, timestepScale: Double = 1, vaeScaleFactor: Int,
                scalingFactor: Double, schedulerConfigJSON: Data) {
        self.latentChannels = latentChannels
        self.transformerOutChannels = transformerOutChannels
        self.timestepScale = timestepScale
        self.vaeScaleFactor = vaeScaleFactor
        self.scalingFactor = scalingFactor
        self.schedulerConfigJSON = schedulerConfigJSON
    }
}

/// Loaders for the three networks. Each is called when its stage starts and the component is released when the stage
/// ends, so only one network's weights are resident at a time.
public struct PipelineComponents {
    public var textEncoder: () throws -> any TextEncoding
    public var transformer: () throws -> any DenoisingModel
    public var decoder: () throws -> any LatentDecoding
    public init(textEncoder: @escaping () throws -> any TextEncoding, transformer: @escaping () throws -> any DenoisingModel,
                decoder: @escaping () throws -> any LatentDecoding) {
        self.textEncoder = textEncoder
        self.transformer = transformer
        self.decoder = decoder
    }
}

public enum PipelineStage: String, Sendable, CaseIterable {
    case encode = "encode prompt", denoise = "denoise", decode = "decode"
}

/// Progress report: `step` of `total` finished in `stage` (encode and decode report 0/1 then 1/1).
public struct PipelineProgress: Sendable {
    public var stage: PipelineStage
    public var step: Int
    public var total: Int
}

public struct GenerationResult: Sendable {
    public var image: RGB8Image
    /// [3, H, W] in [0, 1] before 8-bit rounding.
    public var unitImage: Tensor
    public var finalLatents: Tensor
    public var seed: UInt64
    public var scheduler: String
    /// Wall-clock seconds per stage.
    public var seconds: [PipelineStage: Double]
}

public struct SanaPipeline {
    public let config: PipelineConfig
    public let components: PipelineComponents
    /// `--dump DIR`: float32 .npy debug taps (see DESIGN.md); nil writes nothing.
    public var dumpDirectory: String?
    /// Which torch normal kernel to reproduce for the initial noise (torch's choice on this architecture).
    public var noiseKernel: TorchNormalKernel = .host

    public init(config: PipelineConfig, components: PipelineComponents, dumpDirectory: String? = nil) {
        self.config = config
        self.components = components
        self.dumpDirectory = dumpDirectory
    }

    /// The scheduler a request runs with: the bundle's, or the one it names.
    public func scheduler(for request: GenerationRequest) throws -> any Scheduler {
        try SchedulerFactory.make(configJSON: config.schedulerConfigJSON, override: request.scheduler)
    }

    /// Checks everything that can be checked without weights: the request, the configuration, the schedule.
    public func validate(_ request: GenerationRequest) throws {
        guard config.latentChannels >= 1, config.vaeScaleFactor >= 1,
              config.transformerOutChannels == config.latentChannels || config.transformerOutChannels == 2 * config.latentChannels
        else {
            throw GenerationError.badModelConfig("transformer in_channels \(config.latentChannels), out_channels "
                + "\(config.transformerOutChannels), vae scale factor \(config.vaeScaleFactor)")
        }
        guard config.scalingFactor.isFinite, config.scalingFactor != 0, config.timestepScale.isFinite else {
            throw GenerationError.badModelConfig("scaling_factor \(config.scalingFactor), timestep_scale \(config.timestepScale)")
        }
        try request.validate(vaeScaleFactor: config.vaeScaleFactor, latentChannels: config.latentChannels)
        var s = try scheduler(for: request)
        try s.setTimesteps(request.steps)
    }

    public func generate(_ request: GenerationRequest, progress: (PipelineProgress) -> Void = { _ in }) throws -> GenerationResult {
        try validate(request)
        let taps = DebugTaps(directory: dumpDirectory)
        try taps.prepare()
        var seconds: [PipelineStage: Double] = [:]
        func timed<T>(_ stage: PipelineStage, _ body: () throws -> T) rethrows -> T {
            let start = Date()
            defer { seconds[stage, default: 0] += Date().timeIntervalSince(start) }
            return try body()
        }
        // do_classifier_free_guidance = guidance_scale > 1; the batch is then [negative, positive].
        let cfg = request.guidanceScale > 1

        // 1. Prompt embeddings (the encoder is released at the end of the closure).
        progress(PipelineProgress(stage: .encode, step: 0, total: 1))
        let (embeds, mask) = try timed(.encode) { () throws -> (Tensor, Tensor) in
            let encoder = try components.textEncoder()
            let out = try encoder.encode(prompts: [request.prompt], negativePrompts: cfg ? [request.negativePrompt] : nil,
                                         maxSequenceLength: request.maxSequenceLength,
                                         complexHumanInstruction: request.complexHumanInstruction)
            guard cfg else { return (out.positive.embeds, out.positive.mask) }
            guard let negative = out.negative else { throw GenerationError.componentFailed("text encoder returned no negative embeddings") }
            return (try concatBatch(negative.embeds, out.positive.embeds), try concatBatch(negative.mask, out.positive.mask))
        }
        let batch = cfg ? 2 : 1
        guard embeds.rank == 3, embeds.shape[0] == batch, mask.shape == Array(embeds.shape.prefix(2)) else {
            throw GenerationError.componentFailed("text encoder returned embeddings \(embeds.shape) and mask \(mask.shape)")
        }
        try taps.write("prompt_embeds", embeds)
        try taps.write("prompt_attention_mask", mask)
        progress(PipelineProgress(stage: .encode, step: 1, total: 1))

        // 2. Timesteps and initial latents [1, C, H/f, W/f] (prepare_latents: randn, not scaled by init_noise_sigma).
        var scheduler = try scheduler(for: request)
        try scheduler.setTimesteps(request.steps)
        let latentShape = request.latentShape(vaeScaleFactor: config.vaeScaleFactor, latentChannels: config.latentChannels)
        var latents: Tensor
        if let given = request.latents {
            latents = given
        } else {
            var generator = TorchGenerator(seed: request.seed)
            latents = generator.randn(shape: latentShape, kernel: noiseKernel)
        }
        try taps.write("latents_initial", latents)

        // 3. Denoising loop (the transformer is released at the end of the closure).
        let guidance = Float(request.guidanceScale), timestepScale = Float(config.timestepScale)
        let learnedSigma = config.transformerOutChannels / 2 == config.latentChannels
        let total = scheduler.timesteps.count
        progress(PipelineProgress(stage: .denoise, step: 0, total: total))
        try timed(.denoise) {
            let transformer = try components.transformer()
            for (i, t) in scheduler.timesteps.enumerated() {
                // latent_model_input = cat([latents] * 2); timestep = t.expand(B) * timestep_scale (float32).
                let input = cfg ? try concatBatch(latents, latents) : latents
                let timestep = [Float](repeating: t * timestepScale, count: batch)
                var noise = try transformer.forward(latents: input, timestep: timestep, encoderHiddenStates: embeds,
                                                    encoderMask: mask)
                let expected = [batch, config.transformerOutChannels] + Array(latentShape.dropFirst(2))
                guard noise.shape == expected else {
                    throw GenerationError.componentFailed("transformer returned \(noise.shape), expected \(expected)")
                }
                if cfg {
                    // noise_pred_uncond + guidance_scale · (noise_pred_text − noise_pred_uncond), each op in float32.
                    let half = noise.count / 2
                    noise = Tensor(shape: [1] + Array(noise.shape.dropFirst()), data: (0 ..< half).map { k in
                        let u = noise.data[k], c = noise.data[half + k]
                        return u + guidance * (c - u)
                    })
                }
                if learnedSigma {
                    // noise_pred.chunk(2, dim=1)[0]: the first half of the channels of [1, 2C, h, w].
                    noise = Tensor(shape: latentShape, data: Array(noise.data.prefix(latents.count)))
                }
                latents = try scheduler.step(modelOutput: noise, index: i, sample: latents)
                try taps.write("latents_\(i)", latents)
                progress(PipelineProgress(stage: .denoise, step: i + 1, total: total))
            }
        }

        // 4. Decode latents / scaling_factor (float32 division) and convert as the image processor does.
        progress(PipelineProgress(stage: .decode, step: 0, total: 1))
        let unit = try timed(.decode) { () throws -> Tensor in
            let decoder = try components.decoder()
            let scaling = Float(config.scalingFactor)
            let image = try decoder.decode(latents: Tensor(shape: latents.shape, data: latents.data.map { $0 / scaling }))
            let expected = [1, 3, request.height, request.width]
            guard image.shape == expected else {
                throw GenerationError.componentFailed("decoder returned \(image.shape), expected \(expected)")
            }
            return try RGB8Image.unitRange(image.reshaped(Array(expected.dropFirst())))
        }
        try taps.write("image", unit)
        progress(PipelineProgress(stage: .decode, step: 1, total: 1))
        return GenerationResult(image: try RGB8Image(unitRange: unit), unitImage: unit, finalLatents: latents,
                                seed: request.seed, scheduler: scheduler.name, seconds: seconds)
    }
}

/// Concatenates two tensors along the batch (first) dimension.
func concatBatch(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.rank >= 1, a.shape.dropFirst() == b.shape.dropFirst() else {
        throw GenerationError.componentFailed("cannot batch shapes \(a.shape) and \(b.shape)")
    }
    return Tensor(shape: [a.shape[0] + b.shape[0]] + Array(a.shape.dropFirst()), data: a.data + b.data)
}

/// Named intermediate tensors written as float32 .npy files for diffing against the Python reference.
struct DebugTaps {
    let directory: String?

    func prepare() throws {
        guard let directory else { return }
        do { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) } catch {
            throw GenerationError.dumpFailed(path: directory, reason: "\(error)")
        }
    }

    func write(_ name: String, _ tensor: Tensor) throws {
        guard let directory else { return }
        let path = (directory as NSString).appendingPathComponent(name + ".npy")
        do { try Npy.write(path, shape: tensor.shape, values: tensor.data) } catch {
            throw GenerationError.dumpFailed(path: path, reason: "\(error)")
        }
    }
}
