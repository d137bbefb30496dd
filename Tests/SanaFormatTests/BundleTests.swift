import CSanaKernels
import Foundation
@testable import SanaFormat
import XCTest

/// Conversion of the committed tiny pipelines and read-back through SanaBundle; corrupted and forged bundles.
/// Fixtures: `${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_tiny_pipeline.py`.
final class BundleTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try TestPaths.scratch() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    @discardableResult
    func convert(_ pipeline: String, _ type: StorageType, name: String? = nil,
                 configure: (inout ConversionOptions) -> Void = { _ in }) throws -> String {
        let out = dir + "/" + (name ?? "\(URL(fileURLWithPath: pipeline).lastPathComponent)-\(type.name).sana")
        var options = ConversionOptions(weights: type)
        configure(&options)
        _ = try Converter.convert(pipelinePath: pipeline, output: out, options: options)
        return out
    }

    static func relRMS(_ a: [Float], _ b: [Float]) -> Double {
        var e = 0.0, s = 0.0
        for (x, y) in zip(a, b) { e += Double(x - y) * Double(x - y); s += Double(y) * Double(y) }
        return s > 0 ? (e / s).squareRoot() : e.squareRoot()
    }

    /// Bounds on relative RMS error per storage type, stated in docs/NUMERICS.md "Weight quantization".
    static let bound: [StorageType: Double] = [.int8: 0.01, .int4: 0.15]

    /// Every tensor read back equals the source: f32 bit-exact, f16 bit-exact from F16 sources and within f16
    /// rounding otherwise, bf16 within bf16 rounding, int8/int4 within `bound`.
    func checkRoundTrip(_ fixture: String, _ type: StorageType) throws -> Double {
        let src = try DiffusersPipeline(path: TestPaths.pipeline(fixture))
        let b = try SanaBundle(path: try convert(TestPaths.pipeline(fixture), type))
        var worst = 0.0
        for comp in BundleFormat.components {
            let s = try XCTUnwrap(src.components[comp]).weights
            let c = try b.component(comp)
            let expected = Set(s.tensorNames.filter { !Converter.dropped(comp, $0) }.map { Converter.renamed(comp, $0) })
            XCTAssertEqual(c.tensorNames, expected, comp)
            for name in c.tensorNames {
                let rec = try c.info(name)
                let ref = try s.file(of: name).floats(name, elements: 0 ..< rec.rows * rec.cols)
                let got = try c.tensor(name).floats()
                let label = "\(fixture) \(type.name) \(comp)/\(name) stored \(rec.type) from \(rec.sourceDType)"
                switch rec.storageType {
                case .f32?:
                    XCTAssertEqual(got.map(\.bitPattern), ref.map(\.bitPattern), label)
                case .f16? where rec.sourceDType == "F16":
                    XCTAssertEqual(got.map(\.bitPattern), ref.map(\.bitPattern), label)
                case .f16?, .bf16?:
                    let rel: Float = rec.type == "f16" ? 1.0 / 2048 : 1.0 / 256  // half an ulp, relative
                    for (g, r) in zip(got, ref) where abs(g - r) > rel * abs(r) + 6e-8 {
                        XCTFail("\(label): \(g) vs \(r)")
                        break
                    }
                case let t?:
                    let e = Self.relRMS(got, ref)
                    XCTAssertLessThanOrEqual(e, Self.bound[t] ?? 0, label)
                    XCTAssertEqual(e, rec.relRMS, accuracy: 1e-6, label)
                    worst = max(worst, e)
                case nil:
                    XCTFail(label)
                }
            }
        }
        XCTAssertEqual(b.schedulerConfig, try Data(contentsOf: URL(fileURLWithPath: TestPaths.pipeline(fixture) + "/scheduler/scheduler_config.json")))
        XCTAssertEqual(try b.config("transformer"), try Data(contentsOf: URL(fileURLWithPath: TestPaths.pipeline(fixture) + "/transformer/config.json")))
        XCTAssertEqual(try b.tokenizerFile(), try Data(contentsOf: URL(fileURLWithPath: TestPaths.pipeline(fixture) + "/tokenizer/tokenizer.json")))
        XCTAssertEqual(try b.tokenizerFile("tokenizer_config.json"),
                       try Data(contentsOf: URL(fileURLWithPath: TestPaths.pipeline(fixture) + "/tokenizer/tokenizer_config.json")))
        return worst
    }

    func testRoundTripEveryStorageType() throws {
        for fixture in ["sana10", "sana15"] {
            for t in StorageType.allCases {
                let worst = try checkRoundTrip(fixture, t)
                if t.isQuantized { print("measured worst relative RMS \(fixture) \(t.name): \(worst)") }
            }
        }
    }

    func testPolicyClasses() throws {
        let b = try SanaBundle(path: try convert(TestPaths.pipeline("sana10"), .int4))
        func rec(_ c: String, _ n: String) throws -> TensorRecord { try b.component(c).info(n) }
        XCTAssertEqual(try rec("transformer", "transformer_blocks.0.attn1.to_q.weight").type, "int4")
        XCTAssertEqual(try rec("transformer", "transformer_blocks.0.attn1.to_q.weight").policyClass, "quantized")
        XCTAssertEqual(try rec("transformer", "proj_out.weight").policyClass, "sensitive")
        XCTAssertEqual(try rec("transformer", "transformer_blocks.0.scale_shift_table").type, "f32")
        XCTAssertEqual(try rec("transformer", "transformer_blocks.0.ff.conv_depth.weight").policyClass, "small")
        XCTAssertEqual(try rec("text_encoder", "embed_tokens.weight").type, "int8")
        XCTAssertEqual(try rec("text_encoder", "norm.weight").policyClass, "vector")
        XCTAssertEqual(try rec("vae", "decoder.conv_out.weight").type, "f32")
        XCTAssertEqual(try rec("vae", "decoder.up_blocks.2.0.conv_out.conv_point.weight").type, "bf16")
        XCTAssertEqual(try rec("vae", "decoder.up_blocks.2.0.conv_out.conv_point.weight").policyClass, "efficientvit")
        XCTAssertEqual(try rec("vae", "decoder.up_blocks.1.1.conv1.weight").type, "int4")
        XCTAssertNil(try? rec("vae", "decoder.up_blocks.0.1.norm.num_batches_tracked"))
        XCTAssertEqual(b.header.quantization.weights, "int4")
    }

    /// The measurement behind the embedding's storage type (docs/NUMERICS.md "Weight quantization"): relative RMS
    /// of the sana15 text encoder's float32 token embedding stored as bf16, int8 and int4.
    func testEmbeddingStorageMeasurement() throws {
        let te = try SafetensorsDirectory(path: TestPaths.pipeline("sana15") + "/text_encoder")
        let t = try te.tensor("embed_tokens.weight")
        let ref = t.floats()
        var err: [StorageType: Double] = [:]
        for type in [StorageType.bf16, .int8, .int4] {
            err[type] = Self.relRMS(StoredTensor.pack(name: t.name, shape: t.shape, values: ref, as: type).floats(), ref)
        }
        print("embedding \(t.shape) relative RMS: bf16 \(err[.bf16] ?? 0), int8 \(err[.int8] ?? 0), int4 \(err[.int4] ?? 0)")
        XCTAssertLessThan(err[.bf16] ?? 1, err[.int8] ?? 0)
        XCTAssertLessThan(err[.int8] ?? 1, 0.01)
        XCTAssertGreaterThan(err[.int4] ?? 0, 0.05)
    }

    func testBitIdenticalAcrossThreadCounts() throws {
        let a = try convert(TestPaths.pipeline("sana15"), .int8, name: "a.sana") { $0.threads = 1 }
        let b = try convert(TestPaths.pipeline("sana15"), .int8, name: "b.sana") { $0.threads = 2 }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: a)), try Data(contentsOf: URL(fileURLWithPath: b)))
    }

    func testLayerGroupAndChunkedRows() throws {
        let plain = try SanaBundle(path: try convert(TestPaths.pipeline("sana10"), .int8, name: "plain.sana"))
        let chunked = try SanaBundle(path: try convert(TestPaths.pipeline("sana10"), .int8, name: "chunked.sana") {
            $0.chunkElements = 1000
            $0.frameElements = 256
        })
        let te = try chunked.component("text_encoder")
        let emb = try te.info("embed_tokens.weight")
        // 256 elements / 32 columns = 8 rows, rounded up to the int8 row block (16) so chunks stay packed matrices.
        XCTAssertEqual(emb.chunkRows, 16)
        XCTAssertEqual(emb.frames.count, (emb.rows + 15) / 16)
        let whole = try plain.component("text_encoder").tensor("embed_tokens.weight")
        XCTAssertEqual(try te.tensor("embed_tokens.weight").bytes, whole.bytes)
        XCTAssertEqual(try te.rows(of: "embed_tokens.weight", 5 ..< 20), whole.unpackRows(5, 15))
        XCTAssertEqual(try te.rows(of: "embed_tokens.weight", 600 ..< 601), whole.unpackRows(600, 1))
        XCTAssertThrowsError(try te.rows(of: "embed_tokens.weight", 600 ..< 602))

        let tr = try plain.component("transformer")
        let group = try tr.group(prefix: "transformer_blocks.1.")
        let names = tr.tensorNames.filter { $0.hasPrefix("transformer_blocks.1.") }
        XCTAssertEqual(group.tensorNames, names)
        for n in names { XCTAssertEqual(try group.tensor(n).bytes, try tr.tensor(n).bytes, n) }
        // The group's frames are one contiguous span: no other tensor's frame lies inside it.
        let frames = try names.flatMap { try tr.info($0).frames }
        let lo = frames.map(\.offset).min() ?? 0, hi = frames.map { $0.offset + $0.size }.max() ?? 0
        let inside = plain.header.tensors.filter { t in t.frames.contains { $0.offset >= lo && $0.offset < hi } }
        XCTAssertEqual(Set(inside.map(\.name)), names)
    }

    /// The int4 bundle of a few large weights is under a quarter of the f32 bundle plus the int4 format's scale bytes.
    func testInt4IsUnderAQuarterOfF32PlusScales() throws {
        let pipe = try TestPaths.copyPipeline("sana10", to: dir)
        var rng = TestRandom(state: 42)
        var extra: [(String, String, [Int], [UInt8])] = []
        for i in 0 ..< 3 {
            var bytes = [UInt8]()
            bytes.reserveCapacity(512 * 2048 * 4)
            for _ in 0 ..< 512 * 2048 { withUnsafeBytes(of: (rng.normal() * 0.02).bitPattern.littleEndian) { bytes += $0 } }
            extra.append(("transformer_blocks.1.extra.\(i).weight", "F32", [512, 2048], bytes))
        }
        try SafetensorsBuilder.rewrite(pipe + "/transformer/diffusion_pytorch_model.safetensors", adding: extra)
        let f32 = try convert(pipe, .f32, name: "big-f32.sana")
        let int4 = try convert(pipe, .int4, name: "big-int4.sana")
        let size = { (p: String) in (try FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0 }
        let b4 = try SanaBundle(path: int4)
        let scales = b4.header.tensors.filter { $0.type == "int4" }.reduce(0) { $0 + $1.bytes - $1.rows * $1.cols / 2 }
        print("f32 bundle \(try size(f32)) B, int4 bundle \(try size(int4)) B, int4 scale/padding bytes \(scales)")
        XCTAssertLessThan(try size(int4), try size(f32) / 4 + scales)
    }

    /// int8/int4 frames are written with raw literals (docs/FORMAT.md "Data section"): near their packed size, where
    /// Huffman coding would have saved ~15 % of these near-uniform codes. Float frames keep zstd's defaults.
    func testQuantizedFramesKeepRawLiterals() throws {
        let b = try SanaBundle(path: try convert(TestPaths.pipeline("sana10"), .int4))
        XCTAssertTrue(b.header.converter.hasSuffix("int8/int4 literals raw"), b.header.converter)
        let int4 = b.header.tensors.filter { $0.type == "int4" && $0.bytes >= 4096 }
        XCTAssertFalse(int4.isEmpty)
        for t in int4 {
            let stored = t.frames.reduce(0) { $0 + $1.size }
            XCTAssertGreaterThan(stored, t.bytes * 95 / 100, t.name)
        }
    }

    func testGemmaForCausalLMKeysAreRenamed() throws {
        let pipe = try TestPaths.copyPipeline("sana10", to: dir)
        try SafetensorsBuilder.rewrite(pipe + "/text_encoder/model.safetensors", rename: { "model." + $0 },
                                       adding: [("lm_head.weight", "F32", [2, 2], [UInt8](repeating: 0, count: 16))])
        for f in ["/model_index.json", "/text_encoder/config.json"] {
            let text = try String(contentsOfFile: pipe + f, encoding: .utf8).replacingOccurrences(of: "\"Gemma2Model\"", with: "\"Gemma2ForCausalLM\"")
            try text.write(toFile: pipe + f, atomically: true, encoding: .utf8)
        }
        let b = try SanaBundle(path: try convert(pipe, .f32))
        let te = try b.component("text_encoder")
        XCTAssertTrue(te.tensorNames.contains("layers.0.self_attn.q_proj.weight"))
        XCTAssertFalse(te.tensorNames.contains { $0.hasPrefix("model.") || $0.hasPrefix("lm_head") })
        XCTAssertEqual(b.header.components["text_encoder"]?.className, "Gemma2ForCausalLM")
    }

    // MARK: Failures leave nothing behind

    func assertDirEmpty(_ file: StaticString = #filePath, line: UInt = #line) throws {
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".sana") || $0.contains("partial") }
        XCTAssertEqual(left, [], file: file, line: line)
    }

    func testFailureMidwayLeavesNoFile() throws {
        XCTAssertThrowsError(try convert(TestPaths.pipeline("sana10"), .int8) { $0.faultAfterFrames = 40 })
        try assertDirEmpty()
    }

    func testMissingTensorIsNamedAndLeavesNoFile() throws {
        let pipe = try TestPaths.copyPipeline("sana10", to: dir)
        try SafetensorsBuilder.rewrite(pipe + "/transformer/diffusion_pytorch_model.safetensors",
                                       rename: { $0 == "proj_out.weight" ? nil : $0 })
        XCTAssertThrowsError(try convert(pipe, .int8)) { e in
            guard case let .missingTensor(_, tensor)? = e as? PipelineError else { return XCTFail("\(e)") }
            XCTAssertEqual(tensor, "proj_out.weight")
        }
        try assertDirEmpty()
    }

    func testOverflowToF16IsAnErrorNamingTheTensor() throws {
        let pipe = try TestPaths.copyPipeline("sana10", to: dir)
        var big = [UInt8]()
        for _ in 0 ..< 64 * 64 { withUnsafeBytes(of: Float(1e6).bitPattern.littleEndian) { big += $0 } }
        try SafetensorsBuilder.rewrite(pipe + "/transformer/diffusion_pytorch_model.safetensors",
                                       adding: [("transformer_blocks.0.huge.weight", "F32", [64, 64], big)])
        XCTAssertThrowsError(try convert(pipe, .f16)) { XCTAssertTrue("\($0)".contains("transformer_blocks.0.huge.weight"), "\($0)") }
        try assertDirEmpty()
        XCTAssertNoThrow(try convert(pipe, .bf16))
    }

    func testConfigShapeDisagreementIsNamed() throws {
        let pipe = try TestPaths.copyPipeline("sana15", to: dir)
        let cfg = pipe + "/text_encoder/config.json"
        try String(contentsOfFile: cfg, encoding: .utf8).replacingOccurrences(of: "\"intermediate_size\": 64", with: "\"intermediate_size\": 48")
            .write(toFile: cfg, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try convert(pipe, .int8)) { e in
            guard case let .shapeMismatch(_, tensor, expected, actual, _)? = e as? PipelineError else { return XCTFail("\(e)") }
            XCTAssertEqual(tensor, "layers.0.mlp.gate_proj.weight")
            XCTAssertEqual(expected, [48, 32])
            XCTAssertEqual(actual, [64, 32])
        }
        try assertDirEmpty()
    }

    func testUnknownComponentClass() throws {
        let pipe = try TestPaths.copyPipeline("sana10", to: dir)
        let idx = pipe + "/model_index.json"
        try String(contentsOfFile: idx, encoding: .utf8).replacingOccurrences(of: "AutoencoderDC", with: "AutoencoderKL")
            .write(toFile: idx, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try convert(pipe, .int8)) { e in
            guard case .unsupportedClass(_, "vae", "AutoencoderKL", _)? = e as? PipelineError else { return XCTFail("\(e)") }
        }
    }

    // MARK: Damaged bundles

    func damaged(from source: String? = nil, _ edit: (inout [UInt8]) -> Void) throws -> String {
        let good = try source ?? convert(TestPaths.pipeline("sana10"), .int8, name: "good.sana")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        edit(&bytes)
        let path = dir + "/bad-\(UUID().uuidString).bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func expect(_ path: String, _ check: (BundleError) -> Bool, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try { let b = try SanaBundle(path: path); _ = try b.verify() }(), file: file, line: line) { e in
            guard let be = e as? BundleError else { return XCTFail("not a BundleError: \(e)", file: file, line: line) }
            XCTAssertTrue(check(be), "unexpected: \(be)", file: file, line: line)
        }
    }

    func testTruncatedBundles() throws {
        for keep in [0, 10, 63, 64, 1000] {
            expect(try damaged { $0 = Array($0.prefix(keep)) }) { if case .truncated = $0 { return true } else { return false } }
        }
        expect(try damaged { $0.removeLast(7) }) { if case .truncated = $0 { return true } else { return false } }
        expect(try damaged { $0 += [0] }) { if case .truncated = $0 { return true } else { return false } }
    }

    func testForeignFile() throws {
        expect(try damaged { $0 = Array("PK\u{3}\u{4} this is a zip file, not a bundle at all..........................".utf8) }) {
            if case .notABundle = $0 { return true } else { return false }
        }
    }

    func testBitFlips() throws {
        let good = try SanaBundle(path: try convert(TestPaths.pipeline("sana10"), .int8, name: "good.sana"))
        let rec = try good.component("transformer").info("transformer_blocks.0.attn1.to_q.weight")
        let frameByte = 64 + rec.frames[0].offset + rec.frames[0].size / 2
        let flipped = try damaged { $0[frameByte] ^= 0x10 }
        expect(flipped) { if case .checksumMismatch(_, let w) = $0 { return w.contains("attn1.to_q.weight") } else { return false } }
        // Opening succeeds (the header is intact); reading that tensor fails with the same typed error, others work.
        let b = try SanaBundle(path: flipped)
        XCTAssertThrowsError(try b.component("transformer").tensor("transformer_blocks.0.attn1.to_q.weight")) {
            guard case .checksumMismatch? = $0 as? BundleError else { return XCTFail("\($0)") }
        }
        XCTAssertNoThrow(try b.component("transformer").tensor("proj_out.weight"))
        expect(try damaged { $0[$0.count - 20] ^= 1 }) { if case .checksumMismatch(_, "header") = $0 { return true } else { return false } }
        expect(try damaged { $0[20] ^= 1 }) { if case .badPreamble = $0 { return true } else { return false } }
        expect(try damaged { $0[8] = 9 }) { if case .badPreamble = $0 { return true } else { return false } }
    }

    /// A frame's XXH64 is checked on its first read only; a later read of a frame changed on disk meanwhile is still
    /// refused, by zstd's content checksum (the streamed DiT blocks are read again every step).
    func testFrameChangedAfterItsFirstReadIsStillRefused() throws {
        let path = try damaged { _ in }  // a private copy of the int8 test bundle
        let b = try SanaBundle(path: path)
        let name = "transformer_blocks.0.attn1.to_q.weight"
        let first = try b.component("transformer").tensor(name)
        let rec = try b.component("transformer").info(name)
        let handle = try XCTUnwrap(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(64 + rec.frames[0].offset + rec.frames[0].size / 2))
        let byte = try XCTUnwrap(handle.read(upToCount: 1))
        try handle.seek(toOffset: UInt64(64 + rec.frames[0].offset + rec.frames[0].size / 2))
        try handle.write(contentsOf: [byte[0] ^ 0x10])
        try handle.close()
        XCTAssertThrowsError(try b.component("transformer").tensor(name)) {
            guard case .corruptFrame? = $0 as? BundleError else { return XCTFail("\($0)") }
        }
        XCTAssertGreaterThan(first.bytes.count, 0)
    }

    /// A header with valid checksums but bad contents (as a buggy or hostile writer could make).
    func forged(from source: String? = nil, _ transform: (String) -> String) throws -> String {
        try damaged(from: source) { bytes in
            let headerOffset = Int(bytes[32 ..< 40].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            let text = transform(String(decoding: bytes[headerOffset...], as: UTF8.self))
            let json = Array(text.utf8)
            bytes = Array(bytes[..<headerOffset]) + json
            func put(_ v: UInt64, at o: Int) { for i in 0 ..< 8 { bytes[o + i] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(i))) } }
            put(UInt64(json.count), at: 40)
            put(XXH64.hash(json), at: 48)
            put(XXH64.hash(Array(bytes[0 ..< 56])), at: 56)
        }
    }

    func testForgedHeadersAreRejected() throws {
        func badTensor(_ e: BundleError) -> Bool { if case .badTensor = e { return true } else { return false } }
        func badHeader(_ e: BundleError) -> Bool { if case .badHeader = e { return true } else { return false } }
        expect(try forged { $0.replacingOccurrences(of: "\"shape\":[32,32]", with: "\"shape\":[32,33]") }, badTensor)
        expect(try forged { $0.replacingOccurrences(of: "\"shape\":[32,32]", with: "\"shape\":[9223372036854775807,4]") }, badTensor)
        expect(try forged { $0.replacingOccurrences(of: "\"type\":\"int8\"", with: "\"type\":\"int3\"") }, badTensor)
        let good = try SanaBundle(path: try convert(TestPaths.pipeline("sana10"), .int8, name: "good.sana"))
        let offset = try XCTUnwrap(good.header.tensors.last?.frames.first?.offset)
        expect(try forged { $0.replacingOccurrences(of: "\"offset\":\(offset),", with: "\"offset\":0,") }, badHeader)  // overlap
        expect(try forged { $0.replacingOccurrences(of: "\"offset\":\(offset),", with: "\"offset\":99999999999,") }, badHeader)
        expect(try forged { $0.replacingOccurrences(of: "\"offset\":\(offset),", with: "\"offset\":\(offset + 1),") }, badHeader)
        expect(try forged { $0.replacingOccurrences(of: "\"format\":\"sana-bundle\"", with: "\"format\":\"other\"") }, badHeader)
        expect(try forged { $0.replacingOccurrences(of: "\"tensors\":[", with: "\"tensorz\":[") }, badHeader)
        expect(try forged { _ in "[1,2" }, badHeader)
        let int8 = StorageLayout(.int8)
        expect(try forged { $0.replacingOccurrences(of: "\"int8\":{\"group_size\":\(int8.groupSize)", with: "\"int8\":{\"group_size\":\(int8.groupSize * 2)") }, badTensor)
    }

    // MARK: Convolution weight layout (docs/FORMAT.md "Convolution weight layout")

    /// k×k convolution weights whose input channels fill whole quantization groups are stored tap-major in integer
    /// bundles (version 2, `layout` recorded); read back through `floats()` they are in the reference order again.
    /// Float bundles stay version 1 without the key. A forged `layout` is rejected.
    func testTapMajorConvolutionWeights() throws {
        let pipe = try TestPaths.copyPipeline("sana10", to: dir)
        var rng = TestRandom(state: 7)
        let w64 = (0 ..< 4 * 64 * 9).map { _ in rng.normal() * 0.05 }, w128 = (0 ..< 3 * 128 * 9).map { _ in rng.normal() * 0.05 }
        func bytes(_ v: [Float]) -> [UInt8] { v.flatMap { f in withUnsafeBytes(of: f.bitPattern.littleEndian) { Array($0) } } }
        let vae = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: pipe + "/vae").first { $0.hasSuffix(".safetensors") })
        try SafetensorsBuilder.rewrite(pipe + "/vae/" + vae, adding: [("decoder.extra64.weight", "F32", [4, 64, 3, 3], bytes(w64)),
                                                                     ("decoder.extra128.weight", "F32", [3, 128, 3, 3], bytes(w128))])
        for (type, tapMajor) in [(StorageType.int8, ["decoder.extra128.weight"]), (.int4, ["decoder.extra64.weight", "decoder.extra128.weight"])] {
            let path = try convert(pipe, type)
            let b = try SanaBundle(path: path)
            XCTAssertEqual(b.header.version, 2, type.name)
            let vaeSource = try b.component("vae")
            for (name, shape, values) in [("decoder.extra64.weight", [4, 64, 3, 3], w64), ("decoder.extra128.weight", [3, 128, 3, 3], w128)] {
                let rec = try vaeSource.info(name), t = try vaeSource.tensor(name)
                let expected: TensorLayout = tapMajor.contains(name) ? .tapMajor : .reference
                XCTAssertEqual(t.layout, expected, "\(type.name) \(name)")
                XCTAssertEqual(rec.layout, expected == .reference ? nil : "tap_major")
                // The stored bytes are the tap-major packing of the source; floats() gives the reference order back.
                XCTAssertEqual(t.bytes, StoredTensor.pack(name: name, shape: shape, values: values, as: type, layout: expected).bytes)
                XCTAssertLessThanOrEqual(Self.relRMS(t.floats(), values), Self.bound[type] ?? 0)
            }
            // Every other tensor of the tiny pipelines has too few input channels for a whole group.
            XCTAssertEqual(b.header.tensors.filter { $0.layout != nil }.map(\.name).sorted(), tapMajor.sorted())
            if type == .int8 {
                func badTensor(_ e: BundleError) -> Bool { if case .badTensor = e { return true } else { return false } }
                expect(try forged(from: path) { $0.replacingOccurrences(of: "\"layout\":\"tap_major\"", with: "\"layout\":\"diagonal\"") }, badTensor)
                let float = try convert(pipe, .f32)
                XCTAssertEqual(try SanaBundle(path: float).header.version, 1)
                XCTAssertTrue(try SanaBundle(path: float).header.tensors.allSatisfy { $0.layout == nil })
                // A layout key in a version-1 bundle, or on a tensor that is not a k×k convolution weight.
                expect(try forged(from: float) { $0.replacingOccurrences(of: "\"name\":\"decoder.extra128.weight\"", with: "\"layout\":\"tap_major\",\"name\":\"decoder.extra128.weight\"") }, badTensor)
                expect(try forged(from: path) { $0.replacingOccurrences(of: "\"shape\":[3,128,3,3]", with: "\"shape\":[3,1152]") }, badTensor)
            }
        }
    }
}
