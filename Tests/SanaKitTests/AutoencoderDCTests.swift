import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

// Reference tensors: Tests/Fixtures/dcae/<case>/ written by
//   ${PYTHON:-/work/main/.venv-ref/bin/python} tools/fixtures/make_dcae.py
// (diffusers 0.42.1 AutoencoderDC on tiny random configs; see the script for what each case covers).
final class AutoencoderDCTests: XCTestCase {
    static let cases = ["interpolate_evit", "pixel_shuffle_resblock", "pixel_shuffle_evit_small"]

    func load(_ name: String, as type: StorageType = .f32, parts: AutoencoderDC.Parts = .all) throws -> AutoencoderDC {
        let dir = Fixtures.path("dcae/\(name)")
        let config = try AutoencoderDCConfig.load(path: dir + "/config.json")
        let file = try SafetensorsFile(path: dir + "/weights.safetensors")
        let source: WeightSource = type == .f32 ? file : repacked(file, as: type)
        return try AutoencoderDC(config: config, source: source, parts: parts)
    }

    /// Relative max error of decode and encode against the reference for one case and storage type.
    func errors(_ name: String, as type: StorageType) throws -> (decode: Float, encode: Float) {
        let ae = try load(name, as: type)
        let decoded = try ae.decode(try Fixtures.tensor("dcae/\(name)/decoder_input.npy"))
        let encoded = try ae.encode(try Fixtures.tensor("dcae/\(name)/encoder_input.npy"))
        return (relativeMaxError(decoded, try Fixtures.tensor("dcae/\(name)/decoder_output.npy")),
                relativeMaxError(encoded, try Fixtures.tensor("dcae/\(name)/encoder_output.npy")))
    }

    func testFloatMatchesReference() throws {
        for name in Self.cases {
            let e = try errors(name, as: .f32)
            print("DC-AE f32 \(name): decode \(e.decode), encode \(e.encode)")
            XCTAssertLessThan(e.decode, 1e-4, name)
            XCTAssertLessThan(e.encode, 1e-4, name)
        }
    }

    /// int8 / int4 weights (every ≥ 2-D conv and linear weight re-packed, norms and biases float): errors are
    /// recorded in docs/NUMERICS.md "DC-AE"; the bounds are about 1.5–2× the measured worst case. The int8 kernels
    /// also round activations (one scale per row and group of 128); the random EfficientViT case amplifies that
    /// through its ReLU linear attention (quotients of small sums), hence its own int8 bound.
    func testQuantizedErrorsAreBounded() throws {
        for (type, bound) in [(StorageType.f16, Float(2e-3)), (.bf16, Float(2e-2)), (.int8, Float(0.07)), (.int4, Float(0.8))] {
            for name in Self.cases {
                let bound = type == .int8 && name == "interpolate_evit" ? Float(0.75) : bound
                let e = try errors(name, as: type)
                print("DC-AE \(type.name) \(name): decode \(e.decode), encode \(e.encode)")
                XCTAssertLessThan(e.decode, bound, "\(type.name) \(name)")
                XCTAssertLessThan(e.encode, bound, "\(type.name) \(name)")
            }
        }
    }

    /// Diagnostic: weights rounded to int8/int4 and back to f32 (weight error only, activations stay float).
    func testWeightOnlyRoundingError() throws {
        for type in [StorageType.int8, .int4] {
            for name in Self.cases {
                let dir = Fixtures.path("dcae/\(name)")
                let config = try AutoencoderDCConfig.load(path: dir + "/config.json")
                let src = RoundTrippedSource(repacked(try SafetensorsFile(path: dir + "/weights.safetensors"), as: type))
                let ae = try AutoencoderDC(config: config, source: src)
                let d = relativeMaxError(try ae.decode(try Fixtures.tensor("dcae/\(name)/decoder_input.npy")),
                                         try Fixtures.tensor("dcae/\(name)/decoder_output.npy"))
                print("DC-AE weight-only \(type.name) \(name): decode \(d)")
                // Weight rounding alone (activations in f32): measured ≤ 0.033 (int8) and ≤ 0.60 (int4).
                XCTAssertLessThan(d, type == .int8 ? 0.07 : 0.8, "\(type.name) \(name)")
            }
        }
    }

    func testDecoderOnlyLoadSkipsEncoderTensors() throws {
        let ae = try load("interpolate_evit", parts: .decoder)
        XCTAssertThrowsError(try ae.encode(Tensor(zeros: [1, 3, 4, 4])))
        _ = try ae.decode(try Fixtures.tensor("dcae/interpolate_evit/decoder_input.npy"))
    }

