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

    /// AutoencoderDC.mixedDecoderSource: the ResBlock stages' matrix weights as int8, other matrix weights bf16,
    /// depthwise kernels / norms / biases untouched; the decode stays within the all-int8 bound.
    func testMixedDecoderSourceTypes() throws {
        let dir = Fixtures.path("dcae/interpolate_evit")
        let config = try AutoencoderDCConfig.load(path: dir + "/config.json")
        let file = try SafetensorsFile(path: dir + "/weights.safetensors")
        XCTAssertEqual(AutoencoderDC.resBlockStagePrefixes(config), ["decoder.up_blocks.0."])
        let source = try AutoencoderDC.mixedDecoderSource(file, config: config, mix: .resBlockStages)
        for name in source.tensorNames where name.hasPrefix("decoder.") {
            let t = try source.tensor(name)
            let expected: StorageType = !QuantizedWeightSource.matrixWeights(name, t.shape) ? try file.tensor(name).type
                : name.hasPrefix("decoder.up_blocks.0.") ? .int8 : .bf16
            XCTAssertEqual(t.type, expected, name)
        }
        let ae = try AutoencoderDC(config: config, source: source, parts: .decoder)
        let error = relativeMaxError(try ae.decode(try Fixtures.tensor("dcae/interpolate_evit/decoder_input.npy")),
                                     try Fixtures.tensor("dcae/interpolate_evit/decoder_output.npy"))
        print("DC-AE mixed (int8 ResBlock stages, bf16 elsewhere) interpolate_evit: \(error)")
        XCTAssertLessThan(error, 3e-2)
    }

    /// A k×k convolution whose input channels fill whole groups: int8/int4 weights packed tap-major (as the converter
    /// and QuantizedWeightSource do) through Tensor.conv2d against the f32 convolution, with stride, padding and the
    /// fused nearest upsample; and the same weights packed in the reference order for comparison.
    func testTapMajorConvolutionLayer() throws {
        var state: UInt64 = 11
        func normal(_ n: Int) -> [Float] {
            (0 ..< n).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 577
            }
        }
        let (cin, cout) = (128, 24)
        let x = Tensor(shape: [2, 7, 5, cin], data: normal(2 * 7 * 5 * cin))
        let shape = [cout, cin, 3, 3], values = normal(cout * cin * 9).map { $0 * 0.05 }
        let f32 = Linear(weight: StoredTensor.pack(name: "w", shape: shape, values: values, as: .f32), bias: normal(cout))
        for type in [StorageType.int8, .int4] {
            XCTAssertEqual(QuantizationPolicy.layout(shape: shape, type: type), .tapMajor)
            let tap = Linear(weight: StoredTensor.pack(name: "w", shape: shape, values: values, as: type, layout: .tapMajor), bias: f32.bias)
            let ref = Linear(weight: StoredTensor.pack(name: "w", shape: shape, values: values, as: type), bias: f32.bias)
            for (stride, upsample) in [(1, 1), (2, 1), (1, 2)] {
                let want = x.conv2d(f32, kernel: 3, padding: 1, stride: stride, upsample: upsample)
                let eTap = relativeMaxError(x.conv2d(tap, kernel: 3, padding: 1, stride: stride, upsample: upsample), want)
                let eRef = relativeMaxError(x.conv2d(ref, kernel: 3, padding: 1, stride: stride, upsample: upsample), want)
                print("tap-major \(type.name) conv stride \(stride) upsample \(upsample): \(eTap) (reference order: \(eRef))")
                XCTAssertLessThan(eTap, type == .int8 ? 2e-2 : 0.2)
            }
        }
    }
}
