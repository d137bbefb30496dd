// Fixtures: ${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_gemma.py
// (Tests/Fixtures/gemma: a 3-layer Gemma2Model — sliding window 5 < sequence 14, query_pre_attn_scalar 24 ≠ head_dim
// 16, attn_logit_softcapping 1.5, GQA 4/2 heads, random norms — and transformers' last_hidden_state, eager attention,
// for two right-padded sequences).
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

/// Tensors held in memory (for re-packed weights).
struct GemmaMemorySource: WeightSource {
    let tensors: [String: StoredTensor]
    var tensorNames: Set<String> { Set(tensors.keys) }
    func tensor(_ name: String) throws -> StoredTensor {
        guard let t = tensors[name] else { throw SafetensorsError.missingTensor(name: name) }
        return t
    }

    /// Every matrix of `source` packed as `type`, vectors (norm weights) kept in float32.
    static func repacked(_ source: WeightSource, as type: StorageType) throws -> GemmaMemorySource {
        var out: [String: StoredTensor] = [:]
        for name in source.tensorNames {
            let t = try source.tensor(name)
            out[name] = .pack(name: name, shape: t.shape, values: t.floats(), as: t.shape.count >= 2 ? type : .f32)
        }
        return GemmaMemorySource(tensors: out)
    }
}

/// Rows of `t` [B, L, C] where mask is 1, the others zeroed (the encoder does not compute padded rows).
func gemmaMaskedRows(_ t: Tensor, _ mask: [[Int]]) -> Tensor {
    var out = t
    let l = t.shape[1], c = t.shape[2]
    for b in 0 ..< t.shape[0] { for i in 0 ..< l where mask[b][i] == 0 { for j in 0 ..< c { out.data[(b * l + i) * c + j] = 0 } } }
    return out
}

final class GemmaTests: XCTestCase {
    static let dir = Fixtures.path("gemma")

    func inputs() throws -> (ids: [[Int]], mask: [[Int]], reference: Tensor) {
        let ids = try Fixtures.tensor("gemma/encoder_ids.npy"), mask = try Fixtures.tensor("gemma/encoder_mask.npy")
        let rows = ids.shape[0], l = ids.shape[1]
        let toRows = { (t: Tensor) in (0 ..< rows).map { b in (0 ..< l).map { Int(t.data[b * l + $0]) } } }
        return (toRows(ids), toRows(mask), try Fixtures.tensor("gemma/encoder_out.npy"))
    }

    func testMatchesTransformersIncludingPaddedPositions() throws {
        let model = try Gemma2Model(directory: Self.dir)
        let (ids, mask, reference) = try inputs()
        let out = try model(inputIds: ids, attentionMask: mask, computePadded: true)
        XCTAssertEqual(out.shape, reference.shape)
        let err = relativeMaxError(out, reference)
        print("Gemma2 f32 vs transformers (all positions): \(err)")
        XCTAssertLessThan(err, 1e-4)
    }

    func testValidPositionsOnlyByDefault() throws {
        let model = try Gemma2Model(directory: Self.dir)
        let (ids, mask, reference) = try inputs()
        let out = try model(inputIds: ids, attentionMask: mask)
        XCTAssertLessThan(relativeMaxError(out, gemmaMaskedRows(reference, mask)), 1e-4)
        XCTAssertEqual(out.data, gemmaMaskedRows(out, mask).data, "padded rows are zero")
    }

    func testPrefixCacheGivesSameOutput() throws {
        let model = try Gemma2Model(directory: Self.dir)
        let (ids, mask, _) = try inputs()
        let plain = try model(inputIds: ids, attentionMask: mask)
        // A prefix longer than the sliding window (5), shared by row 0 only; row 1 diverges after <bos>.
        let cache = try model.makePrefixCache(ids: Array(ids[0].prefix(8)))
        let cached = try model(inputIds: ids, attentionMask: mask, prefix: cache)
        XCTAssertLessThan(relativeMaxError(cached, plain), 1e-6)
        // A prefix covering all valid tokens of row 0 and more.
        let long = try model.makePrefixCache(ids: Array(ids[0].prefix(11)) + [7, 8])
        XCTAssertLessThan(relativeMaxError(try model(inputIds: ids, attentionMask: mask, prefix: long), plain), 1e-6)
    }

    func testQuantizedWeightsErrorBounds() throws {
        let source = try SafetensorsDirectory(path: Self.dir)
        let config = try Gemma2Config.load(path: Fixtures.path("gemma/config.json"))
        let (ids, mask, reference) = try inputs()
        let masked = gemmaMaskedRows(reference, mask)
        // Measured (docs/NUMERICS.md "Gemma-2 text encoder"): see the printed figures.
        // The kernels round activations too (bf16 dot products; int8 with one scale per row and 128-column group).
        for (type, bound) in [(StorageType.bf16, Float(2e-2)), (.int8, 6e-2), (.int4, 0.8)] {
            let model = try Gemma2Model(config: config, source: try GemmaMemorySource.repacked(source, as: type))
            let err = relativeMaxError(try model(inputIds: ids, attentionMask: mask), masked)
            print("Gemma2 \(type.name) weights vs transformers f32: \(err)")
            XCTAssertLessThan(err, bound, "\(type.name)")
        }
    }

    func testLegacyConfigAndErrors() throws {
        let legacy = Data((#"{"vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 3,"#
            + #""num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "rope_theta": 500.0,"#
            + #""hidden_act": "gelu_pytorch_tanh", "query_pre_attn_scalar": 4, "sliding_window": 3}"#).utf8)
        let c = try JSONDecoder().decode(Gemma2Config.self, from: legacy)
        XCTAssertEqual(c.layerTypes, ["sliding_attention", "full_attention", "sliding_attention"])
        XCTAssertEqual(c.ropeTheta, 500)
        XCTAssertEqual(c.attnLogitSoftcapping, 50)
        XCTAssertThrowsError(try JSONDecoder().decode(Gemma2Config.self, from: Data(#"{"num_attention_heads": 3, "num_key_value_heads": 2}"#.utf8)))

        let source = try SafetensorsDirectory(path: Self.dir)
        var tensors = try GemmaMemorySource.repacked(source, as: .f32).tensors
        let config = try Gemma2Config.load(path: Fixtures.path("gemma/config.json"))
        tensors["layers.1.mlp.up_proj.weight"] = nil
        XCTAssertThrowsError(try Gemma2Model(config: config, source: GemmaMemorySource(tensors: tensors))) { e in
            XCTAssertEqual(e as? ModelError, .missingTensors(component: "Gemma2", names: ["layers.1.mlp.up_proj.weight"]))
        }
        tensors["layers.1.mlp.up_proj.weight"] = .pack(name: "up", shape: [3, 3], values: [Float](repeating: 0, count: 9), as: .f32)
        let bad = try Gemma2Model(config: config, source: GemmaMemorySource(tensors: tensors))
        let (ids, mask, _) = try inputs()
        XCTAssertThrowsError(try bad(inputIds: ids, attentionMask: mask)) { e in
            XCTAssertEqual(e as? ModelError, .shapeMismatch(tensor: "layers.1.mlp.up_proj.weight", expected: [96, 64], actual: [3, 3]))
        }
        let model = try Gemma2Model(directory: Self.dir)
        XCTAssertThrowsError(try model(inputIds: [[2, 99_999]], attentionMask: [[1, 1]]))
        XCTAssertThrowsError(try model(inputIds: [[2, 5]], attentionMask: [[0, 1]]))
    }
}
