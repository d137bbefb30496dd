import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

/// The sampling loop against diffusers' real SanaPipeline.__call__ and schedulers, run with the same tiny stand-in
/// modules. Fixtures: `${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_pipeline_refs.py loop`
/// (Tests/Fixtures/pipeline_loop/: cases.json, <case>_scheduler_config.json,
/// <case>_{embeds,mask,W,P,bias,tw,V,c,latents,image}.npy).
final class PipelineLoopTests: XCTestCase {
    struct Case: Decodable {
        let name: String, scheduler: String, steps: Int, guidance: Double, out_channels: Int, seed: UInt64
        let latents_given: Bool, scaling_factor: Double
    }

    static let (latentC, latentH, latentW, factor) = (4, 2, 3, 32)

    /// Returns the recorded negative and positive embeddings.
    struct FakeEncoder: TextEncoding {
        let embeds: Tensor, mask: Tensor  // [2, L, D], [2, L]: negative first
        func encode(prompts: [String], negativePrompts: [String]?, maxSequenceLength: Int, complexHumanInstruction: Bool)
            throws -> (positive: PromptEmbeddings, negative: PromptEmbeddings?) {
            let l = embeds.shape[1], d = embeds.shape[2]
            func row(_ t: Tensor, _ b: Int, _ shape: [Int]) -> Tensor {
                let n = t.count / 2
                return Tensor(shape: shape, data: Array(t.data[b * n ..< (b + 1) * n]))
            }
            let pos = PromptEmbeddings(embeds: row(embeds, 1, [1, l, d]), mask: row(mask, 1, [1, l]))
            let neg = PromptEmbeddings(embeds: row(embeds, 0, [1, l, d]), mask: row(mask, 0, [1, l]))
            return (pos, negativePrompts == nil ? nil : neg)
        }
    }

