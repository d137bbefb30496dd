// Mixed storage for the DC-AE decoder (docs/NUMERICS.md "DC-AE", faithfulness): integer weights for most of the
// multiply-adds, bf16 where the integer activation rounding would show in the picture.
import SanaFormat

extension AutoencoderDC {
    /// Which decoder matrix weights a mixed decode stores as integers (the others in float).
    public enum DecoderMix: String, Sendable, CaseIterable {
        /// The ResBlock stages (decoder.up_blocks.I for ResBlock stages I, with their up-sampling convolution):
        /// ~85 % of the multiply-adds of dc-ae-f32c32-sana-1.0; the EfficientViT stages stay float.
        case resBlockStages = "mixed"
        /// Everything but the EfficientViT attention modules (`.attn.`: q/k/v, multi-scale aggregation, output
        /// projection), whose ReLU linear attention amplifies activation rounding.
        case allButAttention = "mixed-attn"
    }

    /// The decoder's ResBlock stages' state-dict prefixes ("decoder.up_blocks.I." for every stage I whose block type
    /// is ResBlock; up_blocks are indexed by stage, 0 = full resolution), or nil when the config's lists are invalid.
    public static func resBlockStagePrefixes(_ config: AutoencoderDCConfig) -> [String]? {
        guard let types = config.decoderBlockTypes.expanded(config.decoderBlockOutChannels.count) else { return nil }
        return types.indices.filter { types[$0] == "ResBlock" }.map { "decoder.up_blocks.\($0)." }
    }

    /// `base` with the matrix weights (QuantizedWeightSource.matrixWeights) re-packed: those `mix` selects as
    /// `integer`, the rest as `float` (each packed once, from `base`'s values).
    public static func mixedDecoderSource(_ base: WeightSource, config: AutoencoderDCConfig, mix: DecoderMix,
                                          integer: StorageType = .int8, float: StorageType = .bf16) throws -> WeightSource {
        let inInteger: @Sendable (String) -> Bool
        switch mix {
        case .resBlockStages:
            guard let prefixes = resBlockStagePrefixes(config) else {
                throw ModelError.unsupportedConfig(component: "vae", reason: "decoder_block_types does not list one type per stage")
            }
            inInteger = { n in prefixes.contains { n.hasPrefix($0) } }
        case .allButAttention:
            inInteger = { n in !n.contains(".attn.") }
        }
        let matrix = QuantizedWeightSource.matrixWeights
        let inner = QuantizedWeightSource(base, as: integer, where: { n, s in matrix(n, s) && inInteger(n) })
        return QuantizedWeightSource(inner, as: float, where: { n, s in matrix(n, s) && !inInteger(n) })
    }
}
