// Fixtures: ${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_gemma.py
// (Tests/Fixtures/gemma/prompt_*: diffusers SanaPipeline.encode_prompt with the tiny Gemma-2 and tokenizer,
// max_sequence_length 24, with the default complex human instruction ("chi") and without ("plain")).
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

final class PromptEncoderTests: XCTestCase {
    struct Run: Decodable {
        let prompt: String
        let negative_prompt: String
        let instruction: Bool
    }

    struct Meta: Decodable {
        let max_sequence_length: Int
        let runs: [String: Run]
    }

    func meta() throws -> Meta {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.path("gemma/prompt_cases.json")))
        return try JSONDecoder().decode(Meta.self, from: data)
    }

    func makeEncoder(instruction: Bool, msl: Int) throws -> SanaPromptEncoder {
        try SanaPromptEncoder(tokenizer: GemmaTokenizer(directory: Fixtures.path("tokenizer")),
                              encoder: Gemma2Model(directory: Fixtures.path("gemma")), maxSequenceLength: msl,
                              instruction: instruction ? SanaPromptEncoder.defaultComplexHumanInstruction : nil)
    }

    /// Reference embeddings with padded rows zeroed (the encoder does not compute them; see docs/NUMERICS.md).
    func reference(_ name: String) throws -> (embeds: Tensor, mask: [[Int]]) {
        let t = try Fixtures.tensor("gemma/\(name)_embeds.npy")
        let m = try Fixtures.tensor("gemma/\(name)_mask.npy")
        let l = t.shape[1]
        let mask = (0 ..< t.shape[0]).map { b in (0 ..< l).map { Int(m.data[b * l + $0]) } }
        return (gemmaMaskedRows(t, mask), mask)
    }

    func testMatchesDiffusersEncodePrompt() throws {
        let meta = try meta()
        for (name, run) in meta.runs.sorted(by: { $0.key < $1.key }) {
            let enc = try makeEncoder(instruction: run.instruction, msl: meta.max_sequence_length)
            let (pos, neg) = try enc.encode(prompts: [run.prompt], negativePrompts: [run.negative_prompt])
            let refPos = try reference("prompt_\(name)"), refNeg = try reference("prompt_\(name)_neg")
            XCTAssertEqual(pos.mask, refPos.mask, name)
            XCTAssertEqual(neg.mask, refNeg.mask, name)
            let ep = relativeMaxError(pos.embeds, refPos.embeds), en = relativeMaxError(neg.embeds, refNeg.embeds)
            print("prompt path \(name): positive \(ep), negative \(en)")
            XCTAssertLessThan(ep, 1e-4, name)
            XCTAssertLessThan(en, 1e-4, name)
        }
    }

    func testInstructionCacheGivesSameOutput() throws {
        let enc = try makeEncoder(instruction: true, msl: 24)
        let prompts = ["a red fox", "user prompt: x", ""]
        let cached = try enc.encode(prompts: prompts, negativePrompts: [""])
        let cache = try XCTUnwrap(enc.prefixCache())
        XCTAssertEqual(cache.ids, enc.tokenizer.encode(try XCTUnwrap(enc.instructionText)))
        let full = try enc.encode(prompts: prompts, negativePrompts: [""], useCache: false)
        XCTAssertEqual(cached.positive.mask, full.positive.mask)
        XCTAssertLessThan(relativeMaxError(cached.positive.embeds, full.positive.embeds), 1e-6)
        // Not bit-identical: the batched matrix products round differently with a different number of rows.
        XCTAssertLessThan(relativeMaxError(cached.negative.embeds, full.negative.embeds), 1e-6)
    }

    func testInstructionConstantMatchesModelsFile() throws {
        let path = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("models/complex_human_instruction.txt").path
        let text = try String(contentsOfFile: path, encoding: .utf8)
        XCTAssertEqual(text, SanaPromptEncoder.defaultComplexHumanInstruction.joined(separator: "\n") + "\n")
    }

    func testPreprocessIsLowerStrip() {
        XCTAssertEqual(SanaPromptEncoder.preprocess("  A Cat\tON A Mat \n"), "a cat\ton a mat")
        XCTAssertEqual(SanaPromptEncoder.preprocess(" \u{1F}\u{3000}"), "")
        XCTAssertEqual(SanaPromptEncoder.preprocess("ÀÉ"), "àé")
    }
}