    /// out[b, o] = W·x[b] + P·pooled(text[b]) + bias + tw·timestep[b]/1000 at every pixel.
    struct FakeTransformer: DenoisingModel {
        let W: Tensor, P: Tensor, bias: Tensor, tw: Tensor
        func forward(latents: Tensor, timestep: [Float], encoderHiddenStates: Tensor, encoderMask: Tensor) throws -> Tensor {
            let (b, c, h, w) = (latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3])
            let o = W.shape[0], l = encoderHiddenStates.shape[1], d = encoderHiddenStates.shape[2]
            var out = [Float](repeating: 0, count: b * o * h * w)
            for bi in 0 ..< b {
                var pooled = [Float](repeating: 0, count: d)
                var count: Float = 0
                for li in 0 ..< l {
                    let m = encoderMask.data[bi * l + li]
                    count += m
                    for di in 0 ..< d { pooled[di] += encoderHiddenStates.data[(bi * l + li) * d + di] * m }
                }
                for oi in 0 ..< o {
                    var cond: Float = 0
                    for di in 0 ..< d { cond += pooled[di] / count * P.data[oi * d + di] }
                    cond = cond + bias.data[oi] + tw.data[oi] * (timestep[bi] / 1000)
                    for p in 0 ..< h * w {
                        var y: Float = 0
                        for ci in 0 ..< c { y += W.data[oi * c + ci] * latents.data[(bi * c + ci) * h * w + p] }
                        out[(bi * o + oi) * h * w + p] = y + cond
                    }
                }
            }
            return Tensor(shape: [b, o, h, w], data: out)
        }
    }

    /// image = nearest-upsample(V·z + c) by 32.
    struct FakeDecoder: LatentDecoding {
        let V: Tensor, c: Tensor
        func decode(latents: Tensor) throws -> Tensor {
            let (ch, h, w) = (latents.shape[1], latents.shape[2], latents.shape[3]), f = PipelineLoopTests.factor
            var out = [Float](repeating: 0, count: 3 * h * f * w * f)
            for k in 0 ..< 3 {
                for y in 0 ..< h * f {
                    for x in 0 ..< w * f {
                        var v: Float = 0
                        for ci in 0 ..< ch { v += V.data[k * ch + ci] * latents.data[(ci * h + y / f) * w + x / f] }
                        out[(k * h * f + y) * w * f + x] = v + c.data[k]
                    }
                }
            }
            return Tensor(shape: [1, 3, h * f, w * f], data: out)
        }
    }

    func testLoopMatchesDiffusersSanaPipeline() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pipeline_loop/cases.json")))
        let dump = FileManager.default.temporaryDirectory.appendingPathComponent("loop-dump-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dump) }
        var worstLatent: Float = 0, worstImage: Float = 0
        for c in try JSONDecoder().decode([Case].self, from: data) {
            func fx(_ s: String) throws -> Tensor { try Fixtures.tensor("pipeline_loop/\(c.name)_\(s).npy") }
            let configJSON = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("pipeline_loop/\(c.name)_scheduler_config.json")))
            let config = PipelineConfig(latentChannels: Self.latentC, transformerOutChannels: c.out_channels, vaeScaleFactor: Self.factor,
                                        scalingFactor: c.scaling_factor, schedulerConfigJSON: configJSON)
            let (embeds, mask) = (try fx("embeds"), try fx("mask"))
            let transformer = FakeTransformer(W: try fx("W"), P: try fx("P"), bias: try fx("bias"), tw: try fx("tw"))
            let decoder = FakeDecoder(V: try fx("V"), c: try fx("c"))
            var loaded: [String] = []
            let components = PipelineComponents(
                textEncoder: { loaded.append("encoder"); return FakeEncoder(embeds: embeds, mask: mask) },
                transformer: { loaded.append("transformer"); return transformer },
                decoder: { loaded.append("decoder"); return decoder })
            let pipeline = SanaPipeline(config: config, components: components, dumpDirectory: dump)
            let reference = try fx("latents")  // [steps + 1, C, h, w]
            let perStep = reference.count / (c.steps + 1)
            func refLatents(_ i: Int) -> Tensor {
                Tensor(shape: [1, Self.latentC, Self.latentH, Self.latentW], data: Array(reference.data[i * perStep ..< (i + 1) * perStep]))
            }
            var request = GenerationRequest(prompt: "a toy")
            (request.width, request.height, request.steps, request.guidanceScale, request.seed) =
                (Self.latentW * Self.factor, Self.latentH * Self.factor, c.steps, c.guidance, c.seed)
            if c.latents_given { request.latents = refLatents(0) }
            var events: [String] = []
            let result = try pipeline.generate(request) { events.append("\($0.stage.rawValue) \($0.step)/\($0.total)") }
            XCTAssertEqual(loaded, ["encoder", "transformer", "decoder"])
            XCTAssertEqual(events.count, 4 + c.steps + 1, "\(events)")
            // Initial noise is bit-identical; every step's latents within 1e-5 relative of diffusers.
            let initial = try Fixtures.tensor("pipeline_loop/\(c.name)_latents.npy")
            XCTAssertEqual(try Npy.read("\(dump)/latents_initial.npy").values, Array(initial.data.prefix(perStep)), c.name)
            for i in 0 ..< c.steps {
                let got = try Npy.read("\(dump)/latents_\(i).npy")
                let err = relativeMaxError(Tensor(shape: got.shape, data: got.values), refLatents(i + 1))
                worstLatent = max(worstLatent, err)
                XCTAssertLessThanOrEqual(err, 1e-5, "\(c.name) step \(i)")
            }
            let image = try fx("image")
            let err = relativeMaxError(result.unitImage, image)
            worstImage = max(worstImage, err)
            XCTAssertLessThanOrEqual(err, 1e-5, c.name)
            // 8-bit pixels: equal except where the reference sits within float error of a rounding boundary.
            for (k, v) in image.data.enumerated() {
                let want = Int((v * 255).rounded(.toNearestOrEven)), px = k % (image.count / 3), ch = k / (image.count / 3)
                XCTAssertLessThanOrEqual(abs(Int(result.image.pixels[px * 3 + ch]) - want), 1)
            }
            let dumpedEmbeds = try Npy.read("\(dump)/prompt_embeds.npy")
            XCTAssertEqual(dumpedEmbeds.shape[0], c.guidance > 1 ? 2 : 1)
            XCTAssertEqual(try Npy.read("\(dump)/image.npy").shape, [3, Self.latentH * Self.factor, Self.latentW * Self.factor])
        }
        print("pipeline loop: worst latent error \(worstLatent), image error \(worstImage)")
    }

    func testValidationNamesTheProblem() throws {
        let configJSON = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("schedulers/dpm_sana_config.json")))
        let config = PipelineConfig(latentChannels: 4, transformerOutChannels: 4, vaeScaleFactor: 32, scalingFactor: 0.4,
                                    schedulerConfigJSON: configJSON)
        let never = PipelineComponents(textEncoder: { throw GenerationError.componentsUnavailable("no") },
                                       transformer: { throw GenerationError.componentsUnavailable("no") },
                                       decoder: { throw GenerationError.componentsUnavailable("no") })
        let pipeline = SanaPipeline(config: config, components: never)
        func check(_ edit: (inout GenerationRequest) -> Void, _ words: String) {
            var r = GenerationRequest(prompt: "x")
            edit(&r)
            XCTAssertThrowsError(try pipeline.validate(r), words) { XCTAssertTrue("\($0)".contains(words), "\($0) lacks '\(words)'") }
        }
        check({ $0.width = 1000 }, "width 1000 is not a multiple of the autoencoder factor 32")
        check({ $0.height = 0 }, "height")
        check({ $0.steps = 0 }, "steps")
        check({ $0.guidanceScale = -1 }, "guidance")
        check({ $0.guidanceScale = .nan }, "guidance")
        check({ $0.maxSequenceLength = 0 }, "max sequence length")
        check({ $0.latents = Tensor(zeros: [1, 4, 2, 2]) }, "initial latents have shape [1, 4, 2, 2]")
        check({ $0.steps = 5000 }, "repeated first timestep")
        XCTAssertNoThrow(try pipeline.validate(GenerationRequest(prompt: "x")))
        let bad = SanaPipeline(config: PipelineConfig(latentChannels: 4, transformerOutChannels: 5, vaeScaleFactor: 32,
                                                      scalingFactor: 0.4, schedulerConfigJSON: configJSON), components: never)
        XCTAssertThrowsError(try bad.validate(GenerationRequest(prompt: "x"))) { XCTAssertTrue("\($0)".contains("out_channels 5")) }
    }
}
