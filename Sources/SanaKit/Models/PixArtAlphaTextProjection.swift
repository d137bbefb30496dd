import SanaFormat

// Follows diffusers/models/embeddings.py `PixArtAlphaTextProjection` (act_fn "gelu_tanh"): the caption projection
// from the text encoder's width to the DiT's.

/// linear_1 → GELU(tanh) → linear_2 on [B, L, caption_channels] → [B, L, C].
public struct PixArtAlphaTextProjection: Sendable {
    public let linear1: Linear  // caption_projection.linear_1: [C, caption_channels] + bias
    public let linear2: Linear  // caption_projection.linear_2: [C, C] + bias

    public init(_ source: WeightSource, _ prefix: String, inFeatures: Int, hiddenSize: Int) throws {
        linear1 = try Linear(source, prefix + ".linear_1", shape: [hiddenSize, inFeatures])
        linear2 = try Linear(source, prefix + ".linear_2", shape: [hiddenSize, hiddenSize])
    }

    static func tensorShapes(_ prefix: String, inFeatures: Int, hiddenSize: Int) -> [TensorShape] {
        linearShapes(prefix + ".linear_1", [hiddenSize, inFeatures]) + linearShapes(prefix + ".linear_2", [hiddenSize, hiddenSize])
    }

    public func callAsFunction(_ caption: Tensor) -> Tensor {
        linear2.apply(Activation.geluTanh.apply(linear1.apply(caption)))
    }
}