    func testStrictLoading() throws {
        let dir = Fixtures.path("dcae/pixel_shuffle_resblock")
        let config = try AutoencoderDCConfig.load(path: dir + "/config.json")
        let file = try SafetensorsFile(path: dir + "/weights.safetensors")
        let missing = "decoder.up_blocks.1.1.conv2.weight"
        XCTAssertThrowsError(try AutoencoderDC(config: config, source: EditedSource(file, hide: missing))) { e in
            XCTAssertEqual(e as? ModelError, .missingTensors(component: "vae", names: [missing]))
        }
        XCTAssertThrowsError(try AutoencoderDC(config: config, source: EditedSource(file, extra: "decoder.spare.weight"))) { e in
            XCTAssertEqual(e as? ModelError, .unexpectedTensors(component: "vae", names: ["decoder.spare.weight"]))
        }
        let bad = "decoder.norm_out.weight"
        XCTAssertThrowsError(try AutoencoderDC(config: config, source: EditedSource(file, reshape: bad))) { e in
            guard case let .shapeMismatch(t, _, _)? = e as? ModelError else { return XCTFail("\(e)") }
            XCTAssertEqual(t, bad)
        }
    }

    func testConfigValidationNamesTheBadValue() throws {
        let json = #"{"upsample_block_type": "bicubic"}"#
        XCTAssertThrowsError(try AutoencoderDCConfig.load(json: Data(json.utf8))) { e in
            XCTAssertTrue("\(e)".contains("bicubic"), "\(e)")
        }
        let json2 = #"{"decoder_act_fns": ["silu", "mish", "silu", "silu", "silu", "silu"]}"#
        XCTAssertThrowsError(try AutoencoderDCConfig.load(json: Data(json2.utf8))) { e in
            XCTAssertTrue("\(e)".contains("mish"), "\(e)")
        }
        // diffusers' defaults decode from an empty object and validate.
        XCTAssertEqual(try AutoencoderDCConfig.load(json: Data("{}".utf8)), AutoencoderDCConfig())
    }

    func testBadInputIsATypedError() throws {
        let ae = try load("pixel_shuffle_evit_small")
        XCTAssertThrowsError(try ae.decode(Tensor(zeros: [1, 3, 2, 2])))   // wrong latent channels
        XCTAssertThrowsError(try ae.encode(Tensor(zeros: [1, 3, 5, 6])))   // H not a multiple of 2
    }
}


/// Tiled decoding: equality with the full-frame decode, memory planning, and the banded layers it relies on.
final class AutoencoderDCTilingTests: XCTestCase {
    /// A deterministic pseudo-random latent [B, C, h, w] (values about ±1.7).
    static func latent(_ shape: [Int], seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> Tensor {
        var state = seed
        return Tensor(shape: shape, data: (0 ..< shape.reduce(1, *)).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(Int64(bitPattern: state >> 11) % 2001 - 1000) / 577
        })
    }

    func model(_ name: String = "interpolate_evit") throws -> AutoencoderDC {
        let dir = Fixtures.path("dcae/\(name)")
        return try AutoencoderDC(config: try AutoencoderDCConfig.load(path: dir + "/config.json"),
                                 source: try SafetensorsFile(path: dir + "/weights.safetensors"), parts: .decoder)
    }

