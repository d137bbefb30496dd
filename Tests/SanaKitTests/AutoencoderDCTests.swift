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
    /// recorded in docs/NUMERICS.md "DC-AE"; the bounds are about 2× the measured worst case.
    func testQuantizedErrorsAreBounded() throws {
        for (type, bound) in [(StorageType.f16, Float(2e-3)), (.bf16, Float(2e-2)), (.int8, Float(0.07)), (.int4, Float(0.8))] {
            for name in Self.cases {
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
