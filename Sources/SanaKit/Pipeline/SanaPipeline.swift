// The text-to-image sampling loop of diffusers/pipelines/sana/pipeline_sana.py (SanaPipeline.__call__), written
// against three small protocols that the real components (Gemma-2 encoder, Linear DiT, DC-AE) conform to.
// Layout at these boundaries follows the reference: latents are NCHW [B, C, h, w], images [B, 3, H, W].
// Perturbed-attention guidance (pagScale > 0) follows diffusers/pipelines/pag/pipeline_pag_sana.py (SanaPAGPipeline)
// and pag_utils.py (PAGMixin): the batch gains a perturbed copy of the conditional element.
// Not reproduced: use_resolution_binning (we sample at the requested size, like use_resolution_binning=False),
// num_images_per_prompt > 1, custom timesteps/sigmas.
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
    /// The same with perturbed-attention guidance: batch elements `perturbed.batches` run identity self-attention in
    /// the blocks `perturbed.blocks` (nil: the plain forward).
    func forward(latents: Tensor, timestep: [Float], encoderHiddenStates: Tensor, encoderMask: Tensor,
                 perturbed: PerturbedAttention?) throws -> Tensor
}

extension DenoisingModel {
    /// A denoiser without identity attention can only run unperturbed.
    public func forward(latents: Tensor, timestep: [Float], encoderHiddenStates: Tensor, encoderMask: Tensor,
                        perturbed: PerturbedAttention?) throws -> Tensor {
        guard perturbed == nil else {
            throw GenerationError.componentFailed("this denoiser does not support perturbed-attention guidance")
        }
        return try forward(latents: latents, timestep: timestep, encoderHiddenStates: encoderHiddenStates, encoderMask: encoderMask)
    }
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
    /// transformer config num_layers, when known (checks the PAG layers before any weights load).
    public var transformerLayers: Int?

