import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

// Fixtures: Tests/Fixtures/dit/<case>/ from diffusers' SanaTransformer2DModel on tiny random configurations.
// Regenerate (from the repository root):
//     ${PYTHON:-/work/main/.venv-ref/bin/python} tools/fixtures/make_dit.py
// Tolerances and measured errors: docs/NUMERICS.md, section "Linear DiT".

/// A WeightSource held in memory (tests edit tensors in and out of it).
struct InMemoryWeightSource: WeightSource, TensorShapeLookup {
    var tensors: [String: StoredTensor]
    var tensorNames: Set<String> { Set(tensors.keys) }

    init(_ base: WeightSource) throws {
        tensors = [:]
        for name in base.tensorNames { tensors[name] = try base.tensor(name) }
    }

    func tensor(_ name: String) throws -> StoredTensor {
        guard let t = tensors[name] else { throw SafetensorsError.missingTensor(name: name) }
        return t
    }

    func shape(of name: String) -> [Int]? { tensors[name]?.shape }
}

/// Hides TensorShapeLookup so shapes are only checked when a tensor is read.
struct OpaqueWeightSource: WeightSource {
    let base: WeightSource
    var tensorNames: Set<String> { base.tensorNames }
    func tensor(_ name: String) throws -> StoredTensor { try base.tensor(name) }
}

final class SanaTransformerTests: XCTestCase {
    static let cases = ["sana10", "sana15_qknorm", "posembed_patch2", "sprint_guidance"]

    struct Case {
        let model: SanaTransformer2DModel
        let hidden: Tensor, timestep: [Float], text: Tensor, mask: Tensor, guidance: [Float]?, expected: Tensor
    }

    static func directory(_ name: String) -> String { Fixtures.path("dit/\(name)") }

    static func load(_ name: String, storage: StorageType = .f32,
                     loader: SanaTransformerBlockLoader = SequentialBlockLoader()) throws -> Case {
        let dir = directory(name)
        let config = try SanaTransformerConfig.load(path: dir + "/config.json")
        let file: WeightSource = try SafetensorsDirectory(path: dir)
        let source: WeightSource = storage == .f32 ? file : QuantizedWeightSource(file, as: storage)
        let model = try SanaTransformer2DModel(source: source, config: config, blockLoader: loader)
        let guidancePath = "dit/\(name)/guidance.npy"
        let guidance = FileManager.default.fileExists(atPath: Fixtures.path(guidancePath))
            ? try Fixtures.tensor(guidancePath).data : nil
        return Case(model: model, hidden: try Fixtures.tensor("dit/\(name)/hidden_states.npy"),
                    timestep: try Fixtures.tensor("dit/\(name)/timestep.npy").data,
                    text: try Fixtures.tensor("dit/\(name)/encoder_hidden_states.npy"),
                    mask: try Fixtures.tensor("dit/\(name)/encoder_attention_mask.npy"), guidance: guidance,
                    expected: try Fixtures.tensor("dit/\(name)/output.npy"))
    }

    static func run(_ c: Case) throws -> Tensor {
        try c.model(hiddenStates: c.hidden, timestep: c.timestep, encoderHiddenStates: c.text,
                    encoderAttentionMask: c.mask, guidance: c.guidance)
    }

    /// Relative max error of one fixture case in one storage type.
    static func error(_ name: String, _ storage: StorageType) throws -> Float {
        let c = try load(name, storage: storage)
        let out = try run(c)
        XCTAssertEqual(out.shape, c.expected.shape, name)
        XCTAssertTrue(out.data.allSatisfy(\.isFinite), "\(name): non-finite output")
        let e = relativeMaxError(out, c.expected)
        print("DiT \(storage.name) \(name): relative max error \(e)")
        return e
    }

    // MARK: agreement with diffusers

    func testSana10MatchesReference() throws {
        // Sana 1.0: no position embedding, batch 2 with different timesteps, padded caption mask.
        XCTAssertLessThan(try Self.error("sana10", .f32), 1e-4)
    }

    func testSana15QKNormNonSquareMatchesReference() throws {
        XCTAssertLessThan(try Self.error("sana15_qknorm", .f32), 1e-4)
    }

    func testPositionEmbeddingPatch2MatchesReference() throws {
        XCTAssertLessThan(try Self.error("posembed_patch2", .f32), 1e-4)
    }

    func testSprintGuidanceMatchesReference() throws {
        XCTAssertLessThan(try Self.error("sprint_guidance", .f32), 1e-4)
    }

