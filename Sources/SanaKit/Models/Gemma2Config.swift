// Gemma2Config (transformers/models/gemma2/configuration_gemma2.py) decoded from the text encoder's config.json.
// Accepts both the transformers 4.x layout (top-level rope_theta, no layer_types) and the 5.x one (rope_parameters,
// layer_types); defaults are the reference's.
import Foundation

public struct Gemma2Config: Codable, Sendable, Equatable {
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numHiddenLayers: Int
    public var numAttentionHeads: Int
    public var numKeyValueHeads: Int
    public var headDim: Int
    /// "gelu_pytorch_tanh" in every released Gemma-2.
    public var hiddenActivation: String
    public var rmsNormEps: Double
    public var ropeTheta: Double
    /// Attention logits are scaled by query_pre_attn_scalar^-0.5 (not head_dim^-0.5).
    public var queryPreAttnScalar: Double
    /// Keys a sliding layer's query sees: itself and the sliding_window − 1 before it.
    public var slidingWindow: Int?
    /// "sliding_attention" or "full_attention" per layer; default: even layers slide (layer 0 slides).
    public var layerTypes: [String]
    /// Attention logits become cap·tanh(logit/cap); nil disables.
    public var attnLogitSoftcapping: Double?
    public var attentionBias: Bool

    enum CodingKeys: String, CodingKey {
        case vocabSize = "vocab_size", hiddenSize = "hidden_size", intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers", numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads", headDim = "head_dim", hiddenActivation = "hidden_activation"
        case hiddenAct = "hidden_act", rmsNormEps = "rms_norm_eps", ropeTheta = "rope_theta"
        case ropeParameters = "rope_parameters", queryPreAttnScalar = "query_pre_attn_scalar"
        case slidingWindow = "sliding_window", layerTypes = "layer_types", attnLogitSoftcapping = "attn_logit_softcapping"
        case attentionBias = "attention_bias", useBidirectionalAttention = "use_bidirectional_attention"
    }

    struct RopeParameters: Codable {
        var ropeType: String?
        var ropeTheta: Double?
        enum CodingKeys: String, CodingKey { case ropeType = "rope_type", ropeTheta = "rope_theta" }
    }

    public init(vocabSize: Int = 256_000, hiddenSize: Int = 2304, intermediateSize: Int = 9216, numHiddenLayers: Int = 26,
                numAttentionHeads: Int = 8, numKeyValueHeads: Int = 4, headDim: Int = 256,
                hiddenActivation: String = "gelu_pytorch_tanh", rmsNormEps: Double = 1e-6, ropeTheta: Double = 10000,
                queryPreAttnScalar: Double = 256, slidingWindow: Int? = 4096, layerTypes: [String]? = nil,
                attnLogitSoftcapping: Double? = 50, attentionBias: Bool = false) {
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads
        self.headDim = headDim
        self.hiddenActivation = hiddenActivation
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.queryPreAttnScalar = queryPreAttnScalar
        self.slidingWindow = slidingWindow
        self.layerTypes = layerTypes ?? Gemma2Config.defaultLayerTypes(numHiddenLayers)
        self.attnLogitSoftcapping = attnLogitSoftcapping
        self.attentionBias = attentionBias
    }

