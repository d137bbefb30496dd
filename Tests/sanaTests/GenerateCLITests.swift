import Foundation
import SanaFormat
import XCTest

/// `sana generate` as a user runs it: bad input gives a non-zero exit, a message naming the problem, and no PNG; a
/// real (tiny) bundle gives the image, the summary line and the --dump taps of DESIGN.md.
/// References: `${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_e2e_refs.py` (Tests/Fixtures/e2e/).
final class GenerateCLITests: XCTestCase {
    var dir: URL!
    /// A placeholder file: enough for the checks made before the bundle is opened.
    var bundle: String { dir.appendingPathComponent("model.sana").path }
    var png: String { dir.appendingPathComponent("out.png").path }

    /// The tiny sana10 pipeline converted (f32) with `sana convert`, once for the class.
    nonisolated(unsafe) static var converted: String?
    static func realBundle() throws -> String {
        if let converted, FileManager.default.fileExists(atPath: converted) { return converted }
        let path = NSTemporaryDirectory() + "generate-cli-sana10-\(UUID().uuidString).sana"
        let r = try CLITests.run(["convert", ConvertInspectTests.fixture("sana10"), "--output", path, "--weights", "f32"])
        guard r.status == 0 else { throw XCTSkip("convert failed: \(r.err)") }
        converted = path
        return path
    }

    override class func tearDown() {
        if let converted { try? FileManager.default.removeItem(atPath: converted) }
        converted = nil
    }

