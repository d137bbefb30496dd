import CSanaKernels
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

/// Opt-in timing of one full-size DiT forward step (the CFG pair, B = 2) on synthetic weights; skipped unless
/// SANA_BENCH_DIT_CONFIG is set. Driven by tools/bench_dit.py, which runs one storage type per process so the
/// peak RSS printed here is that type's:
///     SANA_BENCH_DIT_CONFIG=models/configs/dit_sana_600m_512px.json SANA_BENCH_DIT_TYPE=int8 SANA_BENCH_DIT_SIZE=512 \
///     swift test -c release -Xswiftc -enable-testing --filter SanaTransformerBenchTests
final class SanaTransformerBenchTests: XCTestCase {
    func testBenchOneStep() throws {
        let env = ProcessInfo.processInfo.environment
        guard let configPath = env["SANA_BENCH_DIT_CONFIG"] else { throw XCTSkip("set SANA_BENCH_DIT_CONFIG to run") }
        let type = try XCTUnwrap(StorageType(name: env["SANA_BENCH_DIT_TYPE"] ?? "int8"))
        let size = Int(env["SANA_BENCH_DIT_SIZE"] ?? "1024") ?? 1024
        let steps = Int(env["SANA_BENCH_DIT_STEPS"] ?? "1") ?? 1
        let prefetch = env["SANA_BENCH_DIT_PREFETCH"] == "1"
        let config = try SanaTransformerConfig.load(path: configPath)
        let source = SyntheticWeightSource(SanaTransformer2DModel.expectedTensors(config), type: type)
        let model = try SanaTransformer2DModel(source: source, config: config,
                                               blockLoader: prefetch ? PrefetchingBlockLoader() : SequentialBlockLoader())
        let b = 2, side = size / 32, l = 300
        func noise(_ n: Int, _ seed: Int) -> [Float] { (0 ..< n).map { Float(sin(Double($0 &* 2_654_435_761 &+ seed))) } }
        let latent = Tensor(shape: [b, config.inChannels, side, side], data: noise(b * config.inChannels * side * side, 1))
        let text = Tensor(shape: [b, l, config.captionChannels], data: noise(b * l * config.captionChannels, 2))
        let mask = Tensor(shape: [b, l], data: (0 ..< b * l).map { $0 % l < 120 ? 1 : 0 })
        let guidance: [Float]? = config.guidanceEmbeds ? [0.45, 0.45] : nil
        var times: [Double] = []
        var out = Tensor(zeros: [1])
        for _ in 0 ..< steps {
            let t0 = Date()
            out = try model(hiddenStates: latent, timestep: [999, 999], encoderHiddenStates: text,
                            encoderAttentionMask: mask, guidance: guidance)
            times.append(Date().timeIntervalSince(t0))
        }
        XCTAssertTrue(out.data.allSatisfy(\.isFinite))
        var usage = rusage()
        getrusage(Int32(RUSAGE_SELF.rawValue), &usage)  // ru_maxrss: peak resident KiB (Linux)
        let seconds = String(format: "%.3f", times.min() ?? 0), peak = String(format: "%.1f", Double(usage.ru_maxrss) / 1024)
        print("BENCH dit type=\(type.name) size=\(size) step_seconds=\(seconds) peak_rss_mb=\(peak)"
              + " kernels=\(String(cString: sana_kernel_family())) threads=\(sana_get_threads()) prefetch=\(prefetch ? 1 : 0)")
    }
}