    /// Gemma2Config.__post_init__: layer i slides when (i + 1) is odd.
    static func defaultLayerTypes(_ n: Int) -> [String] {
        (0 ..< n).map { ($0 + 1) % 2 == 1 ? "sliding_attention" : "full_attention" }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Gemma2Config()
        let layers = try c.decodeIfPresent(Int.self, forKey: .numHiddenLayers) ?? d.numHiddenLayers
        let heads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        let hidden = try c.decodeIfPresent(Int.self, forKey: .hiddenSize) ?? d.hiddenSize
        let rope = try c.decodeIfPresent(RopeParameters.self, forKey: .ropeParameters)
        if let type = rope?.ropeType, type != "default" {
            throw ModelError.unsupportedConfig(component: "Gemma2", reason: "rope_type \(type) (only default RoPE)")
        }
        if try c.decodeIfPresent(Bool.self, forKey: .useBidirectionalAttention) == true {
            throw ModelError.unsupportedConfig(component: "Gemma2", reason: "use_bidirectional_attention")
        }
        self.init(vocabSize: try c.decodeIfPresent(Int.self, forKey: .vocabSize) ?? d.vocabSize,
                  hiddenSize: hidden,
                  intermediateSize: try c.decodeIfPresent(Int.self, forKey: .intermediateSize) ?? d.intermediateSize,
                  numHiddenLayers: layers, numAttentionHeads: heads,
                  numKeyValueHeads: try c.decodeIfPresent(Int.self, forKey: .numKeyValueHeads) ?? d.numKeyValueHeads,
                  headDim: try c.decodeIfPresent(Int.self, forKey: .headDim) ?? hidden / max(heads, 1),
                  hiddenActivation: try c.decodeIfPresent(String.self, forKey: .hiddenActivation)
                      ?? c.decodeIfPresent(String.self, forKey: .hiddenAct) ?? d.hiddenActivation,
                  rmsNormEps: try c.decodeIfPresent(Double.self, forKey: .rmsNormEps) ?? d.rmsNormEps,
                  ropeTheta: try rope?.ropeTheta ?? c.decodeIfPresent(Double.self, forKey: .ropeTheta) ?? d.ropeTheta,
                  queryPreAttnScalar: try c.decodeIfPresent(Double.self, forKey: .queryPreAttnScalar) ?? d.queryPreAttnScalar,
                  slidingWindow: c.contains(.slidingWindow) ? try c.decodeIfPresent(Int.self, forKey: .slidingWindow) : d.slidingWindow,
                  layerTypes: try c.decodeIfPresent([String].self, forKey: .layerTypes),
                  attnLogitSoftcapping: c.contains(.attnLogitSoftcapping)
                      ? try c.decodeIfPresent(Double.self, forKey: .attnLogitSoftcapping) : d.attnLogitSoftcapping,
                  attentionBias: try c.decodeIfPresent(Bool.self, forKey: .attentionBias) ?? d.attentionBias)
        try validate()
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(hiddenActivation, forKey: .hiddenActivation)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(RopeParameters(ropeType: "default", ropeTheta: ropeTheta), forKey: .ropeParameters)
        try c.encode(queryPreAttnScalar, forKey: .queryPreAttnScalar)
        try c.encode(slidingWindow, forKey: .slidingWindow)
        try c.encode(layerTypes, forKey: .layerTypes)
        try c.encode(attnLogitSoftcapping, forKey: .attnLogitSoftcapping)
        try c.encode(attentionBias, forKey: .attentionBias)
    }

    /// Reads and validates config.json.
    public static func load(path: String) throws -> Gemma2Config {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.badInput("Gemma2: cannot read \(path)")
        }
        return try decode(data, origin: path)
    }

    /// Decodes (does not validate) config.json bytes; `origin` names them in errors.
    public static func decode(_ data: Data, origin: String) throws -> Gemma2Config {
        do {
            return try JSONDecoder().decode(Gemma2Config.self, from: data)
        } catch let e as ModelError {
            throw e
        } catch {
            throw ModelError.unsupportedConfig(component: "Gemma2", reason: "\(origin): \(error)")
        }
    }

    public func validate() throws {
        func fail(_ r: String) -> ModelError { .unsupportedConfig(component: "Gemma2", reason: r) }
        for (name, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("intermediate_size", intermediateSize),
                          ("num_hidden_layers", numHiddenLayers), ("num_attention_heads", numAttentionHeads),
                          ("num_key_value_heads", numKeyValueHeads), ("head_dim", headDim)] where v <= 0 {
            throw fail("\(name) = \(v) must be positive")
        }
        guard numAttentionHeads % numKeyValueHeads == 0 else {
            throw fail("num_attention_heads \(numAttentionHeads) is not a multiple of num_key_value_heads \(numKeyValueHeads)")
        }
        guard headDim % 2 == 0 else { throw fail("head_dim \(headDim) must be even for RoPE") }
        guard let act = Activation(referenceName: hiddenActivation), act != .identity else {
            throw fail("hidden_activation \(hiddenActivation)")
        }
        guard layerTypes.count == numHiddenLayers else { throw fail("layer_types has \(layerTypes.count) entries for \(numHiddenLayers) layers") }
        for t in layerTypes where t != "sliding_attention" && t != "full_attention" { throw fail("layer type \(t)") }
        if layerTypes.contains("sliding_attention") {
            guard let w = slidingWindow, w > 0 else { throw fail("sliding layers need a positive sliding_window") }
        }
        guard queryPreAttnScalar > 0, rmsNormEps >= 0, ropeTheta > 0 else { throw fail("query_pre_attn_scalar, rms_norm_eps or rope_theta out of range") }
        if let cap = attnLogitSoftcapping, cap <= 0 { throw fail("attn_logit_softcapping \(cap) must be positive") }
    }

    /// The activation of the MLP gate.
    var activation: Activation { Activation(referenceName: hiddenActivation) ?? .geluTanh }
    func isSliding(_ layer: Int) -> Bool { layerTypes[layer] == "sliding_attention" }
}