    static func e2e(_ name: String) -> String { ConvertInspectTests.root + "/Tests/Fixtures/e2e/" + name }

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("generate-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("placeholder bundle".utf8).write(to: URL(fileURLWithPath: bundle))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Runs `sana generate --model <bundle> --output <png> <args>` and returns the exit status, stdout and stderr.
    func generate(_ args: [String], model: String? = nil) throws -> (status: Int32, out: String, err: String) {
        try CLITests.run(["generate", "--model", model ?? bundle, "--output", png] + args)
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
        try expectFailure(["--prompt", "cat", "--height", "-32"], mentions: "height")
        try expectFailure(["--prompt", "cat", "--steps", "0"], mentions: "steps must be at least 1")
        try expectFailure(["--prompt", "cat", "--guidance-scale", "-1"], mentions: "guidance scale")
        try expectFailure(["--prompt", "cat", "--scheduler", "ddim"], mentions: "unknown scheduler 'ddim'")
        try expectFailure(["--prompt", "cat", "--max-sequence-length", "0"], mentions: "max sequence length")
        try expectFailure(["--prompt", "cat", "--memory-budget", "lots"], mentions: "--memory-budget")
        try expectFailure(["--prompt", "cat", "--threads", "0"], mentions: "--threads")
        try expectFailure(["--prompt", "cat", "--pag-scale=-1"], mentions: "PAG scale must be ≥ 0")
        try expectFailure(["--prompt", "cat", "--pag-adaptive-scale", "nan"], mentions: "PAG adaptive scale")
        try expectFailure(["--prompt", "cat", "--pag-scale", "3", "--pag-layers", "1,x"], mentions: "--pag-layers")
        try expectFailure([], mentions: "--prompt")
        try expectFailure(["--prompt", "cat", "--latents", dir.appendingPathComponent("none.npy").path], mentions: "--latents")
    }

    /// Sizes and latents are checked against the bundle's own autoencoder factor (4 for the tiny sana10).
    func testSizesAreCheckedAgainstTheBundle() throws {
        let model = try Self.realBundle()
        try expectFailure(["--prompt", "cat", "--width", "30"], model: model, mentions: "width 30 is not a multiple of the autoencoder factor 4 (try 32)")
        try expectFailure(["--prompt", "cat", "--width", "32", "--height", "32", "--latents", Self.e2e("sana15_plain_latents.npy")],
                          model: model, mentions: "initial latents have shape [4, 4, 16, 16]")
        try expectFailure(["--prompts-file", try writeFile("size.json", "[{\"prompt\": \"a\", \"width\": 33}]")], model: model,
                          mentions: "width 33 is not a multiple")
        try expectFailure(["--prompt", "cat", "--width", "32", "--height", "32", "--pag-scale", "3", "--pag-layers", "0,2"],
                          model: model, mentions: "PAG layer 2 does not exist: the transformer has 2 blocks")
    }

    func testMissingBundleIsNamed() throws {
        let missing = dir.appendingPathComponent("missing.sana").path
        try expectFailure(["--prompt", "cat"], model: missing, mentions: "missing.sana")
        try expectFailure(["--prompt", "cat"], model: dir.path, mentions: "no such readable bundle file")
    }

    func testCorruptBundleIsNamed() throws {
        try expectFailure(["--prompt", "cat"], mentions: "not a SanaEdge bundle")
        let data = try Data(contentsOf: URL(fileURLWithPath: try Self.realBundle()))
        let truncated = dir.appendingPathComponent("truncated.sana")
        try data.prefix(data.count - 100).write(to: truncated)
        try expectFailure(["--prompt", "cat", "--width", "32", "--height", "32"], model: truncated.path, mentions: "truncated.sana")
        // Damage inside a weight frame: found when the stage reads it; still no image.
        var damaged = data
        damaged[200] ^= 0xFF
        let bad = dir.appendingPathComponent("damaged.sana")
        try damaged.write(to: bad)
        try expectFailure(["--prompt", "cat", "--width", "32", "--height", "32", "--steps", "1"], model: bad.path, mentions: "damaged.sana")
    }

    /// Refused before any work: the message names the stage and the minimum.
    func testTooSmallBudgetIsRefusedUpFront() throws {
        let r = try generate(["--prompt", "cat", "--width", "32", "--height", "32", "--memory-budget", "1MB", "--dump",
                              dir.appendingPathComponent("dump").path], model: try Self.realBundle())
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("memory budget 976.56 KiB is too small: the encode prompt stage needs at least"), r.err)
        XCTAssertTrue(r.err.contains("Raise --memory-budget to at least"), r.err)
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path)
        XCTAssertFalse(left.contains("out.png") || left.contains("dump"), "\(left)")
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
        try expectFailure(["--prompt", "x", "--prompts-file", try writeFile("ok.txt", "a")], mentions: "exactly one of")
    }

    /// One CLI run with the reference's initial latents: the PNG, the summary line, and the --dump taps (names and
    /// shapes of DESIGN.md) equal to diffusers' within the end-to-end tolerances.
    func testGenerateWritesImageSummaryAndDump() throws {
        let dump = dir.appendingPathComponent("dump").path
        let all = try Npy.read(Self.e2e("sana10_chi_latents.npy"))  // [5, 4, 16, 24]
        let n = all.values.count / all.shape[0]
        let initial = dir.appendingPathComponent("initial.npy").path
        try Npy.write(initial, shape: [1] + Array(all.shape.dropFirst()), values: Array(all.values.prefix(n)))
        let r = try generate(["--prompt", "A red fox in the snow, watercolor", "--negative-prompt", "blurry, low quality",
                              "--width", "96", "--height", "64", "--steps", "4", "--latents", initial, "--dump", dump,
                              "--threads", "1", "--memory-budget", "4GiB"], model: try Self.realBundle())
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: png))
        XCTAssertTrue(r.out.contains("96x64") && r.out.contains("dpm-solver × 4") && r.out.contains("peak RSS"), r.out)
        XCTAssertTrue(r.out.contains("encode prompt") && r.out.contains("denoise") && r.out.contains("decode"), r.out)
        func tap(_ name: String) throws -> (shape: [Int], values: [Float]) { try Npy.read(dump + "/" + name + ".npy") }
        XCTAssertEqual(try tap("prompt_embeds").shape, [2, 300, 32])
        XCTAssertEqual(try tap("prompt_attention_mask").shape, [2, 300])
        XCTAssertEqual(try tap("latents_initial").values, Array(all.values.prefix(n)))
        for i in 0 ..< 4 {
            let mine = try tap("latents_\(i)")
            XCTAssertEqual(mine.shape, [1, 4, 16, 24])
            let ref = all.values[(i + 1) * n ..< (i + 2) * n]
            XCTAssertLessThan(zip(mine.values, ref).map { abs($0 - $1) }.max() ?? .infinity, 1e-3, "step \(i)")
        }
        let image = try tap("image"), refImage = try Npy.read(Self.e2e("sana10_chi_image.npy"))
        XCTAssertEqual(image.shape, [3, 64, 96])
        XCTAssertLessThan(zip(image.values, refImage.values).map { abs($0 - $1) }.max() ?? .infinity, 1e-3)
    }

    /// A prompts file: every image written and summarized, the prompts encoded in one pass.
    func testPromptsFileGeneratesEach() throws {
        let file = try writeFile("p.json", """
            [{"prompt": "a red circle", "seed": 1, "width": 32, "height": 32},
             {"prompt": "a blue square", "seed": 2, "width": 64, "height": 32, "steps": 1, "output": "\(dir.appendingPathComponent("sq.png").path)"}]
            """)
        let r = try generate(["--prompts-file", file, "--steps", "2", "--max-sequence-length", "16"], model: try Self.realBundle())
        XCTAssertEqual(r.status, 0, r.err)
        let lines = r.out.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, r.out)
        XCTAssertTrue(r.out.contains("(2 prompts together)"), r.out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("out-001.png").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("sq.png").path))
    }

    /// The demo bundle shipped in models/ (tools/demo.sh) opens and generates with this build.
    func testShippedDemoBundleGenerates() throws {
        let demo = ConvertInspectTests.root + "/models/demo-tiny-int8.sana"
        let r = try generate(["--prompt", "a red circle on the left", "--steps", "2", "--width", "64", "--height", "32",
                              "--seed", "1"], model: demo)
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: png))
        XCTAssertTrue(r.out.contains("64x32, seed 1, dpm-solver × 2"), r.out)
    }
}
