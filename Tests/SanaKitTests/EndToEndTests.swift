// End to end against diffusers' SanaPipeline (SanaPAGPipeline for the *_pag cases) on the tiny fixture pipelines: the pipeline is converted to a bundle (in
// a temporary directory), opened with SanaPipeline(bundlePath:), and run with the reference's initial latents (or
// seed); the debug taps (--dump) are compared with the reference's prompt embeddings, every step's latents and the
// image. Fixtures: ${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_e2e_refs.py
// (Tests/Fixtures/e2e/: cases.json, <case>_{prompt_embeds,prompt_attention_mask,latents,image}.npy).
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

final class EndToEndTests: XCTestCase {
    struct Case: Decodable {
        let name: String, pipeline: String, prompt: String, negative_prompt: String
        let width: Int, height: Int, steps: Int, guidance_scale: Double, complex_human_instruction: Bool
        let max_sequence_length: Int, latents_given: Bool, seed: UInt64
        /// Perturbed-attention guidance cases only.
        let pag_scale: Double?, pag_adaptive_scale: Double?, pag_layers: [Int]?
    }

    /// Bundles converted once for the class: "<pipeline>-<weights>" → path.
    nonisolated(unsafe) static var bundles: [String: String] = [:]
    nonisolated(unsafe) static var directory: URL?

    override class func tearDown() {
        if let directory { try? FileManager.default.removeItem(at: directory) }
        directory = nil
        bundles = [:]
    }

    static func bundle(_ pipeline: String, _ weights: StorageType = .f32) throws -> String {
        let key = "\(pipeline)-\(weights.name)"
        if let path = bundles[key] { return path }
        let dir = try directory ?? {
            let d = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            directory = d
            return d
        }()
        let path = dir.appendingPathComponent(key + ".sana").path
        _ = try Converter.convert(pipelinePath: Fixtures.path("pipelines/\(pipeline)"), output: path,
                                  options: ConversionOptions(weights: weights, threads: 1))
        bundles[key] = path
        return path
    }

