import CSanaKernels
import Foundation
import ArgumentParser
import SanaFormat
import SanaKit

/// `sana bench gemma`: encodes one prompt as SanaPipeline.encode_prompt does (with classifier-free guidance: the
/// instruction + prompt right-padded to n_instruction + max_sequence_length − 2, and the empty negative prompt padded
/// to max_sequence_length) with a full-size Gemma-2 on random weights (Gemma2Model.synthetic: layers synthesized when
/// loaded, in the chosen storage type; the embedding synthesized by rows). Token ids are synthetic (the real Gemma
/// tokenizer is not available here); only their count matters for speed and memory. Three timed phases, one process:
/// the prompt without the prefix cache, building the instruction's prefix cache, and the prompt with the cache.
/// Prints one JSON line. Driven by tools/bench_gemma.py (PyTorch in the same run); figures in docs/BENCHMARKS.md.
///
/// With `--bundle`: a fresh process's text-encoder stage as `sana generate` runs it on a real bundle: open the bundle,
/// parse its tokenizer, then encode `--prompt` (with the instruction) and the empty negative prompt, using the
/// instruction's prefix cache stored in the bundle (or computing it, with `--no-stored-cache`).
struct BenchGemma: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gemma",
                                                    abstract: "Time encoding one prompt with Gemma-2 and report peak memory.")

    @Option(help: "A Gemma-2 config.json.") var config = "models/configs/gemma-2-2b.json"
    @Option(help: "Storage type of the layer matrices: f32, f16, bf16, int8, int4.") var weights = "int4"
    @Option(help: "Tokens of the complex human instruction, <bos> included.") var instructionTokens = 214
    @Option(help: "Tokens of the user prompt.") var promptTokens = 20
    @Option(help: "SanaPipeline's max_sequence_length.") var maxSequenceLength = 300
    @Option(help: "Run only the first N decoder layers (profiling); default: all.") var layers: Int?
    @Option(help: "Threads (default: all cores).") var threads: Int?
    @Flag(help: "Also compute the padded positions, as the reference does (like-for-like; not the default).")
    var padded = false
    @Option(help: "A bundle: time its text-encoder stage (real tokenizer and weights) instead of synthetic weights.")
    var bundle: String?
    @Option(help: "The prompt, with --bundle.") var prompt = "a small fluffy white cat sleeping peacefully on a warm sunny windowsill"
    @Flag(help: "With --bundle: ignore the bundle's stored prefix cache (compute it, as for an older bundle).")
    var noStoredCache = false

    func run() throws {
        if let bundle { return try runBundle(bundle) }
        guard let type = StorageType(name: weights) else { throw ValidationError("unknown storage type \(weights)") }
        var cfg = try Gemma2Config.load(path: config)
        if let layers {
            guard layers > 0, layers <= cfg.numHiddenLayers else {
                throw ValidationError("--layers must be in 1...\(cfg.numHiddenLayers)")
            }
            cfg.numHiddenLayers = layers
            cfg.layerTypes = Array(cfg.layerTypes.prefix(layers))
        }
        guard instructionTokens >= 1, promptTokens >= 1, maxSequenceLength >= 2 else {
            throw ValidationError("instruction-tokens, prompt-tokens ≥ 1 and max-sequence-length ≥ 2")
        }
        let t = threads ?? Int(sana_get_threads())
        sana_set_threads(Int32(t))
        OpenBLAS.setThreads(t)
        // Integer bundles keep the embedding in int8 (QuantizationPolicy.embeddingType); float ones in their type.
        let model = try Gemma2Model.synthetic(config: cfg, type: type, embeddingType: type.isQuantized ? .int8 : type)

        // Synthetic ids: <bos> = 2, then ids spread over the vocabulary; padding id 0.
        let lengthAll = instructionTokens + maxSequenceLength - 2
        let instruction = [2] + (1 ..< instructionTokens).map { 1000 + ($0 * 7919) % 200_000 }
        let prompt = (0 ..< promptTokens).map { 3000 + ($0 * 104_729) % 250_000 }
        let valid = min(instruction.count + prompt.count, lengthAll)
        let positive = Array((instruction + prompt).prefix(valid)) + [Int](repeating: 0, count: lengthAll - valid)
        let negative = [2] + [Int](repeating: 0, count: maxSequenceLength - 1)
        let sequences = [(ids: positive, mask: (0 ..< lengthAll).map { $0 < valid ? 1 : 0 }),
                         (ids: negative, mask: (0 ..< maxSequenceLength).map { $0 < 1 ? 1 : 0 })]

        BenchDCAE.resetPeak()
        let t0 = Date(), c0 = processCPUSeconds()
        let plain = try model.encode(sequences, computePadded: padded)
        let plainSeconds = Date().timeIntervalSince(t0), plainCPU = processCPUSeconds() - c0
        let plainPeak = Memory.residentBytes().peak

        let t1 = Date()
        let cache = try model.makePrefixCache(ids: instruction)
        let cacheSeconds = Date().timeIntervalSince(t1)
        let t2 = Date(), c2 = processCPUSeconds()
        let cached = try model.encode(sequences, computePadded: padded, prefix: cache)
        let cachedSeconds = Date().timeIntervalSince(t2), cachedCPU = processCPUSeconds() - c2
        let cachedPeak = Memory.residentBytes().peak

        // The cached path must give the plain path's result (same arithmetic on the same rows).
        let c = cfg.hiddenSize
        var diff: Float = 0
        for (a, b) in zip(plain[0].data.prefix(valid * c), cached[0].data.prefix(valid * c)) { diff = max(diff, abs(a - b)) }
        print("""
            {"impl": "sanaedge", "weights": "\(type.name)", "layers": \(cfg.numHiddenLayers), "threads": \(t), \
            "kernels": "\(String(cString: sana_kernel_family()))", "padded": \(padded), \
            "instruction_tokens": \(instructionTokens), "prompt_tokens": \(promptTokens), "length_all": \(lengthAll), \
            "encode_s": \(String(format: "%.3f", plainSeconds)), "encode_cpu_s": \(String(format: "%.3f", plainCPU)), "peak_rss_mib": \(plainPeak >> 20), \
            "cache_build_s": \(String(format: "%.3f", cacheSeconds)), "cache_mib": \(cache.byteCount >> 20), \
            "encode_cached_s": \(String(format: "%.3f", cachedSeconds)), \
            "encode_cached_cpu_s": \(String(format: "%.3f", cachedCPU)), "peak_rss_cached_mib": \(cachedPeak >> 20), \
            "cached_vs_plain_max_abs_diff": \(diff), "max_abs": \(plain[0].maxAbs)}
            """)
    }

    /// The text-encoder stage of a fresh process on a real bundle (see the type's comment).
    func runBundle(_ path: String) throws {
        let t = threads ?? Int(sana_get_threads())
        sana_set_threads(Int32(t))
        OpenBLAS.setThreads(t)
        let t0 = Date(), c0 = processCPUSeconds()
        let encoder = try SanaPromptEncoder(bundle: SanaBundle(path: path), maxSequenceLength: maxSequenceLength,
                                            storedPrefixCache: !noStoredCache)
        let openSeconds = Date().timeIntervalSince(t0), openCPU = processCPUSeconds() - c0
        let t1 = Date(), c1 = processCPUSeconds()
        let (positive, negative) = try encoder.encode(prompts: [prompt], negativePrompts: [""])
        let encodeSeconds = Date().timeIntervalSince(t1), encodeCPU = processCPUSeconds() - c1
        let instruction = encoder.instructionText.map { encoder.tokenizer.encode($0).count } ?? 0
        let valid = positive.mask[0].reduce(0, +)
        let origin = encoder.prefixCacheOrigin.map { "\($0)" } ?? "none"
        func fmt(_ x: Double) -> String { String(format: "%.3f", x) }
        print("""
            {"impl": "sanaedge", "mode": "bundle", "bundle": "\(path)", "threads": \(t), \
            "kernels": "\(String(cString: sana_kernel_family()))", "prefix_cache": "\(origin)", \
            "instruction_tokens": \(instruction), "prompt_tokens": \(encoder.tokenizer.encode(SanaPromptEncoder.preprocess(prompt), addSpecialTokens: false).count), \
            "valid_selected": \(valid), "length_all": \(instruction + maxSequenceLength - 2), \
            "open_s": \(fmt(openSeconds)), "open_cpu_s": \(fmt(openCPU)), \
            "encode_s": \(fmt(encodeSeconds)), "encode_cpu_s": \(fmt(encodeCPU)), \
            "stage_s": \(fmt(openSeconds + encodeSeconds)), "stage_cpu_s": \(fmt(openCPU + encodeCPU)), \
            "process_cpu_s": \(fmt(processCPUSeconds())), "peak_rss_mib": \(Memory.residentBytes().peak >> 20), \
            "max_abs": \(max(positive.embeds.maxAbs, negative.embeds.maxAbs))}
            """)
    }
}
