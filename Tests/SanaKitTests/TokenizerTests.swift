// Fixtures: ${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_gemma.py --tokenizer-only
// (Tests/Fixtures/tokenizer: a small BPE in Gemma's tokenizer.json layout and the ids of the `tokenizers` library,
// checked there to equal transformers' GemmaTokenizer).
import Foundation
@testable import SanaKit
import XCTest

final class TokenizerTests: XCTestCase {
    struct Case: Decodable {
        let text: String
        let ids: [Int]
        let ids_no_byte_fallback: [Int]
    }

    struct Batch: Decodable {
        let texts: [String]
        let max_length: Int
        let input_ids: [[Int]]
        let attention_mask: [[Int]]
    }

    struct Cases: Decodable {
        let cases: [Case]
        let batch: Batch
    }

    static let dir = Fixtures.path("tokenizer")

    func loadCases() throws -> Cases {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.path("tokenizer/cases.json")))
        return try JSONDecoder().decode(Cases.self, from: data)
    }

    /// tokenizer.json as a mutable JSON object, for variants.
    func tokenizerObject() throws -> [String: Any] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.path("tokenizer/tokenizer.json")))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testIdsMatchTokenizersLibrary() throws {
        let tok = try GemmaTokenizer(directory: Self.dir)
        for c in try loadCases().cases {
            XCTAssertEqual(tok.encode(c.text), c.ids, "text \(c.text.debugDescription)")
        }
    }

    func testUnknownCharactersFuseWithoutByteFallback() throws {
        var obj = try tokenizerObject()
        var model = try XCTUnwrap(obj["model"] as? [String: Any])
        model["byte_fallback"] = false
        obj["model"] = model
        let tok = try GemmaTokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: obj))
        for c in try loadCases().cases {
            XCTAssertEqual(tok.encode(c.text), c.ids_no_byte_fallback, "text \(c.text.debugDescription)")
        }
    }

    func testMergesAsStringsGiveSameIds() throws {
        var obj = try tokenizerObject()
        var model = try XCTUnwrap(obj["model"] as? [String: Any])
        let pairs = try XCTUnwrap(model["merges"] as? [[String]])
        model["merges"] = pairs.map { $0.joined(separator: " ") }
        obj["model"] = model
        let tok = try GemmaTokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: obj))
        for c in try loadCases().cases { XCTAssertEqual(tok.encode(c.text), c.ids) }
    }

    func testPaddingAndTruncationMatchTransformers() throws {
        let tok = try GemmaTokenizer(directory: Self.dir)
        let b = try loadCases().batch
        let (ids, mask) = try tok.encodePadded(b.texts, maxLength: b.max_length)
        XCTAssertEqual(ids, b.input_ids)
        XCTAssertEqual(mask, b.attention_mask)
        XCTAssertThrowsError(try tok.encodePadded(["x"], maxLength: 0))
    }

    func testBadFilesGiveTypedErrors() throws {
        XCTAssertThrowsError(try GemmaTokenizer(tokenizerJSON: Data("[1]".utf8)))
        XCTAssertThrowsError(try GemmaTokenizer(directory: "/nonexistent")) { e in
            XCTAssertEqual(e as? TokenizerError, .cannotRead(path: "/nonexistent/tokenizer.json"))
        }
        var obj = try tokenizerObject()
        var model = try XCTUnwrap(obj["model"] as? [String: Any])
        model["merges"] = [["no-such-piece", "x"]]
        obj["model"] = model
        XCTAssertThrowsError(try GemmaTokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: obj)))
        obj = try tokenizerObject()
        obj["pre_tokenizer"] = ["type": "ByteLevel"]
        XCTAssertThrowsError(try GemmaTokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: obj))) { e in
            XCTAssertEqual(e as? TokenizerError, .unsupported(component: "pre_tokenizer", reason: "ByteLevel"))
        }
    }

    func testSplitPreTokenizerOfTransformersChangesNothing() throws {
        // transformers' GemmaTokenizer installs Split(" ", merged_with_previous), which runs after the normalizer.
        var obj = try tokenizerObject()
        obj["pre_tokenizer"] = ["type": "Split", "pattern": ["String": " "], "behavior": "MergedWithPrevious", "invert": false]
        let tok = try GemmaTokenizer(tokenizerJSON: try JSONSerialization.data(withJSONObject: obj))
        for c in try loadCases().cases { XCTAssertEqual(tok.encode(c.text), c.ids) }
    }
}
