import SanaFormat

// Follows diffusers/models/normalization.py `AdaLayerNormSingle` (with embeddings.py
// `PixArtAlphaCombinedTimestepSizeEmbeddings`, use_additional_conditions=False, as Sana builds it) and
// transformers/sana_transformer.py `SanaCombinedTimestepGuidanceEmbeddings` (Sana Sprint, guidance_embeds=True).
// Both return the 6·C modulation (linear(silu(embedded))) and the embedded timestep [B, C] used by the output norm.

/// adaLN-single: timestep → (modulation [B, 6C], embedded timestep [B, C]).
public struct AdaLayerNormSingle: Sendable {
    public let timestepEmbedder: TimestepEmbedding  // time_embed.emb.timestep_embedder.*
    public let linear: Linear                       // time_embed.linear: [6C, C] + bias

    public init(_ source: WeightSource, _ prefix: String, dim: Int) throws {
        timestepEmbedder = try TimestepEmbedding(source, prefix + ".emb.timestep_embedder", dim: dim)
        linear = try Linear(source, prefix + ".linear", shape: [6 * dim, dim])
    }

    static func tensorShapes(_ prefix: String, dim: Int) -> [TensorShape] {
        TimestepEmbedding.tensorShapes(prefix + ".emb.timestep_embedder", dim: dim) + linearShapes(prefix + ".linear", [6 * dim, dim])
    }

    public func callAsFunction(timestep: [Float]) -> (modulation: Tensor, embedded: Tensor) {
        let embedded = timestepEmbedder(sinusoidalTimestepEmbedding(timestep))
        return (linear.apply(Activation.silu.apply(embedded)), embedded)
    }
}

/// Sana Sprint's timestep + guidance embedding: the two embeddings are summed before the shared 6·C projection.
public struct SanaCombinedTimestepGuidanceEmbeddings: Sendable {
    public let timestepEmbedder: TimestepEmbedding  // time_embed.timestep_embedder.*
    public let guidanceEmbedder: TimestepEmbedding  // time_embed.guidance_embedder.*
    public let linear: Linear                       // time_embed.linear: [6C, C] + bias

    public init(_ source: WeightSource, _ prefix: String, dim: Int) throws {
        timestepEmbedder = try TimestepEmbedding(source, prefix + ".timestep_embedder", dim: dim)
        guidanceEmbedder = try TimestepEmbedding(source, prefix + ".guidance_embedder", dim: dim)
        linear = try Linear(source, prefix + ".linear", shape: [6 * dim, dim])
    }

    static func tensorShapes(_ prefix: String, dim: Int) -> [TensorShape] {
        TimestepEmbedding.tensorShapes(prefix + ".timestep_embedder", dim: dim)
            + TimestepEmbedding.tensorShapes(prefix + ".guidance_embedder", dim: dim) + linearShapes(prefix + ".linear", [6 * dim, dim])
    }

    public func callAsFunction(timestep: [Float], guidance: [Float]) -> (modulation: Tensor, embedded: Tensor) {
        let conditioning = timestepEmbedder(sinusoidalTimestepEmbedding(timestep))
            + guidanceEmbedder(sinusoidalTimestepEmbedding(guidance))
        return (linear.apply(Activation.silu.apply(conditioning)), conditioning)
    }
}