    func testCoresPartitionTheFrame() {
        for (length, tile) in [(24, 10), (25, 7), (11, 10), (100, 16), (8, 10), (5, 1)] {
            let cores = AutoencoderDC.cores(length: length, tile: tile)
            XCTAssertEqual(cores.first?.lowerBound, 0)
            XCTAssertEqual(cores.last?.upperBound, length)
            for (a, b) in zip(cores, cores.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            XCTAssertTrue(cores.allSatisfy { $0.count <= tile && !$0.isEmpty }, "\(length) \(tile)")
        }
    }

    /// Receptive radius of the released decoders, in latent pixels: the overlap that makes a whole-decoder tile exact.
    func testExactOverlapOfTheReleasedDecoders() throws {
        for (name, expected) in [("dc-ae-f32c32-sana-1.0", 21), ("dc-ae-lite-f32c32-sana-1.1", 19)] {
            let config = try AutoencoderDCConfig.load(path: Fixtures.root + "/../../models/configs/\(name).json")
            let shapes = try DCAEDecoder.layout(config)
            let suffix = (shapes.lastIndex(where: \.isAttention) ?? -1) + 1
            print("DC-AE \(name): exact overlap \(AutoencoderDC.exactOverlapLatent(config: config)) latent px; after the last attention: \(AutoencoderDC.margin(shapes, suffix ..< shapes.count, output: 0)) px of its grid")
            XCTAssertEqual(AutoencoderDC.exactOverlapLatent(config: config), expected, name)
        }
    }

    /// Bound (docs/NUMERICS.md "DC-AE"): tiled = full-frame up to float summation order, for every boundary the
    /// planner can choose and tiles smaller than the receptive field; the largest difference at core edges (where a
    /// seam would show) is no larger than elsewhere.
    func testTiledEqualsFullDecode() throws {
        for name in AutoencoderDCTests.cases {
            let ae = try model(name)
            let decoder = try XCTUnwrap(ae.decoder)
            let z = Self.latent([2, ae.config.latentChannels, 19, 14])
            let full = try ae.decode(z)
            let overlap = AutoencoderDC.exactOverlapLatent(config: ae.config)
            var plans = [DecodePlan(boundary: 0, tile: 5, haloCap: overlap)]
            for (i, s) in decoder.shapes.enumerated() where s.upsamples || s.isAttention {
                plans.append(DecodePlan(boundary: i, tile: 6))
                if i > 0 { plans.append(DecodePlan(levels: [.init(start: 0, tile: 7), .init(start: i, tile: 5)])) }
            }
            for plan in plans {
                let tiled = ae.tiledDecode(decoder, z, plan: plan)
                XCTAssertEqual(tiled.shape, full.shape)
                let err = relativeMaxError(tiled, full)
                print("DC-AE tiled \(name) levels \(plan.levels.map { ($0.start, $0.tile) }): relative max error \(err)")
                XCTAssertLessThan(err, 1e-5, "\(name) \(plan)")
            }
            let forced = try ae.decode(z, tiling: .forced(tileLatent: 4, overlapLatent: overlap))
            XCTAssertLessThan(relativeMaxError(forced, full), 1e-5, name)
        }
    }

    /// With less overlap than the receptive field the difference is confined near core edges (a seam), which is
    /// why `.auto` always uses the exact margin.
    func testShortOverlapShowsAtCoreEdges() throws {
        let ae = try model("interpolate_evit")
        let f = ae.config.spatialCompressionRatio, tile = 8
        let z = Self.latent([1, 8, 24, 24])
        let full = try ae.decode(z)
        let tiled = try ae.decode(z, tiling: .forced(tileLatent: tile, overlapLatent: 1))
        let edges = Set(AutoencoderDC.cores(length: 24, tile: tile).dropFirst().flatMap { r in (r.lowerBound * f - f) ..< (r.lowerBound * f + f) })
        var border: Float = 0, inner: Float = 0
        let (ph, pw) = (full.shape[2], full.shape[3])
        for c in 0 ..< 3 { for y in 0 ..< ph { for x in 0 ..< pw {
            let i = (c * ph + y) * pw + x, d = abs(tiled.data[i] - full.data[i])
            if edges.contains(y) || edges.contains(x) { border = max(border, d) } else { inner = max(inner, d) }
        } } }
        print("DC-AE interpolate_evit overlap 1 of \(AutoencoderDC.exactOverlapLatent(config: ae.config)): relative max error \(relativeMaxError(tiled, full)), max |Δ| near core edges \(border), elsewhere \(inner)")
        XCTAssertGreaterThan(border, 1e-3)
        XCTAssertGreaterThan(border, inner)
    }

    func testAutoTilingFollowsTheBudget() throws {
        let ae = try model("interpolate_evit")
        let z = Self.latent([1, 8, 40, 36])
        let full = try ae.decode(z)
        let need = AutoencoderDC.estimatedDecodePeakBytes(config: ae.config, batch: 1, latentHeight: 40, latentWidth: 36)
        XCTAssertEqual(try ae.decode(z, tiling: .auto(budgetBytes: need)).data, full.data)
        let shapes = try XCTUnwrap(ae.decoder).shapes
        let plan = try XCTUnwrap(AutoencoderDC.plan(shapes, batch: 1, latentHeight: 40, latentWidth: 36, budget: need / 3))
        let estimate = AutoencoderDC.estimate(shapes, plan, batch: 1, latentHeight: 40, latentWidth: 36)
        print("DC-AE interpolate_evit 40×36 untiled \(need) B; budget \(need / 3): \(plan), estimate \(estimate.bytes) B")
        XCTAssertLessThanOrEqual(estimate.bytes, need / 3)
        XCTAssertLessThan(relativeMaxError(try ae.decode(z, tiling: .auto(budgetBytes: need / 3)), full), 1e-5)
        XCTAssertThrowsError(try ae.decode(z, tiling: .auto(budgetBytes: 1000)))
        XCTAssertThrowsError(try ae.decode(z, tiling: .forced(tileLatent: 0, overlapLatent: 2)))
    }

    /// The estimate scales with the pixel count and is dominated by the full-resolution stage; the plan for a
    /// 4096² decode fits a budget far below the untiled figure.
    func testPeakEstimateAndPlanOfTheReleasedDecoder() throws {
        // models/configs/ sits next to Tests/ (Fixtures.root is Tests/Fixtures).
        let sana = try AutoencoderDCConfig.load(path: Fixtures.root + "/../../models/configs/dc-ae-f32c32-sana-1.0.json")
        let e1024 = AutoencoderDC.estimatedDecodePeakBytes(config: sana, batch: 1, latentHeight: 32, latentWidth: 32)
        let e2048 = AutoencoderDC.estimatedDecodePeakBytes(config: sana, batch: 1, latentHeight: 64, latentWidth: 64)
        print("DC-AE sana-1.0 estimated decode peak: 1024² \(e1024 >> 20) MiB, 2048² \(e2048 >> 20) MiB")
        XCTAssertGreaterThan(e1024, 3 * 128 << 22)   // three 128-channel 1024² maps at least
        XCTAssertEqual(Double(e2048) / Double(e1024), 4, accuracy: 0.3)
        let shapes = try DCAEDecoder.layout(sana)
        for budget in [512 << 20, 768 << 20, 1024 << 20] {
            let plan = try XCTUnwrap(AutoencoderDC.plan(shapes, batch: 1, latentHeight: 128, latentWidth: 128, budget: budget))
            let e = AutoencoderDC.estimate(shapes, plan, batch: 1, latentHeight: 128, latentWidth: 128)
            let untiled = AutoencoderDC.estimate(shapes, DecodePlan(boundary: shapes.count - 1, tile: 1 << 20, haloCap: 0),
                                                 batch: 1, latentHeight: 128, latentWidth: 128)
            print("DC-AE sana-1.0 4096² budget \(budget >> 20) MiB: \(plan), estimate \(e.bytes >> 20) MiB, \(e.macs / untiled.macs)× the untiled work")
            XCTAssertLessThanOrEqual(e.bytes, budget)
        }
    }

    /// The banded layers equal their whole-frame forms (bands forced small on the tiny nets).
    func testBandedLayersMatchWholeFrame() throws {
        let ae = try model("interpolate_evit")
        let ops = try XCTUnwrap(ae.decoder).ops
        let x = Self.latent([2, 9, 7, 16]).reshaped([2, 9, 7, 16])
        var checked = (attention: 0, feedForward: 0, up: 0)
        for op in ops {
            switch op {
            case let .attention(a):
                XCTAssertLessThan(relativeMaxError(a(x, budget: 1), a(x)), 1e-6)
                checked.attention += 1
            case let .feedForward(f):
                XCTAssertLessThan(relativeMaxError(f.appliedInBands(x, budget: 1), f(x)), 1e-6)
                checked.feedForward += 1
            case let .block(.up(u)) where u.interpolate:
                let xi = Self.latent([2, 5, 6, u.inChannels])
                XCTAssertLessThan(relativeMaxError(xi.conv2d(u.conv.linear, kernel: 3, padding: 1, upsample: 2),
                                                   u.conv(xi.nearestUpsampled2x())), 1e-6)
                checked.up += 1
            default: break
            }
        }
        XCTAssertTrue(checked.attention > 0 && checked.feedForward > 0 && checked.up > 0, "\(checked)")
    }
}

/// Re-packs every ≥ 2-D weight (conv and linear weights, depthwise included) of a source in memory; 1-D tensors
/// (norms, biases, running statistics) stay as they are.
private func repacked(_ base: WeightSource, as type: StorageType) -> WeightSource {
    QuantizedWeightSource(base, as: type, where: { _, shape in shape.count >= 2 })
}

private struct RoundTrippedSource: WeightSource {
    let base: WeightSource
    init(_ base: WeightSource) { self.base = base }
    var tensorNames: Set<String> { base.tensorNames }
    func tensor(_ name: String) throws -> StoredTensor {
        let t = try base.tensor(name)
        return .pack(name: name, shape: t.shape, values: t.floats(), as: .f32)
    }
}

/// A source with one tensor hidden, one extra tensor, or one tensor given a wrong shape.
private struct EditedSource: WeightSource {
    let base: WeightSource
    var hide: String? = nil
    var extra: String? = nil
    var reshape: String? = nil
    init(_ base: WeightSource, hide: String? = nil, extra: String? = nil, reshape: String? = nil) {
        self.base = base
        self.hide = hide
        self.extra = extra
        self.reshape = reshape
    }
    var tensorNames: Set<String> {
        var names = base.tensorNames
        if let hide { names.remove(hide) }
        if let extra { names.insert(extra) }
        return names
    }
    func tensor(_ name: String) throws -> StoredTensor {
        if name == extra { return .pack(name: name, shape: [1], values: [0], as: .f32) }
        let t = try base.tensor(name)
        if name == reshape { return .pack(name: name, shape: [t.elementCount, 1], values: t.floats(), as: .f32) }
        return t
    }
}
