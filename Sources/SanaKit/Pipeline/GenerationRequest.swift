// One text-to-image request with SanaPipeline.__call__'s defaults, validated before any weights load.
import Foundation

public enum GenerationError: Error, CustomStringConvertible, Equatable {
    case invalidRequest(String)
    case badModelConfig(String)
    case componentFailed(String)
    case componentsUnavailable(String)
    case dumpFailed(path: String, reason: String)
    /// The budget cannot hold `stage` even with the smallest plan (one block resident, the finest decoder tiling).
    case memoryBudget(stage: PipelineStage, needed: Int, budget: Int, detail: String)

    public var description: String {
        switch self {
        case let .invalidRequest(r): return r
        case let .badModelConfig(r): return "model configuration not supported: \(r)"
        case let .componentFailed(r): return "pipeline component failed: \(r)"
        case let .componentsUnavailable(r): return r
        case let .dumpFailed(p, r): return "\(p): cannot write debug tensor: \(r)"
        case let .memoryBudget(stage, needed, budget, detail):
            return "memory budget \(Memory.format(budget)) is too small: the \(stage.rawValue) stage needs at least "
                + "\(Memory.format(needed)) (\(detail)); nothing was run. Raise --memory-budget to at least "
                + "\(Memory.format(needed)) or lower the image size"
        }
    }
}

public struct GenerationRequest: Sendable {
    public var prompt: String
    /// SanaPipeline's default negative prompt is the empty string (still encoded when guidance is on).
    public var negativePrompt: String = ""
    public var width: Int = 1024
    public var height: Int = 1024
    public var steps: Int = 20
    /// Classifier-free guidance runs when the scale is above 1.
    public var guidanceScale: Double = 4.5
    public var seed: UInt64 = 0
    /// nil: the bundle's scheduler.
    public var scheduler: SchedulerKind? = nil
    public var maxSequenceLength: Int = 300
    /// Prepend SanaPipeline's complex human instruction to the prompt (`--no-chi` turns it off).
    public var complexHumanInstruction: Bool = true
    /// Initial latents [1, C, H/f, W/f] instead of seeded noise (`--latents`).
    public var latents: Tensor? = nil
    /// Perturbed-attention guidance scale (SanaPAGPipeline's pag_scale); 0 turns PAG off.
    public var pagScale: Double = 0
    /// pag_adaptive_scale: the scale at timestep t is max(0, pagScale − pagAdaptiveScale · (1000 − t)); 0 keeps it fixed.
    public var pagAdaptiveScale: Double = 0
    /// The blocks whose self-attention PAG perturbs (pag_applied_layers "transformer_blocks.i"; diffusers' default 0).
    public var pagLayers: [Int] = [0]

    public init(prompt: String) { self.prompt = prompt }

    /// do_perturbed_attention_guidance: pag_scale > 0 and at least one layer.
    public var usesPAG: Bool { pagScale > 0 && !pagLayers.isEmpty }

    /// The transformer's batch: [negative,] positive [, perturbed positive].
    public var denoiseBatch: Int { (guidanceScale > 1 ? 2 : 1) + (usesPAG ? 1 : 0) }

    /// _get_pag_scale at scheduler timestep `t`, in float32 as the reference computes it with a tensor t.
    func pagScale(at t: Float) -> Float {
        guard pagAdaptiveScale > 0, usesPAG else { return Float(pagScale) }
        return max(0, Float(pagScale) - Float(pagAdaptiveScale) * (1000 - t))
    }

    public func latentShape(vaeScaleFactor: Int, latentChannels: Int) -> [Int] {
        [1, latentChannels, height / vaeScaleFactor, width / vaeScaleFactor]
    }

    /// Every check that needs no weights; the error names the offending setting.
    public func validate(vaeScaleFactor f: Int, latentChannels: Int) throws {
        func fail(_ message: String) -> GenerationError { .invalidRequest(message) }
        // 2^20 pixels per side is far beyond any model; the bound keeps shape arithmetic overflow-free.
        for (name, v) in [("width", width), ("height", height)] {
            guard v > 0, v <= 1 << 20 else { throw fail("\(name) must be a positive number of pixels, got \(v)") }
            guard v % f == 0 else {
                throw fail("\(name) \(v) is not a multiple of the autoencoder factor \(f) (try \(max(f, (v + f / 2) / f * f)))")
            }
        }
        guard steps >= 1 else { throw fail("steps must be at least 1, got \(steps)") }
        guard guidanceScale.isFinite, guidanceScale >= 0 else { throw fail("guidance scale must be ≥ 0, got \(guidanceScale)") }
        for (name, v) in [("PAG scale", pagScale), ("PAG adaptive scale", pagAdaptiveScale)] {
            guard v.isFinite, v >= 0 else { throw fail("\(name) must be ≥ 0, got \(v)") }
        }
        if pagScale > 0, let bad = pagLayers.first(where: { $0 < 0 }) {
            throw fail("PAG layers are block indices ≥ 0, got \(bad)")
        }
        guard maxSequenceLength >= 1 else { throw fail("max sequence length must be at least 1, got \(maxSequenceLength)") }
        if let latents {
            let want = latentShape(vaeScaleFactor: f, latentChannels: latentChannels)
            guard latents.shape == want else {
                throw fail("initial latents have shape \(latents.shape); \(width)×\(height) needs \(want)")
            }
            guard latents.data.allSatisfy(\.isFinite) else { throw fail("initial latents contain NaN or infinity") }
        }
    }
}