    func cases() throws -> [String: Case] {
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.path("e2e/cases.json")))
        return Dictionary(uniqueKeysWithValues: try JSONDecoder().decode([Case].self, from: data).map { ($0.name, $0) })
    }

    func request(_ c: Case) throws -> GenerationRequest {
        var r = GenerationRequest(prompt: c.prompt)
        r.negativePrompt = c.negative_prompt
        (r.width, r.height, r.steps, r.guidanceScale) = (c.width, c.height, c.steps, c.guidance_scale)
        r.complexHumanInstruction = c.complex_human_instruction
        r.maxSequenceLength = c.max_sequence_length
        r.seed = c.seed
        if let s = c.pag_scale { r.pagScale = s }
        if let s = c.pag_adaptive_scale { r.pagAdaptiveScale = s }
        if let l = c.pag_layers { r.pagLayers = l }
        if c.latents_given {
            let all = try Fixtures.tensor("e2e/\(c.name)_latents.npy")  // [steps + 1, C, h, w]
            let n = all.count / all.shape[0]
            r.latents = Tensor(shape: [1] + Array(all.shape.dropFirst()), data: Array(all.data.prefix(n)))
        }
        return r
    }

    /// What one run produced (read back from its debug taps) against the reference.
    struct Errors {
        var embeds: Float = 0, initial: Float = 0, steps: [Float] = [], image: Float = 0
        var finalRelative: Float = 0
        var maskEqual = false
    }

    func run(_ c: Case, weights: StorageType = .f32, budget: Int? = nil,
             adjust: (inout GenerationRequest) -> Void = { _ in }) throws -> Errors {
        let dump = FileManager.default.temporaryDirectory.appendingPathComponent("e2e-dump-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dump) }
        var pipeline = try SanaPipeline(bundlePath: Self.bundle(c.pipeline, weights), memoryBudget: budget, dumpDirectory: dump)
        pipeline.noiseKernel = .host
        var r = try request(c)
        adjust(&r)
        let result = try pipeline.generate(r)
        func tap(_ name: String) throws -> Tensor {
            let (shape, values) = try Npy.read((dump as NSString).appendingPathComponent(name + ".npy"))
            return Tensor(shape: shape, data: values)
        }
        var e = Errors()
        let refMask = try Fixtures.tensor("e2e/\(c.name)_prompt_attention_mask.npy")
        let mask = try tap("prompt_attention_mask")
        e.maskEqual = mask.shape == refMask.shape && mask.data == refMask.data
        // Padded rows: zero in ours by design (docs/NUMERICS.md "Gemma-2 text encoder"), compared on valid rows.
        var ref = try Fixtures.tensor("e2e/\(c.name)_prompt_embeds.npy")
        let width = ref.shape[2]
        for (row, m) in refMask.data.enumerated() where m == 0 {
            for j in 0 ..< width { ref.data[row * width + j] = 0 }
        }
        let embeds = try tap("prompt_embeds")
        XCTAssertEqual(embeds.shape, ref.shape, c.name)
        if embeds.shape == ref.shape { e.embeds = relativeMaxError(embeds, ref) }
        let latents = try Fixtures.tensor("e2e/\(c.name)_latents.npy")
        let n = latents.count / latents.shape[0], shape = [1] + Array(latents.shape.dropFirst())
        func refLatents(_ i: Int) -> Tensor { Tensor(shape: shape, data: Array(latents.data[i * n ..< (i + 1) * n])) }
        e.initial = maxAbs(try tap("latents_initial"), refLatents(0))
        for i in 0 ..< c.steps { e.steps.append(maxAbs(try tap("latents_\(i)"), refLatents(i + 1))) }
        e.finalRelative = relativeMaxError(result.finalLatents, refLatents(c.steps))
        let image = try Fixtures.tensor("e2e/\(c.name)_image.npy")
        e.image = maxAbs(result.unitImage, image)
        XCTAssertEqual(try tap("image").data, result.unitImage.data, "dumped image = returned image")
        print("e2e \(c.name) \(weights.name): embeds \(e.embeds), initial \(e.initial), steps \(e.steps), final latents rel "
            + "\(e.finalRelative), image \(e.image)")
        return e
    }

    func maxAbs(_ a: Tensor, _ b: Tensor) -> Float {
        guard a.shape == b.shape else { XCTFail("shapes \(a.shape) and \(b.shape)"); return .infinity }
        return zip(a.data, b.data).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }

    func assertMatches(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let c = try XCTUnwrap(try cases()[name])
        let e = try run(c)
        XCTAssertTrue(e.maskEqual, name, file: file, line: line)
        XCTAssertLessThan(e.embeds, 1e-4, name, file: file, line: line)
        XCTAssertLessThan(e.initial, 1e-6, name, file: file, line: line)
        XCTAssertEqual(e.steps.count, c.steps, file: file, line: line)
        for (i, s) in e.steps.enumerated() { XCTAssertLessThan(s, 1e-3, "\(name) step \(i)", file: file, line: line) }
        XCTAssertLessThan(e.image, 1e-3, name, file: file, line: line)
    }

    /// Sana 1.0 layout, DPM-Solver++ flow, interpolate DC-AE; the instruction on, L = 300, non-square.
    func testSana10WithInstruction() throws { try assertMatches("sana10_chi") }

    /// Sana 1.5 layout (qk-norm, FlowMatchEuler, pixel-shuffle DC-AE, f16 sharded transformer); no instruction,
    /// empty negative prompt.
    func testSana15WithoutInstruction() throws { try assertMatches("sana15_plain") }

    /// Guidance 1: no negative prompt, batch 1.
    func testSana15WithoutGuidance() throws { try assertMatches("sana15_no_cfg") }

    /// Initial latents from the seed (torch.Generator("cpu").manual_seed(42)).
    func testSeedGivesTorchLatents() throws { try assertMatches("sana10_seed") }

    /// Perturbed-attention guidance with CFG (batch [negative, positive, perturbed]), applied to block 1.
    /// Without PAG, or with it on another block, the run leaves the reference by far more than the tolerance.
    func testSana10PerturbedAttentionGuidance() throws {
        try assertMatches("sana10_pag")
        let c = try XCTUnwrap(try cases()["sana10_pag"])
        for (label, adjust) in [("no PAG", { (r: inout GenerationRequest) in r.pagScale = 0 }),
                                ("block 0", { (r: inout GenerationRequest) in r.pagLayers = [0] })] {
            let e = try run(c, adjust: adjust)
            XCTAssertGreaterThan(e.steps.max() ?? 0, 1e-2, label)
        }
    }

    /// PAG without CFG (batch [positive, perturbed]), block 0, adaptive scale.
    func testSana10PerturbedAttentionGuidanceWithoutCFG() throws { try assertMatches("sana10_pag_no_cfg") }

    /// Quantized bundles against the float32 reference (figures in docs/NUMERICS.md "End to end").
    func testQuantizedBundlesStayNearReference() throws {
        let c = try XCTUnwrap(try cases()["sana10_chi"])
        // (weights, bound on the image's max-abs error in [0, 1], bound on the final latents' relative error)
        let bounds: [(StorageType, Float, Float)] = [(.bf16, 0.05, 0.02), (.int8, 0.1, 0.05), (.int4, 0.8, 0.4)]
        for (weights, image, latents) in bounds {
            let e = try run(c, weights: weights)
            XCTAssertLessThan(e.image, image, weights.name)
            XCTAssertLessThan(e.finalRelative, latents, weights.name)
            XCTAssertTrue(e.maskEqual, weights.name)
        }
    }

    /// The plan's decisions: two DiT blocks only when they fit; a decoder budget at its minimum tiles, and the tiled
    /// decode equals the full-frame one.
    func testBudgetPlansPrefetchAndTiling() throws {
        let c = try XCTUnwrap(try cases()["sana15_plain"])
        let bundle = try SanaBundle(path: Self.bundle(c.pipeline))
        func plan(_ budget: Int?) throws -> BundleMemoryPlan { try BundleModels(bundle: bundle, memoryBudget: budget, baseline: 0).plan }
        let free = try plan(nil), r = try request(c)
        let (b, h, w, l) = (2, c.height / 4, c.width / 4, c.max_sequence_length)
        let one = free.denoiseBytes(batch: b, latentHeight: h, latentWidth: w, tokens: l, blocks: 1)
        let two = free.denoiseBytes(batch: b, latentHeight: h, latentWidth: w, tokens: l, blocks: 2)
        XCTAssertFalse(try plan(free.total(one.weights, one.activations)).prefetch(batch: b, latentHeight: h, latentWidth: w, tokens: l))
        XCTAssertTrue(try plan(free.total(two.weights, two.activations)).prefetch(batch: b, latentHeight: h, latentWidth: w, tokens: l))

        let v = free.decodeBytes(r)
        XCTAssertLessThan(v.minimum, v.untiled)
        let tight = try plan(free.total(v.weights, v.minimum))
        guard case let .auto(activations) = tight.decoderTiling(latentHeight: h, latentWidth: w) else { return XCTFail("not auto") }
        XCTAssertLessThan(activations, v.untiled - (v.weights - free.decoderWeights))
        let latents = try Fixtures.tensor("e2e/\(c.name)_latents.npy")
        let n = latents.count / latents.shape[0]
        let final = Tensor(shape: [1] + Array(latents.shape.dropFirst()), data: Array(latents.data.suffix(n)))
        let component = try bundle.component("vae")
        let tiled = try BundleDecoder(component: component, config: free.vae, plan: tight).decode(latents: final)
        let whole = try BundleDecoder(component: component, config: free.vae, plan: free).decode(latents: final)
        XCTAssertLessThan(maxAbs(tiled, whole), 1e-4)
    }

    func testTooSmallBudgetIsRefusedNamingStageAndMinimum() throws {
        let c = try XCTUnwrap(try cases()["sana10_chi"])
        let pipeline = try SanaPipeline(bundlePath: Self.bundle(c.pipeline), memoryBudget: 1 << 20)
        XCTAssertThrowsError(try pipeline.validate(try request(c))) { error in
            guard case let GenerationError.memoryBudget(stage, needed, budget, _) = error else {
                return XCTFail("\(error)")
            }
            XCTAssertEqual(stage, .encode)
            XCTAssertGreaterThan(needed, budget)
            XCTAssertTrue("\(error)".contains("needs at least"), "\(error)")
        }
    }

    /// README's "Library" example, on the shipped demo bundle (models/demo-tiny-int8.sana).
    func testReadmeLibraryExample() throws {
        let demo = URL(fileURLWithPath: Fixtures.root).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("models/demo-tiny-int8.sana").path
        let png = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString).png").path
        defer { try? FileManager.default.removeItem(atPath: png) }
        let pipeline = try SanaPipeline(bundlePath: demo, memoryBudget: 2 << 30, threads: 2)
        var request = GenerationRequest(prompt: "a cat on a red chair")
        request.width = 64
        request.height = 32
        request.steps = 2
        request.seed = 7
        var stages: [PipelineStage] = []
        let result = try pipeline.generate(request) { progress in stages.append(progress.stage) }
        try PNGWriter.write(result.image, to: png)
        XCTAssertEqual(result.unitImage.shape, [3, 32, 64])
        XCTAssertEqual(Set(stages), Set(PipelineStage.allCases))
        XCTAssertTrue(FileManager.default.fileExists(atPath: png))
    }
}
