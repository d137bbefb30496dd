import Foundation
import ArgumentParser
import SanaFormat
import SanaKit

/// `sana bench dcae`: decodes a random latent with a full-size DC-AE and reports wall time and peak resident memory
/// of the decode alone (the peak is reset after loading, so it counts the resident weights plus the decode's own
/// allocations), and its wall and process CPU time. Driven by tools/bench_dcae.py, which also runs diffusers on the same weights; figures in
/// docs/BENCHMARKS.md "DC-AE".
struct BenchDCAE: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dcae",
                                                    abstract: "Time one DC-AE decode and report its peak memory.")

    @Option(help: "A diffusers vae/ folder (config.json + safetensors).") var vae: String
    @Option(help: "Storage type of the ≥ 2-D conv and linear weights: f32, f16, bf16, int8, int4, mixed (int8 ResBlock stages, bf16 elsewhere), mixed-attn (int8 but the attention modules), or T-policy (what `sana convert --weights T` stores, e.g. int8-policy).") var weights = "f32"
    @Option(help: "Output side in pixels (the latent is side / compression ratio).") var size = 1024
    @Option(help: "Tiling: off, or a memory budget for activations in MiB (auto tiling).") var tiling = "off"
    @Option(help: "Decode this latent (.npy, [1, C, size/f, size/f]) instead of the built-in pseudo-random one.") var latent: String?
    @Option(help: "Write the decoded image (.npy, [1, 3, size, size], float32) here, for faithfulness comparisons.") var dump: String?

    func run() throws {
        let config = try AutoencoderDCConfig.load(path: (vae as NSString).appendingPathComponent("config.json"))
        // The weights are loaded in a function of their own so the mapped safetensors file is unmapped when it
        // returns: its pages (the float32 source, ~0.6 GB for the decoder) would otherwise count as resident.
        func loadDecoder() throws -> AutoencoderDC {
            let base = try SafetensorsDirectory(path: vae)
            let source: WeightSource
            if weights.hasSuffix("-policy"), let type = StorageType(name: String(weights.dropLast(7))) {
                source = PolicyWeightSource(base, component: "vae", policy: QuantizationPolicy(weights: type))
            } else if let mix = AutoencoderDC.DecoderMix(rawValue: weights) {
                source = try AutoencoderDC.mixedDecoderSource(base, config: config, mix: mix)
            } else if let type = StorageType(name: weights) {
                source = QuantizedWeightSource(base, as: type)
            } else {
                throw ValidationError("unknown storage type \(weights)")
            }
            return try AutoencoderDC(config: config, source: source, parts: .decoder)
        }
        let f = config.spatialCompressionRatio
        guard size > 0, size % f == 0 else { throw ValidationError("size must be a positive multiple of \(f)") }
        let mode: DecodeTiling
        if tiling == "off" { mode = .off } else if let mib = Int(tiling), mib > 0 { mode = .auto(budgetBytes: mib << 20) } else {
            throw ValidationError("tiling must be 'off' or a budget in MiB")
        }
        let t0 = Date()
        let ae = try loadDecoder()
        let load = Date().timeIntervalSince(t0)
        let side = size / f
        // A fixed pseudo-random latent (values about ±1.7); speed and memory do not depend on the values.
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        let shape = [1, config.latentChannels, side, side]
        let latent: Tensor
        if let path = self.latent {
            let (s, values) = try Npy.read(path)
            guard s == shape else { throw ValidationError("latent \(path) has shape \(s), expected \(shape)") }
            latent = Tensor(shape: shape, data: values)
        } else {
            latent = Tensor(shape: shape, data: (0 ..< config.latentChannels * side * side).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 577
            })
        }
        let rssBefore = Self.status("VmRSS")
        Self.resetPeak()
        let t1 = Date(), cpu1 = Self.processCPUSeconds()
        let image = try ae.decode(latent, tiling: mode)
        let seconds = Date().timeIntervalSince(t1), cpuSeconds = Self.processCPUSeconds() - cpu1
        if let dump { try Npy.write(dump, shape: image.shape, values: image.data) }
        let estimate = AutoencoderDC.estimatedDecodePeakBytes(config: config, batch: 1, latentHeight: side, latentWidth: side)
        print("""
            {"impl": "sanaedge", "weights": "\(weights)", "size": \(size), "tiling": "\(tiling)", \
            "load_s": \(String(format: "%.1f", load)), "decode_s": \(String(format: "%.1f", seconds)), "decode_cpu_s": \(String(format: "%.1f", cpuSeconds)), \
            "rss_before_decode_mib": \(rssBefore >> 10), "peak_rss_mib": \(Self.status("VmHWM") >> 10), \
            "untiled_activation_estimate_mib": \(estimate >> 20), "max_abs": \(image.maxAbs)}
            """)
    }

    /// CPU time of the whole process (all threads), user + system: on a shared machine it compares implementations
    /// better than wall time (the peer reports the same measure).
    static func processCPUSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    /// A field of /proc/self/status in KiB (0 when unavailable).
    static func status(_ field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }

    /// Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs).
    static func resetPeak() { try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8) }
}
