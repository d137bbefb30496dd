// The instruction's prefix cache stored in a bundle (docs/FORMAT.md "Derived components: the instruction prefix
// cache"): `sana convert` computes it from the stored (quantized) text-encoder weights of the bundle being written, so
// a fresh process encodes only the tokens after the instruction, with exactly what a full run on that bundle gives.
//
// Component `text_encoder_prefix_cache` (class Gemma2PrefixCache, library sanaedge); its config holds the
// instruction text and its ids; tensors, float32 (P = ids.count, kv = num_key_value_heads·head_dim):
//   layers.{i}.key_states    [P, kv]      keys after RoPE of layer i
//   layers.{i}.value_states  [P, kv]      values of layer i
//   last_hidden_state        [P, hidden]  final-norm outputs of the prefix positions
import Foundation
import SanaFormat

extension Gemma2PrefixCache {
    /// The bundle component holding the cache.
    public static let componentName = "text_encoder_prefix_cache"
    static let className = "Gemma2PrefixCache"

    /// The component's config (JSON, snake_case).
    public struct StoredConfig: Codable, Sendable, Equatable {
        public static let formatName = "sanaedge-gemma2-prefix-cache"
        public var format: String
        /// The instruction text as encoded ("\n"-joined lines), for display; `ids` decide whether it is used.
        public var instruction: String
        /// The prefix ids (<bos> included).
        public var ids: [Int]
        public var hiddenSize: Int
        public var numHiddenLayers: Int
        public var kvWidth: Int

        enum CodingKeys: String, CodingKey {
            case format, instruction, ids, hiddenSize = "hidden_size", numHiddenLayers = "num_hidden_layers"
            case kvWidth = "kv_width"
        }
    }

    static func keyName(_ i: Int) -> String { "layers.\(i).key_states" }
    static func valueName(_ i: Int) -> String { "layers.\(i).value_states" }
    static let outputName = "last_hidden_state"

    /// Tensor names and shapes of a cache of `tokens` positions for `config`.
    static func expectedShapes(_ config: Gemma2Config, tokens: Int) -> [String: [Int]] {
        let kv = config.numKeyValueHeads * config.headDim
        var shapes = [outputName: [tokens, config.hiddenSize]]
        for i in 0 ..< config.numHiddenLayers {
            shapes[keyName(i)] = [tokens, kv]
            shapes[valueName(i)] = [tokens, kv]
        }
        return shapes
    }

    /// For `sana convert`: computes the cache of `instruction` (default: SanaPipeline's complex human instruction)
    /// from the text encoder already written to the bundle, tokenized with the bundle's tokenizer, and stores it.
    public static func derivedComponent(
        instruction: [String] = SanaPromptEncoder.defaultComplexHumanInstruction) -> DerivedComponent {
        DerivedComponent(name: componentName, after: "text_encoder") { bundle, out in
            // The same code path that computes it at run time (SanaPromptEncoder.prefixCache).
            let prompt = try SanaPromptEncoder(bundle: bundle, instruction: instruction, storedPrefixCache: false)
            guard let cache = try prompt.prefixCache(), let chi = prompt.instructionText else { return nil }
            let config = prompt.encoder.config
            try cache.write(to: out)
            let stored = StoredConfig(format: StoredConfig.formatName, instruction: chi, ids: cache.ids,
                                      hiddenSize: config.hiddenSize, numHiddenLayers: config.numHiddenLayers,
                                      kvWidth: config.numKeyValueHeads * config.headDim)
            let e = JSONEncoder()
            e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            return ComponentRecord(className: className, library: "sanaedge",
                                   config: String(decoding: try e.encode(stored), as: UTF8.self), sourceBytes: 0)
        }
    }

    func write(to out: DerivedTensorWriter) throws {
        let p = ids.count, kv = config.numKeyValueHeads * config.headDim
        for i in 0 ..< config.numHiddenLayers {
            try out.append(name: Self.keyName(i), shape: [p, kv], values: keys[i])
            try out.append(name: Self.valueName(i), shape: [p, kv], values: values[i])
        }
        try out.append(name: Self.outputName, shape: [p, config.hiddenSize], values: output)
    }

    /// The cache stored in `bundle`, checked against the text encoder's `config` (names, shapes, float32, ids), its
    /// tensors not yet read; nil when the bundle has none (older bundles: the runtime computes it).
    public static func stored(in bundle: SanaBundle, config: Gemma2Config) throws -> StoredPrefixCache? {
        guard bundle.header.components[componentName] != nil else { return nil }
        let component = try bundle.component(componentName)
        let stored: StoredConfig
        do {
            stored = try JSONDecoder().decode(StoredConfig.self, from: bundle.config(componentName))
        } catch {
            throw ModelError.unsupportedConfig(component: componentName, reason: "config: \(error)")
        }
        let kv = config.numKeyValueHeads * config.headDim
        guard stored.format == StoredConfig.formatName, stored.hiddenSize == config.hiddenSize,
              stored.numHiddenLayers == config.numHiddenLayers, stored.kvWidth == kv else {
            throw ModelError.unsupportedConfig(
                component: componentName,
                reason: "format '\(stored.format)', hidden \(stored.hiddenSize), layers \(stored.numHiddenLayers), kv width "
                    + "\(stored.kvWidth); the text encoder has hidden \(config.hiddenSize), layers \(config.numHiddenLayers), kv width \(kv)")
        }
        guard !stored.ids.isEmpty, stored.ids.allSatisfy({ $0 >= 0 && $0 < config.vocabSize }) else {
            throw ModelError.unsupportedConfig(component: componentName, reason: "ids empty or outside the vocabulary")
        }
        let expected = expectedShapes(config, tokens: stored.ids.count)
        try ModelError.checkExactTensorNames(expected: Set(expected.keys), present: component.tensorNames,
                                             component: componentName)
        for (name, shape) in expected.sorted(by: { $0.key < $1.key }) {
            let record = try component.info(name)
            guard record.shape == shape else {
                throw ModelError.shapeMismatch(tensor: "\(componentName)/\(name)", expected: shape, actual: record.shape)
            }
            guard record.storageType == .f32 else {
                throw ModelError.unsupportedConfig(component: componentName, reason: "tensor '\(name)' is \(record.type), not f32")
            }
        }
        return StoredPrefixCache(config: config, stored: stored, component: component)
    }
}

/// A prefix cache in a bundle whose header has been checked; `load()` reads its tensors (checksums checked).
public struct StoredPrefixCache: Sendable {
    public let config: Gemma2Config
    public let stored: Gemma2PrefixCache.StoredConfig
    let component: BundleComponent

    public var ids: [Int] { stored.ids }
    /// Bytes the loaded cache holds (float32).
    public var byteCount: Int {
        4 * stored.ids.count * (2 * config.numHiddenLayers * stored.kvWidth + config.hiddenSize)
    }

    public func load() throws -> Gemma2PrefixCache {
        let read = { (name: String) in try component.tensor(name).floats() }
        let n = config.numHiddenLayers
        return Gemma2PrefixCache(config: config, ids: stored.ids,
                                 keys: try (0 ..< n).map { try read(Gemma2PrefixCache.keyName($0)) },
                                 values: try (0 ..< n).map { try read(Gemma2PrefixCache.valueName($0)) },
                                 output: try read(Gemma2PrefixCache.outputName))
    }
}
