import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

// Which storage mix keeps the DC-AE decode faithful (docs/NUMERICS.md "DC-AE", docs/BENCHMARKS.md "DC-AE"):
// int8 everywhere except some attention weights kept bf16, against the all-bf16 and all-int8 decodes.
// Fixtures: Tests/Fixtures/dcae/<case>/ from ${PYTHON:-/work/main/.venv-ref/bin/python} tools/fixtures/make_dcae.py
final class DCAEMixedPrecisionTests: XCTestCase {
    /// Relative max decode error of one case with matrix weights in `base`, except those `keep` selects in bf16.
    func decodeError(_ name: String, base: StorageType, keepBF16 keep: @escaping @Sendable (String) -> Bool) throws -> Float {
        let dir = Fixtures.path("dcae/\(name)")
        let config = try AutoencoderDCConfig.load(path: dir + "/config.json")
        let file = try SafetensorsFile(path: dir + "/weights.safetensors")
        let matrix = QuantizedWeightSource.matrixWeights
        let kept = QuantizedWeightSource(file, as: .bf16, where: { n, s in matrix(n, s) && keep(n) })
        let source = QuantizedWeightSource(kept, as: base, where: { n, s in matrix(n, s) && !keep(n) })
        let ae = try AutoencoderDC(config: config, source: source, parts: .decoder)
        return relativeMaxError(try ae.decode(try Fixtures.tensor("dcae/\(name)/decoder_input.npy")),
                                try Fixtures.tensor("dcae/\(name)/decoder_output.npy"))
    }

    /// int8 with the linear attention's q/k/v (and multi-scale q/k/v) products in bf16: the int8 error of the
    /// attention case comes from rounding the activations entering q/k/v, which ReLU linear attention amplifies.
    func testInt8WithBF16AttentionInputs() throws {
        let qkv: @Sendable (String) -> Bool = { n in n.contains(".attn.to_q") || n.contains(".attn.to_k") || n.contains(".attn.to_v") }
        let attention: @Sendable (String) -> Bool = { n in n.contains(".attn.") }
        for name in AutoencoderDCTests.cases {
            let int8 = try decodeError(name, base: .int8, keepBF16: { _ in false })
            let mixedQKV = try decodeError(name, base: .int8, keepBF16: qkv)
            let mixedAttention = try decodeError(name, base: .int8, keepBF16: attention)
            let bf16 = try decodeError(name, base: .bf16, keepBF16: { _ in false })
            print("DC-AE mixed \(name): int8 \(int8), int8 + bf16 q/k/v \(mixedQKV), int8 + bf16 attention \(mixedAttention), bf16 \(bf16)")
            XCTAssertLessThan(mixedAttention, 0.75, name)
            XCTAssertLessThan(bf16, 2e-2, name)
        }
    }
}
