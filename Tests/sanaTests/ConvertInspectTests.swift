import Foundation
import XCTest

/// `sana convert` and `sana inspect` as a user runs them, on the committed tiny pipelines
/// (`${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_tiny_pipeline.py`).
final class ConvertInspectTests: XCTestCase {
    var dir = ""
    let cli = CLITests.self

    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }
    static func fixture(_ name: String) -> String { root + "/Tests/Fixtures/pipelines/" + name }

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sana-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func testConvertEveryStorageTypeThenVerify() throws {
        for fixture in ["sana10", "sana15"] {
            for w in ["f32", "f16", "bf16", "int8", "int4"] {
                let out = dir + "/\(fixture)-\(w).sana"
                let c = try cli.run(["convert", Self.fixture(fixture), "--output", out, "--weights", w])
                XCTAssertEqual(c.status, 0, "\(fixture) \(w): \(c.err)")
                XCTAssertTrue(c.out.contains("weights \(w)"), c.out)
                XCTAssertTrue(c.err.isEmpty, "progress must stay off when stderr is not a terminal: \(c.err)")
                let i = try cli.run(["inspect", out, "--verify"])
                XCTAssertEqual(i.status, 0, i.err)
                XCTAssertTrue(i.out.contains("verify: OK"), i.out)
                XCTAssertTrue(i.out.contains("SanaTransformer2DModel"), i.out)
                XCTAssertTrue(i.out.contains("quantization policy: weights \(w)"), i.out)
            }
        }
    }

    func testInspectJSON() throws {
        let out = dir + "/b.sana"
        XCTAssertEqual(try cli.run(["convert", Self.fixture("sana15"), "-o", out, "--weights", "int4"]).status, 0)
        let r = try cli.run(["inspect", out, "--json", "--verify"])
        XCTAssertEqual(r.status, 0, r.err)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any])
        XCTAssertEqual(obj["scheduler"] as? String, "FlowMatchEulerDiscreteScheduler")
        XCTAssertEqual((obj["policy"] as? [String: Any])?["weights"] as? String, "int4")
        XCTAssertNotNil((obj["storage"] as? [String: Any])?["int4"])
        XCTAssertGreaterThan(obj["compression_ratio"] as? Double ?? 0, 1)
        XCTAssertNotNil(obj["verified"])
    }

    func testPrefixCacheStoredUnlessDisabled() throws {
        let with = dir + "/with.sana", without = dir + "/without.sana"
        let c = try cli.run(["convert", Self.fixture("sana10"), "-o", with, "--weights", "int8"])
        XCTAssertEqual(c.status, 0, c.err)
        XCTAssertTrue(c.out.contains("text_encoder_prefix_cache: 5 tensors"), c.out)
        XCTAssertEqual(try cli.run(["convert", Self.fixture("sana10"), "-o", without, "--weights", "int8", "--no-prefix-cache"]).status, 0)
        let i = try cli.run(["inspect", with, "--verify"])
        XCTAssertEqual(i.status, 0, i.err)
        XCTAssertTrue(i.out.contains("prefix cache  466 tokens of the instruction"), i.out)
        XCTAssertFalse(try cli.run(["inspect", without]).out.contains("prefix cache"))
        let j = try cli.run(["inspect", with, "--json"])
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        let cache = try XCTUnwrap(obj["prefix_cache"] as? [String: Any])
        XCTAssertEqual(cache["tokens"] as? Int, 466)
        XCTAssertEqual(cache["bytes"] as? Int, 4 * 466 * (2 * 2 * 32 + 32))  // 2 layers × (keys + values) + outputs
    }

    func testDamagedBundlesFailWithoutCrashing() throws {
        let good = dir + "/good.sana"
        XCTAssertEqual(try cli.run(["convert", Self.fixture("sana10"), "-o", good, "--weights", "int8"]).status, 0)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        let cases: [(String, [UInt8], String)] = [
            ("truncated", Array(bytes.prefix(bytes.count / 2)), "truncated"),
            ("foreign", Array("GGUF\u{3}\u{0}\u{0}\u{0} definitely not a sana bundle, padded to 64 bytes.......".utf8), "not a SanaEdge bundle"),
            ("empty", [], "truncated"),
        ]
        bytes[bytes.count / 3] ^= 0x40  // inside the data section
        for (name, content, message) in cases + [("flipped", bytes, "checksum mismatch")] {
            let path = dir + "/\(name).sana"
            try Data(content).write(to: URL(fileURLWithPath: path))
            let r = try cli.run(["inspect", path, "--verify"])
            XCTAssertNotEqual(r.status, 0, name)
            XCTAssertTrue(r.err.contains(message), "\(name): \(r.err)")
            XCTAssertFalse(r.err.contains("Fatal error"), name)
        }
        XCTAssertNotEqual(try cli.run(["inspect", dir + "/nonexistent.sana"]).status, 0)
    }

    func testFailedConversionLeavesNoFile() throws {
        let pipe = dir + "/pipe"
        try FileManager.default.copyItem(atPath: Self.fixture("sana10"), toPath: pipe)
        let cfg = pipe + "/transformer/config.json"
        try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: "\"num_layers\": 2", with: "\"num_layers\": 3")
            .write(toFile: cfg, atomically: true, encoding: .utf8)
        let out = dir + "/out.sana"
        let r = try cli.run(["convert", pipe, "-o", out, "--weights", "int8"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("transformer_blocks.2.attn1.to_q.weight"), r.err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["pipe"])

        let bad = try cli.run(["convert", Self.fixture("sana10"), "-o", out, "--weights", "int3"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }
}
