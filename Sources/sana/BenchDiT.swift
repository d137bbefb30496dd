import CSanaKernels
import Foundation
import ArgumentParser
import SanaFormat
import SanaKit

/// `sana bench dit`: one forward step of a full-size Linear DiT (the classifier-free-guidance pair as one batch,
/// B = 2, a 300-token caption with 120 kept) on random weights in a released configuration
/// (SyntheticWeightSource: every block is synthesized when it is loaded, in the chosen storage type, so no checkpoint
/// is needed and the blocks stream exactly as from a bundle). Prints one JSON line: step time, the part of it spent
/// producing weights, and the process's peak resident memory. Driven by tools/bench_dit.py, which runs PyTorch on
/// the same configuration in the same run; figures in docs/BENCHMARKS.md "Linear DiT".
struct BenchDiT: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dit",
                                                    abstract: "Time one DiT forward step (B = 2) and report its peak memory.")

    @Option(help: "A transformer config.json (models/configs/dit_*.json).") var config: String
    @Option(help: "Storage type of the matrix weights: f32, f16, bf16, int8, int4.") var weights = "int8"
    @Option(help: "Image side in pixels (the latent is side / 32).") var size = 1024
    @Option(help: "Caption length (tokens after the pipeline's selection) and how many of them are kept.") var caption = 300
    @Option(help: "Unmasked caption tokens.") var keep = 120
    @Option(help: "Run only the first N blocks (profiling); default: all.") var layers: Int?
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Option(help: "Timed steps; the fastest is reported.") var steps = 1
    @Flag(help: "Read block i+1 on a background thread while block i runs.") var prefetch = false
    @Option(help: "Write the step's output [B, C, H, W] to this .npy file (to compare builds).") var output: String?

    func run() throws {
        guard let type = StorageType(name: weights) else { throw ValidationError("unknown storage type \(weights)") }
        var cfg = try SanaTransformerConfig.load(path: config)
        if let layers {
            guard layers > 0, layers <= cfg.numLayers else { throw ValidationError("--layers must be in 1...\(cfg.numLayers)") }
            cfg.numLayers = layers
        }
        guard size > 0, size % 32 == 0, caption > 0, (1 ... caption).contains(keep), steps >= 1 else {
            throw ValidationError("size must be a positive multiple of 32, 1 ≤ keep ≤ caption, steps ≥ 1")
        }
        let t = threads ?? Int(sana_get_threads())
        sana_set_threads(Int32(t))
        OpenBLAS.setThreads(t)
        let source = TimedWeightSource(SyntheticWeightSource(SanaTransformer2DModel.expectedTensors(cfg), type: type))
        let model = try SanaTransformer2DModel(source: source, config: cfg,
                                               blockLoader: prefetch ? PrefetchingBlockLoader() : SequentialBlockLoader())
        let b = 2, side = size / 32, l = caption
        let latent = Tensor(shape: [b, cfg.inChannels, side, side], data: benchNoise(b * cfg.inChannels * side * side, seed: 1))
        let text = Tensor(shape: [b, l, cfg.captionChannels], data: benchNoise(b * l * cfg.captionChannels, seed: 2))
        let mask = Tensor(shape: [b, l], data: (0 ..< b * l).map { $0 % l < keep ? 1 : 0 })
        let guidance: [Float]? = cfg.guidanceEmbeds ? [0.45, 0.45] : nil
        let rssBefore = Memory.residentBytes().current
        BenchDCAE.resetPeak()
        var best = Double.infinity, weightSeconds = 0.0, cpu = 0.0
        var out = Tensor(zeros: [1])
        for _ in 0 ..< steps {
            source.reset()
            let t0 = Date(), c0 = processCPUSeconds()
            out = try model(hiddenStates: latent, timestep: [999, 999], encoderHiddenStates: text,
                            encoderAttentionMask: mask, guidance: guidance)
            let s = Date().timeIntervalSince(t0)
            if s < best { (best, weightSeconds, cpu) = (s, source.seconds, processCPUSeconds() - c0) }
        }
        guard out.data.allSatisfy(\.isFinite) else { throw ValidationError("the step produced non-finite values") }
        if let output { try Npy.write(output, shape: out.shape, values: out.data) }
        let peak = Memory.residentBytes().peak
        print("""
            {"impl": "sanaedge", "weights": "\(type.name)", "config": "\((config as NSString).lastPathComponent)", \
            "size": \(size), "layers": \(cfg.numLayers), "prefetch": \(prefetch), "threads": \(t), \
            "kernels": "\(String(cString: sana_kernel_family()))", "step_s": \(String(format: "%.2f", best)), "step_cpu_s": \(String(format: "%.2f", cpu)), \
            "weight_synthesis_s": \(String(format: "%.2f", weightSeconds)), "rss_before_step_mib": \(rssBefore >> 20), \
            "peak_rss_mib": \(peak >> 20), "max_abs": \(out.maxAbs)}
            """)
    }
}

/// User + system CPU time of the whole process (all threads), seconds: a load-robust companion to wall time on a
/// shared machine (wall time stretches with other jobs' load, CPU time much less).
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

/// A fixed pseudo-random sequence in [−1, 1]; benchmark inputs (speed and memory do not depend on the values).
func benchNoise(_ n: Int, seed: UInt64) -> [Float] {
    var state = seed &* 0x9E37_79B9_7F4A_7C15
    return (0 ..< n).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Float(state >> 40) / Float(1 << 23) - 1
    }
}

/// Forwards to another source and adds up the wall time spent in `tensor(_:)` (thread-safe: the prefetching loader
/// reads from a background thread), so a benchmark can say how much of a step was weight production.
final class TimedWeightSource: WeightSource, @unchecked Sendable {
    let base: WeightSource
    private let lock = NSLock()
    private var total = 0.0  // guarded by lock

    init(_ base: WeightSource) { self.base = base }

    var tensorNames: Set<String> { base.tensorNames }
    var seconds: Double { lock.withLock { total } }
    func reset() { lock.withLock { total = 0 } }

    func tensor(_ name: String) throws -> StoredTensor {
        let t0 = Date()
        defer {
            let s = Date().timeIntervalSince(t0)
            lock.withLock { total += s }
        }
        return try base.tensor(name)
    }
}
