// Mixed storage for the DC-AE decoder (docs/NUMERICS.md "DC-AE", faithfulness): integer weights for the
// full-resolution ResBlock stages, which hold ~85 % of the multiply-adds, and bf16 for the low-resolution
// EfficientViT stages, whose ReLU linear attention amplifies int8 activation rounding.
import SanaFormat

extension AutoencoderDC {
    /// The decoder's ResBlock stages' state-dict prefixes ("decoder.up_blocks.I." for every stage I whose block type
    /// is ResBlock; up_blocks are indexed by stage, 0 = full resolution), or nil when the config's lists are invalid.
    public static func resBlockStagePrefixes(_ config: AutoencoderDCConfig) -> [String]? {
        guard let types = config.decoderBlockTypes.expanded(config.decoderBlockOutChannels.count) else { return nil }
        return types.indices.filter { types[$0] == "ResBlock" }.map { "decoder.up_blocks.\($0)." }
    }

    /// `base` with the decoder's matrix weights (QuantizedWeightSource.matrixWeights) re-packed: ResBlock stages as
    /// `resBlocks`, the rest as `others` (each packed once, from `base`'s values).
    public static func mixedDecoderSource(_ base: WeightSource, config: AutoencoderDCConfig, resBlocks: StorageType,
                                          others: StorageType) throws -> WeightSource {
        guard let prefixes = resBlockStagePrefixes(config) else {
            throw ModelError.unsupportedConfig(component: "vae", reason: "decoder_block_types does not list one type per stage")
        }
        let matrix = QuantizedWeightSource.matrixWeights
        let inResBlocks: @Sendable (String) -> Bool = { n in prefixes.contains { n.hasPrefix($0) } }
        let inner = QuantizedWeightSource(base, as: resBlocks, where: { n, s in matrix(n, s) && inResBlocks(n) })
        return QuantizedWeightSource(inner, as: others, where: { n, s in matrix(n, s) && !inResBlocks(n) })
    }
}