    /// int8 / int4 weights (linear and dense-conv weights re-packed): errors measured and bounded.
    func testQuantizedErrorsAreBounded() throws {
        // bf16 and int8 include activation rounding in the kernels (bf16 dot products, int8 per-group activations):
        // see docs/NUMERICS.md "Linear DiT" for the measured figures these bounds sit above.
        let bounds: [StorageType: Float] = [.f16: 2e-3, .bf16: 3.5e-2, .int8: 6e-2, .int4: 0.5]
        for storage in [StorageType.f16, .bf16, .int8, .int4] {
            var worst: Float = 0
            for name in Self.cases {
                worst = max(worst, try Self.error(name, storage))
            }
            print("DiT \(storage.name): worst \(worst)")
            XCTAssertLessThan(worst, bounds[storage] ?? 0, storage.name)
        }
    }

    func testPrefetchingLoaderMatchesSequential() throws {
        let seq = try Self.run(try Self.load("sana15_qknorm"))
        let pre = try Self.run(try Self.load("sana15_qknorm", loader: PrefetchingBlockLoader()))
        XCTAssertEqual(seq.data, pre.data)
    }

    /// The CFG pair runs as one batch: each batch row equals that row run alone.
    func testBatchRowsAreIndependent() throws {
        let c = try Self.load("sana10")
        let both = try Self.run(c)
        for row in 0 ..< 2 {
            func slice(_ t: Tensor) -> Tensor {
                let n = t.count / t.shape[0]
                return Tensor(shape: [1] + t.shape.dropFirst(), data: Array(t.data[row * n ..< (row + 1) * n]))
            }
            let one = try c.model(hiddenStates: slice(c.hidden), timestep: [c.timestep[row]],
                                  encoderHiddenStates: slice(c.text), encoderAttentionMask: slice(c.mask))
            XCTAssertLessThan(relativeMaxError(one, slice(both)), 1e-5)
        }
    }

    // MARK: strict loading and bad input

    /// Builds the sana10 model from an edited copy of its weights and checks the error.
    func expectLoadError(_ expected: ModelError, edit: (inout InMemoryWeightSource) -> Void) throws {
        var source = try InMemoryWeightSource(SafetensorsDirectory(path: Self.directory("sana10")))
        let config = try SanaTransformerConfig.load(path: Self.directory("sana10") + "/config.json")
        edit(&source)
        XCTAssertThrowsError(try SanaTransformer2DModel(source: source, config: config)) { error in
            XCTAssertEqual(error as? ModelError, expected)
        }
    }

    func testMissingTensorIsNamed() throws {
        let name = "transformer_blocks.1.attn2.to_k.bias"
        try expectLoadError(.missingTensors(component: "SanaTransformer2DModel", names: [name])) { $0.tensors[name] = nil }
    }

    func testUnexpectedTensorIsNamed() throws {
        let name = "transformer_blocks.2.scale_shift_table"  // sana10 has two blocks
        try expectLoadError(.unexpectedTensors(component: "SanaTransformer2DModel", names: [name])) {
            $0.tensors[name] = .pack(name: name, shape: [6, 16], values: .init(repeating: 0, count: 96), as: .f32)
        }
    }

    func testMisShapedTensorIsNamed() throws {
        let name = "transformer_blocks.1.ff.conv_point.weight"
        let misShaped = StoredTensor.pack(name: name, shape: [16, 39, 1, 1], values: .init(repeating: 0.5, count: 16 * 39), as: .f32)
        let expected = ModelError.shapeMismatch(tensor: name, expected: [16, 40, 1, 1], actual: [16, 39, 1, 1])
        // A source that knows shapes: caught when the model is built.
        try expectLoadError(expected) { $0.tensors[name] = misShaped }
        var source = try InMemoryWeightSource(SafetensorsDirectory(path: Self.directory("sana10")))
        source.tensors[name] = misShaped
        // One that does not: caught when the streamed block is read, before it runs.
        let c = try Self.load("sana10")
        let model = try SanaTransformer2DModel(source: OpaqueWeightSource(base: source), config: c.model.config)
        XCTAssertThrowsError(try model(hiddenStates: c.hidden, timestep: c.timestep, encoderHiddenStates: c.text,
                                       encoderAttentionMask: c.mask)) { error in
            XCTAssertEqual(error as? ModelError, expected)
        }
    }

    func testBadInputsAreTypedErrors() throws {
        let c = try Self.load("sprint_guidance")
        func expectBadInput(_ body: () throws -> Tensor) {
            XCTAssertThrowsError(try body()) { error in
                guard case .badInput = error as? ModelError else { return XCTFail("\(error)") }
            }
        }
        expectBadInput { try c.model(hiddenStates: c.hidden, timestep: c.timestep, encoderHiddenStates: c.text) }  // no guidance
        expectBadInput { try c.model(hiddenStates: c.hidden, timestep: [1], encoderHiddenStates: c.text, guidance: c.guidance) }
        expectBadInput { try c.model(hiddenStates: c.text, timestep: c.timestep, encoderHiddenStates: c.text, guidance: c.guidance) }
        expectBadInput {
            try c.model(hiddenStates: c.hidden, timestep: c.timestep, encoderHiddenStates: c.text,
                        encoderAttentionMask: Tensor(zeros: [2, 1]), guidance: c.guidance)
        }
        let p2 = try Self.load("posembed_patch2")  // patch 2: odd latent sizes are refused
        expectBadInput {
            try p2.model(hiddenStates: Tensor(zeros: [1, 4, 7, 6]), timestep: p2.timestep, encoderHiddenStates: p2.text)
        }
    }

