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
        let source: WeightSource = type == .f32 ? file : try RepackedSource(file, as: type)
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
                let src = RoundTrippedSource(try RepackedSource(try SafetensorsFile(path: dir + "/weights.safetensors"), as: type))
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


/// Tiled decoding: agreement with the full-frame decode and absence of seams.
final class AutoencoderDCTilingTests: XCTestCase {
    /// A deterministic pseudo-random latent [B, C, h, w] (values about ±1.7).
    static func latent(_ shape: [Int]) -> Tensor {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
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

    func testTileStartsCoverWithOverlap() {
        for (length, tile, overlap) in [(24, 10, 2), (25, 10, 3), (11, 10, 2), (100, 16, 4), (8, 10, 2)] {
            let starts = AutoencoderDC.tileStarts(length: length, tile: tile, overlap: overlap)
            XCTAssertEqual(starts.first, 0)
            XCTAssertEqual(min(starts.last ?? 0, length) + min(tile, length), length, "\(length) \(tile)")
            for (a, b) in zip(starts, starts.dropFirst()) { XCTAssertLessThanOrEqual(b - a, tile - overlap) }
        }
    }

    /// Bounds (docs/NUMERICS.md "DC-AE"): the ResBlock-only decoder has a finite receptive field, so enough
    /// overlap makes tiles nearly exact; the EfficientViT decoder's linear attention is global, so tiles see
    /// different attention statistics and differ everywhere, whatever the overlap (random weights exaggerate it).
    func testTiledAgreesWithFullDecodeWithoutSeams() throws {
        for (name, tile, overlap, bound) in [("pixel_shuffle_resblock", 16, 6, Float(0.1)),
                                             ("interpolate_evit", 16, 6, Float(0.8)),
                                             ("interpolate_evit", 24, 6, Float(0.6))] {
            let ae = try model(name)
            let f = ae.config.spatialCompressionRatio
            let z = Self.latent([1, 8, 40, 36])
            let full = try ae.decode(z)
            let tiled = try ae.decode(z, tiling: .forced(tileLatent: tile, overlapLatent: overlap))
            XCTAssertEqual(tiled.shape, full.shape)
            let err = relativeMaxError(tiled, full)
            // Seams: the largest |tiled − full| within 2 pixels of a tile edge, against the largest elsewhere.
            let (ph, pw) = (full.shape[2], full.shape[3])
            func edges(_ length: Int) -> Set<Int> {
                var e = Set<Int>()
                for s in AutoencoderDC.tileStarts(length: length / f, tile: tile, overlap: overlap) {
                    for edge in [s * f, (s + tile) * f] where edge > 0 && edge < length { for d in -2 ... 1 { e.insert(edge + d) } }
                }
                return e
            }
            let (ey, ex) = (edges(ph), edges(pw))
            var border: Float = 0, inner: Float = 0
            for c in 0 ..< 3 { for y in 0 ..< ph { for x in 0 ..< pw {
                let i = (c * ph + y) * pw + x
                let d = abs(tiled.data[i] - full.data[i])
                if ey.contains(y) || ex.contains(x) { border = max(border, d) } else { inner = max(inner, d) }
            } } }
            print("DC-AE tiled \(name) tile \(tile) overlap \(overlap): relative max error \(err), max |Δ| at tile edges \(border), elsewhere \(inner)")
            XCTAssertLessThan(err, bound, name)
            XCTAssertLessThanOrEqual(border, inner * 1.1 + 1e-4, "seam at tile edges: \(name)")
        }
    }

    func testAutoTilingFollowsTheBudget() throws {
        let ae = try model("pixel_shuffle_resblock")
        let z = Self.latent([1, 8, 48, 40])
        let need = AutoencoderDC.estimatedDecodePeakBytes(config: ae.config, batch: 1, latentHeight: 48, latentWidth: 40)
        XCTAssertEqual(try ae.decode(z, tiling: .auto(budgetBytes: need)).data, try ae.decode(z).data)
        let small = need / 2
        let tile = try XCTUnwrap(ae.largestTile(batch: 1, latentHeight: 48, latentWidth: 40,
                                                overlap: AutoencoderDC.defaultOverlapLatent, budget: small))
        XCTAssertLessThan(tile, 40)
        XCTAssertLessThan(relativeMaxError(try ae.decode(z, tiling: .auto(budgetBytes: small)), try ae.decode(z)), 0.05)
        XCTAssertThrowsError(try ae.decode(z, tiling: .auto(budgetBytes: 1000)))
        XCTAssertThrowsError(try ae.decode(z, tiling: .forced(tileLatent: 4, overlapLatent: 2)))
    }

    /// The estimate scales with the pixel count and is dominated by the full-resolution stage.
    func testPeakEstimateOfTheReleasedDecoder() throws {
        // models/configs/ sits next to Tests/ (Fixtures.root is Tests/Fixtures).
        let sana = try AutoencoderDCConfig.load(path: Fixtures.root + "/../../models/configs/dc-ae-f32c32-sana-1.0.json")
        let e1024 = AutoencoderDC.estimatedDecodePeakBytes(config: sana, batch: 1, latentHeight: 32, latentWidth: 32)
        let e2048 = AutoencoderDC.estimatedDecodePeakBytes(config: sana, batch: 1, latentHeight: 64, latentWidth: 64)
        print("DC-AE sana-1.0 estimated decode peak: 1024² \(e1024 >> 20) MiB, 2048² \(e2048 >> 20) MiB")
        XCTAssertGreaterThan(e1024, 3 * 128 << 22)   // three 128-channel 1024² maps at least
        XCTAssertEqual(Double(e2048) / Double(e1024), 4, accuracy: 0.3)
    }
}

/// Re-packs every ≥ 2-D floating weight (conv and linear weights) of a source as int8 / int4, in memory;
/// 1-D tensors (norms, biases, running statistics) stay as they are.
private struct RepackedSource: WeightSource {
    let base: WeightSource
    let type: StorageType
    init(_ base: WeightSource, as type: StorageType) throws {
        self.base = base
        self.type = type
    }
    var tensorNames: Set<String> { base.tensorNames }
    func tensor(_ name: String) throws -> StoredTensor {
        let t = try base.tensor(name)
        guard t.shape.count >= 2 else { return t }
        return .pack(name: name, shape: t.shape, values: t.floats(), as: type)
    }
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
