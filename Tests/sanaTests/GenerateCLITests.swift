import Foundation
import XCTest

/// `sana generate` on bad input: non-zero exit, a message naming the problem, and no PNG written.
final class GenerateCLITests: XCTestCase {
    var dir: URL!
    var bundle: String { dir.appendingPathComponent("model.sana").path }
    var png: String { dir.appendingPathComponent("out.png").path }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("generate-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("placeholder bundle".utf8).write(to: URL(fileURLWithPath: bundle))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Runs `sana generate --model <bundle> --output <png> <args>` and returns the exit status and stderr.
    func generate(_ args: [String], model: String? = nil) throws -> (status: Int32, err: String) {
        let p = Process()
        p.executableURL = CLITests.sanaURL
        p.arguments = ["generate", "--model", model ?? bundle, "--output", png] + args
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: e, as: UTF8.self))
    }

    func expectFailure(_ args: [String], model: String? = nil, mentions words: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try generate(args, model: model)
        XCTAssertNotEqual(r.status, 0, "\(args) succeeded", file: file, line: line)
        XCTAssertTrue(r.err.contains(words), "\(args): '\(r.err)' lacks '\(words)'", file: file, line: line)
        let pngs = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".png") || $0.hasSuffix(".tmp") }
        XCTAssertEqual(pngs, [], "\(args) left \(pngs)", file: file, line: line)
    }

    func writeFile(_ name: String, _ text: String) throws -> String {
        let path = dir.appendingPathComponent(name).path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testBadSettingsAreNamed() throws {
        try expectFailure(["--prompt", "cat", "--width", "1000"], mentions: "width 1000 is not a multiple of the autoencoder factor 32")
        try expectFailure(["--prompt", "cat", "--height", "-32"], mentions: "height")
        try expectFailure(["--prompt", "cat", "--steps", "0"], mentions: "steps must be at least 1")
        try expectFailure(["--prompt", "cat", "--guidance-scale", "-1"], mentions: "guidance scale")
        try expectFailure(["--prompt", "cat", "--scheduler", "ddim"], mentions: "unknown scheduler 'ddim'")
        try expectFailure(["--prompt", "cat", "--max-sequence-length", "0"], mentions: "max sequence length")
        try expectFailure(["--prompt", "cat", "--memory-budget", "lots"], mentions: "--memory-budget")
        try expectFailure(["--prompt", "cat", "--threads", "0"], mentions: "--threads")
        try expectFailure(["--prompt", "cat", "--pag-scale", "3"], mentions: "not implemented")
        try expectFailure([], mentions: "--prompt")
        try expectFailure(["--prompt", "cat", "--latents", dir.appendingPathComponent("none.npy").path], mentions: "--latents")
    }

    func testMissingBundleIsNamed() throws {
        let missing = dir.appendingPathComponent("missing.sana").path
        try expectFailure(["--prompt", "cat"], model: missing, mentions: "missing.sana")
        try expectFailure(["--prompt", "cat"], model: dir.path, mentions: "no such readable bundle file")
    }

    func testBadPromptsFilesAreNamed() throws {
        try expectFailure(["--prompts-file", dir.appendingPathComponent("none.txt").path], mentions: "cannot read")
        try expectFailure(["--prompts-file", try writeFile("p.csv", "a")], mentions: ".txt or .json")
        try expectFailure(["--prompts-file", try writeFile("empty.txt", "\n  \n")], mentions: "no prompts")
        try expectFailure(["--prompts-file", try writeFile("obj.json", "{\"prompt\": \"a\"}")], mentions: "JSON list")
        try expectFailure(["--prompts-file", try writeFile("noprompt.json", "[{\"steps\": 4}]")], mentions: "item 1: \"prompt\" must be a string")
        try expectFailure(["--prompts-file", try writeFile("key.json", "[{\"prompt\": \"a\"}, {\"prompt\": \"b\", \"stepz\": 4}]")],
                          mentions: "item 2: unknown key 'stepz'")
        try expectFailure(["--prompts-file", try writeFile("type.json", "[{\"prompt\": \"a\", \"steps\": \"many\"}]")],
                          mentions: "\"steps\" must be an integer")
        try expectFailure(["--prompts-file", try writeFile("size.json", "[{\"prompt\": \"a\", \"width\": 100}]")],
                          mentions: "width 100 is not a multiple")
        try expectFailure(["--prompt", "x", "--prompts-file", try writeFile("ok.txt", "a")], mentions: "exactly one of")
    }

    /// Valid input gets as far as loading the model and stops with a clear message, writing nothing.
    func testValidInputStopsAtMissingComponents() throws {
        try expectFailure(["--prompt", "a cat", "--width", "512", "--height", "768", "--steps", "3", "--seed", "7",
                           "--scheduler", "euler", "--memory-budget", "2GiB", "--threads", "2", "--no-chi"],
                          mentions: "model components not yet available")
        try expectFailure(["--prompts-file", try writeFile("ok.json", "[{\"prompt\": \"a\", \"seed\": 3, \"guidance_scale\": 1}]")],
                          mentions: "model components not yet available")
    }
}
