// Opt-in benchmark driven by tools/bench_gemma.py (skipped unless SANA_BENCH_GEMMA_DIR is set): encodes one prompt's
// ids with a full-width random Gemma-2 checkpoint, weights re-packed as SANA_BENCH_TYPE, and prints one JSON line
// with the time and the process's peak resident memory.
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

final class GemmaBenchmarkTests: XCTestCase {
    /// Layer matrices re-packed on request (streaming: only the layer being run is held), the rest as stored.
    struct RepackingSource: WeightSource {
        let base: WeightSource
        let type: StorageType
        var tensorNames: Set<String> { base.tensorNames }
        func tensor(_ name: String) throws -> StoredTensor {
            let t = try base.tensor(name)
            guard t.shape.count == 2, t.type != type else { return t }
            return .pack(name: name, shape: t.shape, values: t.floats(), as: type)
        }
    }

    static func peakRSSMiB() -> Double {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return -1 }
        return kb / 1024
    }

    func testEncodeOnePrompt() throws {
        let env = ProcessInfo.processInfo.environment
        guard let dir = env["SANA_BENCH_GEMMA_DIR"] else { throw XCTSkip("benchmark: set SANA_BENCH_GEMMA_DIR") }
        let type = StorageType(name: env["SANA_BENCH_TYPE"] ?? "bf16") ?? .bf16
        let valid = Int(env["SANA_BENCH_VALID"] ?? "") ?? 230
        let length = Int(env["SANA_BENCH_LENGTH"] ?? "") ?? 512
        let computePadded = env["SANA_BENCH_PADDED"] == "1"
        let files = try SafetensorsDirectory(path: dir)
        let config = try Gemma2Config.load(path: (dir as NSString).appendingPathComponent("config.json"))
        let model = try Gemma2Model(config: config, source: RepackingSource(base: files, type: type),
                                    embedding: Gemma2Model.embeddingReader(files, name: "embed_tokens.weight",
                                                                           shape: [config.vocabSize, config.hiddenSize]))
        let ids = [2] + (1 ..< length).map { $0 < valid ? 1000 + ($0 * 7919) % 200_000 : 0 }
        let mask = (0 ..< length).map { $0 < valid ? 1 : 0 }
        let t0 = Date()
        let out = try model(inputIds: [ids], attentionMask: [mask], computePadded: computePadded)
        let seconds = Date().timeIntervalSince(t0)
        print("BENCH {\"impl\": \"sana\", \"type\": \"\(type.name)\", \"padded\": \(computePadded), \"seconds\": \(seconds), "
              + "\"peak_mib\": \(GemmaBenchmarkTests.peakRSSMiB()), \"checksum\": \(out.maxAbs)}")
    }
}