    public init(latentChannels: Int, transformerOutChannels: Int, timestepScale: Double = 1, vaeScaleFactor: Int,
                scalingFactor: Double, schedulerConfigJSON: Data, transformerLayers: Int? = nil) {
        self.transformerLayers = transformerLayers
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

/// Progress report: `step` of `total` finished in `stage` (encode and decode report 0/1 then 1/1) for request `item`
/// of `items` (a batch runs each stage for every request before the next stage loads).
public struct PipelineProgress: Sendable {
    public var stage: PipelineStage
    public var step: Int
    public var total: Int
    public var item: Int = 0
    public var items: Int = 1
}

public struct GenerationResult: Sendable {
    public var image: RGB8Image
    /// [3, H, W] in [0, 1] before 8-bit rounding.
    public var unitImage: Tensor
    public var finalLatents: Tensor
    public var seed: UInt64
    public var scheduler: String
    /// Wall-clock seconds per stage. The encode stage runs once for all requests of a batch with the same prompt
    /// settings; its time is that shared run's (see `encodeShared`).
    public var seconds: [PipelineStage: Double]
    /// How many requests shared the encode run timed in `seconds[.encode]`.
    public var encodeShared: Int = 1
}

/// A memory budget check: called for every request before any weights load (see SanaPipeline+Bundle.swift).
public protocol MemoryPlanning: Sendable {
    /// Throws `GenerationError.memoryBudget` naming the first stage that cannot fit.
    func check(_ request: GenerationRequest, config: PipelineConfig) throws
}

public struct SanaPipeline {
    public let config: PipelineConfig
    public let components: PipelineComponents
    /// `--dump DIR`: float32 .npy debug taps (see DESIGN.md); nil writes nothing. A batch of several requests writes
    /// request i's taps to DIR/<i + 1, 3 digits>/.
    public var dumpDirectory: String?
    /// Which torch normal kernel to reproduce for the initial noise (torch's choice on this architecture).
    public var noiseKernel: TorchNormalKernel = .host
    /// Refuses requests that cannot fit the memory budget (nil: no budget).
    public var memoryPlanner: (any MemoryPlanning)?

    public init(config: PipelineConfig, components: PipelineComponents, dumpDirectory: String? = nil) {
        self.config = config
        self.components = components
        self.dumpDirectory = dumpDirectory
    }

    /// The scheduler a request runs with: the bundle's, or the one it names.
    public func scheduler(for request: GenerationRequest) throws -> any Scheduler {
        try SchedulerFactory.make(configJSON: config.schedulerConfigJSON, override: request.scheduler)
    }

    /// Checks everything that can be checked without weights: the request, the configuration, the schedule, and
    /// (with a memory planner) that every stage fits the budget.
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
        if request.usesPAG, let n = config.transformerLayers, let bad = request.pagLayers.first(where: { $0 >= n }) {
            throw GenerationError.invalidRequest("PAG layer \(bad) does not exist: the transformer has \(n) blocks (0…\(n - 1))")
        }
        var s = try scheduler(for: request)
        try s.setTimesteps(request.steps)
        try memoryPlanner?.check(request, config: config)
    }

    public func generate(_ request: GenerationRequest, progress: (PipelineProgress) -> Void = { _ in }) throws -> GenerationResult {
        var result: GenerationResult?
        try generate([request], progress: progress) { _, r in result = r }
        guard let result else { throw GenerationError.componentFailed("no result") }
        return result
    }

    /// Runs several requests stage by stage: each network is loaded once for the whole batch and released before the
    /// next one loads (prompts are encoded together, then every request is denoised, then every one decoded).
    /// `completion(i, result)` is called as soon as request i's image is decoded (write it there: results are not kept).
    public func generate(_ requests: [GenerationRequest], progress: (PipelineProgress) -> Void = { _ in },
                         completion: (Int, GenerationResult) throws -> Void) throws {
        for r in requests { try validate(r) }
        let n = requests.count
        let taps = requests.indices.map { i in
            DebugTaps(directory: dumpDirectory.map { n == 1 ? $0 : ($0 as NSString).appendingPathComponent(String(format: "%03d", i + 1)) })
        }
        for t in taps { try t.prepare() }
        var seconds = [[PipelineStage: Double]](repeating: [:], count: n)
        var shared = [Int](repeating: 1, count: n)
        func timed<T>(_ stage: PipelineStage, _ items: [Int], _ body: () throws -> T) rethrows -> T {
            let start = Date()
            defer { for i in items { seconds[i][stage, default: 0] += Date().timeIntervalSince(start) } }
            return try body()
        }
        func report(_ stage: PipelineStage, _ step: Int, _ total: Int, _ item: Int) {
            progress(PipelineProgress(stage: stage, step: step, total: total, item: item, items: n))
        }

        // 1. Prompt embeddings. Requests with the same prompt settings are encoded in one pass (each Gemma layer read
        // once); the encoder is released at the end of the closure.
        var conditioning = [(embeds: Tensor, mask: Tensor)?](repeating: nil, count: n)
        do {  // the network loaded here is released when this scope ends
            report(.encode, 0, 1, 0)
            let encoder = try timed(.encode, Array(0 ..< n)) { try components.textEncoder() }
            // do_classifier_free_guidance = guidance_scale > 1; the batch is then [negative, positive].
            struct Key: Hashable { let msl: Int, chi: Bool, cfg: Bool }
            var groups: [Key: [Int]] = [:], order: [Key] = []
            for (i, r) in requests.enumerated() {
                let k = Key(msl: r.maxSequenceLength, chi: r.complexHumanInstruction, cfg: r.guidanceScale > 1)
                if groups[k] == nil { order.append(k) }
                groups[k, default: []].append(i)
            }
            for key in order {
                let items = groups[key] ?? []
                for i in items { shared[i] = items.count }
                let out = try timed(.encode, items) {
                    try encoder.encode(prompts: items.map { requests[$0].prompt },
                                       negativePrompts: key.cfg ? items.map { requests[$0].negativePrompt } : nil,
                                       maxSequenceLength: key.msl, complexHumanInstruction: key.chi)
                }
                for (k, i) in items.enumerated() {
                    let pos = try batchItem(out.positive, k, of: items.count)
                    guard key.cfg else { conditioning[i] = pos; continue }
                    guard let negative = out.negative else { throw GenerationError.componentFailed("text encoder returned no negative embeddings") }
                    let neg = try batchItem(negative, k, of: items.count)
                    conditioning[i] = (try concatBatch(neg.embeds, pos.embeds), try concatBatch(neg.mask, pos.mask))
                }
            }
            report(.encode, 1, 1, n - 1)
        }
        returnFreedMemory()
        for i in 0 ..< n {
            guard let c = conditioning[i] else { throw GenerationError.componentFailed("prompt \(i + 1) was not encoded") }
            try taps[i].write("prompt_embeds", c.embeds)
            try taps[i].write("prompt_attention_mask", c.mask)
        }

        // 2.–3. Initial latents and the denoising loop of each request (the transformer is released at the end).
        var finals = [(latents: Tensor, scheduler: String)?](repeating: nil, count: n)
        do {  // the network loaded here is released when this scope ends
            let transformer = try timed(.denoise, Array(0 ..< n)) { try components.transformer() }
            for (i, request) in requests.enumerated() {
                guard let c = conditioning[i] else { continue }
                finals[i] = try timed(.denoise, [i]) {
                    try denoise(request, embeds: c.embeds, mask: c.mask, transformer: transformer, taps: taps[i]) { step, total in
                        report(.denoise, step, total, i)
                    }
                }
                conditioning[i] = nil
            }
        }
        returnFreedMemory()

        // 4. Decode latents / scaling_factor (float32 division) and convert as the image processor does.
        do {  // the network loaded here is released when this scope ends
            let decoder = try timed(.decode, Array(0 ..< n)) { try components.decoder() }
            for (i, request) in requests.enumerated() {
                guard let final = finals[i] else { continue }
                report(.decode, 0, 1, i)
                let unit = try timed(.decode, [i]) { () throws -> Tensor in
                    let scaling = Float(config.scalingFactor)
                    let image = try decoder.decode(latents: Tensor(shape: final.latents.shape, data: final.latents.data.map { $0 / scaling }))
                    let expected = [1, 3, request.height, request.width]
                    guard image.shape == expected else {
                        throw GenerationError.componentFailed("decoder returned \(image.shape), expected \(expected)")
                    }
                    return try RGB8Image.unitRange(image.reshaped(Array(expected.dropFirst())))
                }
                try taps[i].write("image", unit)
                report(.decode, 1, 1, i)
                finals[i] = nil
                try completion(i, GenerationResult(image: try RGB8Image(unitRange: unit), unitImage: unit,
                                                   finalLatents: final.latents, seed: request.seed,
                                                   scheduler: final.scheduler, seconds: seconds[i], encodeShared: shared[i]))
            }
        }
    }

    /// Timesteps, initial latents [1, C, H/f, W/f] (prepare_latents: randn, not scaled by init_noise_sigma) and the
    /// sampling loop of one request. Returns the final latents and the scheduler's name.
    func denoise(_ request: GenerationRequest, embeds: Tensor, mask: Tensor, transformer: any DenoisingModel,
                 taps: DebugTaps, progress: (Int, Int) -> Void) throws -> (latents: Tensor, scheduler: String) {
        let cfg = request.guidanceScale > 1, pag = request.usesPAG, guided = cfg ? 2 : 1
        guard embeds.rank == 3, embeds.shape[0] == guided, mask.shape == Array(embeds.shape.prefix(2)) else {
            throw GenerationError.componentFailed("text encoder returned embeddings \(embeds.shape) and mask \(mask.shape)")
        }
        // _prepare_perturbed_attention_guidance: the conditional element once more at the end of the batch, [negative,
        // positive, positive] or [positive, positive]; that last element is the perturbed one.
        var (embeds, mask) = (embeds, mask)
        let batch = request.denoiseBatch
        var perturbed: PerturbedAttention?
        if pag {
            let positive = try batchItem(PromptEmbeddings(embeds: embeds, mask: mask), guided - 1, of: guided)
            (embeds, mask) = (try concatBatch(embeds, positive.embeds), try concatBatch(mask, positive.mask))
            perturbed = PerturbedAttention(batches: guided ..< batch, blocks: Set(request.pagLayers))
        }
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

        let guidance = Float(request.guidanceScale), timestepScale = Float(config.timestepScale)
        let learnedSigma = config.transformerOutChannels / 2 == config.latentChannels
        let total = scheduler.timesteps.count
        progress(0, total)
        for (i, t) in scheduler.timesteps.enumerated() {
            // latent_model_input = cat([latents] * B); timestep = t.expand(B) * timestep_scale (float32).
            let input = Tensor(shape: [batch] + Array(latents.shape.dropFirst()),
                               data: Array([[Float]](repeating: latents.data, count: batch).joined()))
            let timestep = [Float](repeating: t * timestepScale, count: batch)
            var noise = try transformer.forward(latents: input, timestep: timestep, encoderHiddenStates: embeds,
                                                encoderMask: mask, perturbed: perturbed)
            let expected = [batch, config.transformerOutChannels] + Array(latentShape.dropFirst(2))
            guard noise.shape == expected else {
                throw GenerationError.componentFailed("transformer returned \(noise.shape), expected \(expected)")
            }
            if pag {
                // _apply_perturbed_attention_guidance, each op in float32:
                //   uncond + guidance_scale · (text − uncond) + pag_scale · (text − perturbed)   (with CFG)
                //   text + pag_scale · (text − perturbed)                                        (without)
                let part = noise.count / batch, s = request.pagScale(at: t)
                noise = Tensor(shape: [1] + Array(noise.shape.dropFirst()), data: (0 ..< part).map { k in
                    let p = noise.data[(batch - 1) * part + k]
                    guard cfg else { let c = noise.data[k]; return c + s * (c - p) }
                    let u = noise.data[k], c = noise.data[part + k]
                    return (u + guidance * (c - u)) + s * (c - p)
                })
            } else if cfg {
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
            progress(i + 1, total)
        }
        return (latents, scheduler.name)
    }
}

/// Hands the heap pages freed by a finished stage back to the system (glibc keeps them in its arenas otherwise, and
/// the next stage's peak would sit on top of them).
func returnFreedMemory() {
    if let trim = mallocTrim { _ = trim(0) }
}

/// glibc's malloc_trim, looked up at run time (absent on other C libraries).
private let mallocTrim: (@convention(c) (Int) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }  // RTLD_DEFAULT
    return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
}()

/// Item `k` of a batch of `count` prompt embeddings ([count, L, C] and [count, L] → [1, L, C] and [1, L]).
func batchItem(_ e: PromptEmbeddings, _ k: Int, of count: Int) throws -> (embeds: Tensor, mask: Tensor) {
    guard e.embeds.rank == 3, e.embeds.shape[0] == count, e.mask.shape == Array(e.embeds.shape.prefix(2)) else {
        throw GenerationError.componentFailed("text encoder returned embeddings \(e.embeds.shape) and mask \(e.mask.shape) for \(count) prompts")
    }
    let l = e.embeds.shape[1], c = e.embeds.shape[2]
    return (Tensor(shape: [1, l, c], data: Array(e.embeds.data[k * l * c ..< (k + 1) * l * c])),
            Tensor(shape: [1, l], data: Array(e.mask.data[k * l ..< (k + 1) * l])))
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
