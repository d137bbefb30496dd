// The instruction's prefix cache stored at conversion (Gemma2PrefixCache+Bundle.swift, docs/FORMAT.md "Derived
// components"), on the tiny sana10 pipeline (Tests/Fixtures/pipelines/sana10: ${PYTHON:-.venv-ref/bin/python}
// tools/fixtures/make_tiny_pipeline.py) and diffusers' encode_prompt output for it (Tests/Fixtures/e2e/sana10_chi_*:
// ${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_e2e_refs.py). Tolerances: docs/NUMERICS.md "Gemma-2 text encoder".
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

final class PrefixCacheBundleTests: XCTestCase {
    nonisolated(unsafe) static var directory: URL?
    nonisolated(unsafe) static var bundles: [String: String] = [:]

    override class func tearDown() {
        if let directory { try? FileManager.default.removeItem(at: directory) }
        directory = nil
        bundles = [:]
    }

    static func path(_ name: String) throws -> String {
        let dir = try directory ?? {
            let d = FileManager.default.temporaryDirectory.appendingPathComponent("prefix-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
            directory = d
            return d
        }()
        return dir.appendingPathComponent(name + ".sana").path
    }

    /// sana10 converted with `derived` (once per key for the class).
    static func bundle(_ key: String, _ weights: StorageType, derived: [DerivedComponent]) throws -> String {
        if let p = bundles[key] { return p }
        let p = try path(key)
        var options = ConversionOptions(weights: weights, threads: 1)
        options.derived = derived
        _ = try Converter.convert(pipelinePath: Fixtures.path("pipelines/sana10"), output: p, options: options)
        bundles[key] = p
        return p
    }

    static func withCache(_ weights: StorageType) throws -> String {
        try bundle("cache-\(weights.name)", weights, derived: [Gemma2PrefixCache.derivedComponent()])
    }

    static func withoutCache(_ weights: StorageType) throws -> String {
        try bundle("plain-\(weights.name)", weights, derived: [])
    }

    /// The prompt encoder of a bundle as `sana generate` builds it.
    func encoder(_ path: String, instruction: [String]? = SanaPromptEncoder.defaultComplexHumanInstruction,
                 msl: Int = 300) throws -> SanaPromptEncoder {
        try SanaPromptEncoder(bundle: SanaBundle(path: path), maxSequenceLength: msl, instruction: instruction)
    }

    /// diffusers' prompt_embeds [2, 300, C] of the sana10_chi case (negative first), padded rows zeroed as ours are.
    func reference() throws -> (prompt: String, negative: String, embeds: Tensor) {
        struct Case: Decodable { let name: String, prompt: String, negative_prompt: String }
        let data = try XCTUnwrap(FileManager.default.contents(atPath: Fixtures.path("e2e/cases.json")))
        let c = try XCTUnwrap(try JSONDecoder().decode([Case].self, from: data).first { $0.name == "sana10_chi" })
        var ref = try Fixtures.tensor("e2e/sana10_chi_prompt_embeds.npy")
        let mask = try Fixtures.tensor("e2e/sana10_chi_prompt_attention_mask.npy")
        let width = ref.shape[2]
        for (row, m) in mask.data.enumerated() where m == 0 {
            for j in 0 ..< width { ref.data[row * width + j] = 0 }
        }
        return (c.prompt, c.negative_prompt, ref)
    }

    /// [negative; positive] as the pipeline stacks them.
    func stacked(_ enc: SanaPromptEncoder, _ prompt: String, _ negative: String) throws -> Tensor {
        let (pos, neg) = try enc.encode(prompts: [prompt], negativePrompts: [negative])
        return Tensor(shape: [2] + Array(pos.embeds.shape.dropFirst()), data: neg.embeds.data + pos.embeds.data)
    }

    func testStoredCacheEqualsComputedAndDiffusers() throws {
        let ref = try reference()
        for weights in [StorageType.f32, .int8] {
            let stored = try encoder(Self.withCache(weights))
            let computed = try encoder(Self.withoutCache(weights))
            XCTAssertNotNil(stored.storedPrefixCache)
            XCTAssertNil(computed.storedPrefixCache)
            let a = try stacked(stored, ref.prompt, ref.negative)
            let b = try stacked(computed, ref.prompt, ref.negative)
            XCTAssertEqual(stored.prefixCacheOrigin, .stored, weights.name)
            XCTAssertEqual(computed.prefixCacheOrigin, .computed, weights.name)
            // A full run: the instruction through the encoder with the prompt, no cache at all.
            let (fullPos, fullNeg) = try computed.encode(prompts: [ref.prompt], negativePrompts: [ref.negative], useCache: false)
            let full = Tensor(shape: a.shape, data: fullNeg.embeds.data + fullPos.embeds.data)
            let same = relativeMaxError(a, b), vsFull = relativeMaxError(a, full), vsRef = relativeMaxError(a, ref.embeds)
            print("stored prefix cache \(weights.name): vs computed in-process \(same), vs a full run \(vsFull), vs diffusers \(vsRef)")
            XCTAssertLessThan(same, 1e-6, weights.name)
            XCTAssertLessThan(vsFull, 1e-6, weights.name)
            if weights == .f32 { XCTAssertLessThan(vsRef, 1e-4) }
            // The stored cache holds what this process computes from the same stored weights.
            let loaded = try XCTUnwrap(stored.prefixCache()), made = try XCTUnwrap(computed.prefixCache())
            XCTAssertEqual(loaded.ids, made.ids)
            XCTAssertEqual(loaded.output, made.output, weights.name)
            XCTAssertEqual(loaded.keys, made.keys, weights.name)
            XCTAssertEqual(loaded.values, made.values, weights.name)
        }
    }

    func testGenerateStageUsesIt() throws {
        // The text encoder `sana generate` builds (SanaPipeline(bundlePath:) → BundleTextEncoder).
        for (path, origin) in [(try Self.withCache(.f32), SanaPromptEncoder.PrefixCacheOrigin.stored),
                               (try Self.withoutCache(.f32), .computed)] {
            let bundle = try SanaBundle(path: path)
            let text = try BundleTextEncoder(bundle: bundle, config: Gemma2Config.decode(bundle.config("text_encoder"), origin: path))
            _ = try text.encode(prompts: ["a red fox"], negativePrompts: [""], maxSequenceLength: 300, complexHumanInstruction: true)
            XCTAssertEqual(text.encoders.values.first?.prefixCacheOrigin, origin)
        }
    }

    func testOtherInstructionOrNoneDoesNotUseIt() throws {
        let path = try Self.withCache(.f32)
        let own = try encoder(path, instruction: ["Describe the picture:", "User Prompt: "], msl: 24)
        _ = try own.encode(prompts: ["a red fox"], negativePrompts: [""])
        XCTAssertNotNil(own.storedPrefixCache)
        XCTAssertEqual(own.prefixCacheOrigin, .computed)
        // The instruction minus its last line: the stored ids share a prefix but are not equal.
        let shorter = try encoder(path, instruction: Array(SanaPromptEncoder.defaultComplexHumanInstruction.dropLast()), msl: 24)
        _ = try shorter.encode(prompts: ["a red fox"], negativePrompts: [""])
        XCTAssertEqual(shorter.prefixCacheOrigin, .computed)
        let none = try encoder(path, instruction: nil, msl: 24)
        _ = try none.encode(prompts: ["a red fox"], negativePrompts: [""])
        XCTAssertNil(try none.prefixCache())
        XCTAssertNil(none.prefixCacheOrigin)
    }

    func testCorruptCacheFrameIsATypedErrorNamingIt() throws {
        let good = try Self.withCache(.f32), bad = try Self.path("corrupt")
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: good)))
        let header = try SanaBundle(path: good).header
        let record = try XCTUnwrap(header.tensors.first { $0.component == Gemma2PrefixCache.componentName && $0.name == "layers.1.value_states" })
        bytes[BundleFormat.preambleSize + record.frames[0].offset + record.frames[0].size / 2] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        let enc = try encoder(bad)  // the header is intact: opening works, the frame is checked when read
        XCTAssertThrowsError(try enc.encode(prompts: ["a red fox"], negativePrompts: [""])) { error in
            XCTAssertEqual(error as? BundleError, .checksumMismatch(
                path: bad, what: "\(Gemma2PrefixCache.componentName)/layers.1.value_states frame 0"), "\(error)")
        }
        // Not used, so not read: without the instruction the bundle still works.
        XCTAssertNoThrow(try encoder(bad, instruction: nil).encode(prompts: ["a red fox"], negativePrompts: [""]))
    }

    /// A cache component written by `write` with a config for the tiny text encoder (2 layers, kv 32, hidden 32).
    func misshapen(_ name: String, ids: [Int] = [2, 5, 7],
                   write: @escaping @Sendable (DerivedTensorWriter) throws -> Void) throws -> String {
        let config = Gemma2PrefixCache.StoredConfig(format: Gemma2PrefixCache.StoredConfig.formatName, instruction: "x",
                                                    ids: ids, hiddenSize: 32, numHiddenLayers: 2, kvWidth: 32)
        let text = String(decoding: try JSONEncoder().encode(config), as: UTF8.self)
        let d = DerivedComponent(name: Gemma2PrefixCache.componentName, after: "text_encoder") { _, out in
            try write(out)
            return ComponentRecord(className: "Gemma2PrefixCache", library: "sanaedge", config: text, sourceBytes: 0)
        }
        return try Self.bundle(name, .f32, derived: [d])
    }

    func testMisshapenCacheIsATypedErrorNamingIt() throws {
        @Sendable func full(_ out: DerivedTensorWriter, outputRows: Int) throws {
            for i in 0 ..< 2 {
                try out.append(name: "layers.\(i).key_states", shape: [3, 32], values: [Float](repeating: 0.5, count: 96))
                try out.append(name: "layers.\(i).value_states", shape: [3, 32], values: [Float](repeating: 0.5, count: 96))
            }
            try out.append(name: "last_hidden_state", shape: [outputRows, 32], values: [Float](repeating: 1, count: outputRows * 32))
        }
        let cases: [(String, String, ModelError)] = [
            ("rows", try misshapen("rows") { try full($0, outputRows: 4) },
             .shapeMismatch(tensor: "text_encoder_prefix_cache/last_hidden_state", expected: [3, 32], actual: [4, 32])),
            ("missing", try misshapen("missing") { out in
                try out.append(name: "last_hidden_state", shape: [3, 32], values: [Float](repeating: 1, count: 96))
            }, .missingTensors(component: "text_encoder_prefix_cache", names: ["layers.0.key_states", "layers.0.value_states",
                                                                                "layers.1.key_states", "layers.1.value_states"])),
            ("extra", try misshapen("extra") { out in
                try full(out, outputRows: 3)
                try out.append(name: "layers.2.key_states", shape: [3, 32], values: [Float](repeating: 0.5, count: 96))
            }, .unexpectedTensors(component: "text_encoder_prefix_cache", names: ["layers.2.key_states"])),
        ]
        for (name, path, expected) in cases {
            XCTAssertThrowsError(try encoder(path), name) { XCTAssertEqual($0 as? ModelError, expected, "\(name): \($0)") }
            XCTAssertThrowsError(try SanaPipeline(bundlePath: path).generate(GenerationRequest(prompt: "a fox")), name)
        }
        let badIds = try misshapen("ids", ids: [2, 100_000]) { try full($0, outputRows: 2) }
        XCTAssertThrowsError(try encoder(badIds)) { error in
            guard case .unsupportedConfig(component: "text_encoder_prefix_cache", _)? = error as? ModelError else {
                return XCTFail("\(error)")
            }
        }
    }

    func testMemoryPlanCountsTheStoredCache() throws {
        var r = GenerationRequest(prompt: "a fox")
        (r.width, r.height) = (64, 64)
        let stored = try BundleModels(bundle: SanaBundle(path: Self.withCache(.f32)), memoryBudget: nil, baseline: 0).plan
        let computed = try BundleModels(bundle: SanaBundle(path: Self.withoutCache(.f32)), memoryBudget: nil, baseline: 0).plan
        let tokens = try encoder(Self.withCache(.f32)).storedPrefixCache?.ids.count
        XCTAssertEqual(stored.storedPrefixTokens, tokens)
        XCTAssertNil(computed.storedPrefixTokens)
        // The instruction's rows are read, not computed: fewer activations than the byte-count upper bound.
        XCTAssertLessThan(stored.encodeBytes(r).activations, computed.encodeBytes(r).activations)
        r.complexHumanInstruction = false
        XCTAssertEqual(stored.encodeBytes(r).activations, computed.encodeBytes(r).activations)
    }

    func testFailingComputationLeavesNoBundle() throws {
        let out = try Self.path("failed")
        var options = ConversionOptions(weights: .f32, threads: 1)
        struct Boom: Error {}
        options.derived = [DerivedComponent(name: Gemma2PrefixCache.componentName, after: "text_encoder") { _, w in
            try w.append(name: "last_hidden_state", shape: [1, 4], values: [1, 2, 3, 4])
            throw Boom()
        }]
        XCTAssertThrowsError(try Converter.convert(pipelinePath: Fixtures.path("pipelines/sana10"), output: out, options: options))
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // A component derived from one that is not converted is an error, not silently skipped.
        options.derived = [DerivedComponent(name: "orphan", after: "text_encoder_2") { _, _ in nil }]
        XCTAssertThrowsError(try Converter.convert(pipelinePath: Fixtures.path("pipelines/sana10"), output: out, options: options)) {
            XCTAssertTrue("\($0)".contains("'text_encoder_2'"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: URL(fileURLWithPath: out).deletingLastPathComponent().path)
        XCTAssertFalse(leftovers.contains { $0.contains("partial") }, "\(leftovers)")
    }
}