    // MARK: config

    func testConfigDefaultsAndValidation() throws {
        let d = try JSONDecoder().decode(SanaTransformerConfig.self, from: Data("{}".utf8))
        XCTAssertEqual(d, SanaTransformerConfig())
        XCTAssertEqual(d.innerDim, 2240)
        XCTAssertEqual(d.feedForwardHidden, 5600)
        XCTAssertNoThrow(try d.validate())
        let nullOut = try JSONDecoder().decode(SanaTransformerConfig.self, from: Data(#"{"in_channels": 8, "out_channels": null}"#.utf8))
        XCTAssertEqual(nullOut.resolvedOutChannels, 8)

        for bad in [#"{"qk_norm": "layer_norm"}"#, #"{"cross_attention_dim": 1024}"#, #"{"num_cross_attention_heads": null}"#,
                    #"{"patch_size": 0}"#, #"{"interpolation_scale": 1.0, "num_attention_heads": 3, "attention_head_dim": 2, "cross_attention_dim": 6}"#] {
            let config = try JSONDecoder().decode(SanaTransformerConfig.self, from: Data(bad.utf8))
            XCTAssertThrowsError(try config.validate(), bad) { error in
                guard case .unsupportedConfig = error as? ModelError else { return XCTFail("\(bad): \(error)") }
            }
        }
    }

    /// Every released configuration (models/configs/dit_*.json, from tools/fixtures/make_dit_configs.py) decodes,
    /// validates, and its expected tensor list has exactly diffusers' parameter count.
    func testReleasedConfigsLoadWithDiffusersParameterCounts() throws {
        let dir = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("models/configs")
        let counts = try JSONDecoder().decode([String: Int].self,
                                              from: Data(contentsOf: dir.appendingPathComponent("dit_parameter_counts.json")))
        XCTAssertEqual(counts.count, 10)
        for (name, count) in counts {
            let config = try SanaTransformerConfig.load(path: dir.appendingPathComponent("dit_\(name).json").path)
            let params = SanaTransformer2DModel.expectedTensors(config).reduce(0) { $0 + $1.shape.reduce(1, *) }
            XCTAssertEqual(params, count, name)
        }
    }

    // MARK: attention cores

    func testLinearAttentionMatchesDirectFormulaAndNeverDividesByZero() {
        let (b, n, h, d) = (2, 5, 3, 4)
        func values(_ seed: Int) -> [Float] { (0 ..< b * n * h * d).map { Float(sin(Double($0 * 7 + seed))) } }
        let q = Tensor(shape: [b, n, h, d], data: values(1)), k = Tensor(shape: [b, n, h, d], data: values(2))
        let v = Tensor(shape: [b, n, h, d], data: values(3))
        let out = reluLinearAttention(query: q, key: k, value: v, heads: h)
        XCTAssertEqual(out.shape, [b, n, h, d])
        for bi in 0 ..< b { for i in 0 ..< n { for hh in 0 ..< h {
            var num = [Float](repeating: 0, count: d), den: Float = 0
            for m in 0 ..< n {
                var w: Float = 0
                for j in 0 ..< d { w += max(q.data[((bi * n + i) * h + hh) * d + j], 0) * max(k.data[((bi * n + m) * h + hh) * d + j], 0) }
                den += w
                for e in 0 ..< d { num[e] += w * v.data[((bi * n + m) * h + hh) * d + e] }
            }
            for e in 0 ..< d { XCTAssertEqual(out.data[((bi * n + i) * h + hh) * d + e], num[e] / (den + 1e-15), accuracy: 1e-5) }
        } } }
        // relu(q) = 0 everywhere: 0 / (0 + eps) = 0, not NaN.
        let zero = reluLinearAttention(query: q.scaled(0).addingChannels([-1, -1, -1, -1]), key: k, value: v, heads: h)
        XCTAssertTrue(zero.data.allSatisfy { $0 == 0 })
    }

    func testCrossAttentionFullyMaskedRowIsFinite() {
        let q = Tensor(shape: [1, 3, 8], data: (0 ..< 24).map { Float($0) * 0.1 })
        let kv = Tensor(shape: [1, 4, 8], data: (0 ..< 32).map { Float($0 % 5) })
        let bias = Tensor(shape: [1, 4], data: [-10000, -10000, -10000, -10000])
        let out = scaledDotProductAttention(query: q, key: kv, value: kv, heads: 2, keyBias: bias)
        XCTAssertTrue(out.data.allSatisfy(\.isFinite))
    }
}
