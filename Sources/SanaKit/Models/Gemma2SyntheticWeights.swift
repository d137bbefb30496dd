// Random weights for a full-size Gemma-2 (models/configs/gemma-2-2b.json) without a checkpoint, for `sana bench
// gemma`: the layer matrices come from SyntheticWeightSource (synthesized when a layer is loaded, in any storage
// type), and the 256k-row token embedding is synthesized row by row, so only the rows of the prompt ever exist.
import CSanaKernels
import SanaFormat

extension Gemma2Model {
    /// Every state-dict key of a Gemma2Model under `config`, with its reference shape.
    public static func expectedTensors(_ c: Gemma2Config) -> [(name: String, shape: [Int])] {
        let h = c.hiddenSize, qw = c.numAttentionHeads * c.headDim, kvw = c.numKeyValueHeads * c.headDim
        var t: [(name: String, shape: [Int])] = [("embed_tokens.weight", [c.vocabSize, h]), ("norm.weight", [h])]
        for i in 0 ..< c.numHiddenLayers {
            let p = "layers.\(i)."
            for (name, shape) in [("self_attn.q_proj", [qw, h]), ("self_attn.k_proj", [kvw, h]), ("self_attn.v_proj", [kvw, h]),
                                  ("self_attn.o_proj", [h, qw])] {
                t.append((p + name + ".weight", shape))
                if c.attentionBias { t.append((p + name + ".bias", [shape[0]])) }
            }
            t += [(p + "mlp.gate_proj.weight", [c.intermediateSize, h]), (p + "mlp.up_proj.weight", [c.intermediateSize, h]),
                  (p + "mlp.down_proj.weight", [h, c.intermediateSize])]
            t += Gemma2DecoderLayer.norms.map { (p + $0 + ".weight", [h]) }
        }
        return t
    }

    /// A full-size model on random weights: layer matrices in `type`, the embedding read as `embeddingType` rows.
    public static func synthetic(config: Gemma2Config, type: StorageType, embeddingType: StorageType,
                                 seed: UInt64 = 0) throws -> Gemma2Model {
        let source = SyntheticWeightSource(expectedTensors(config), type: type, seed: seed)
        return try Gemma2Model(config: config, source: source,
                               embedding: SyntheticEmbeddingRows(cols: config.hiddenSize, storage: embeddingType, seed: seed))
    }
}

/// Rows of a random [vocab, cols] embedding (uniform ±0.03, rounded to `storage` for f16/bf16), each a pure function
/// of (seed, row): nothing of the table is held.
public struct SyntheticEmbeddingRows: EmbeddingRowReader {
    public let cols: Int
    public let storage: StorageType
    public let seed: UInt64

    public init(cols: Int, storage: StorageType, seed: UInt64 = 0) {
        self.cols = cols
        self.storage = storage
        self.seed = seed
    }

    public func rows(_ indices: [Int]) throws -> (values: [Float], storage: StorageType) {
        var out = [Float](repeating: 0, count: indices.count * cols)
        for (r, row) in indices.enumerated() {
            var state = seed &+ UInt64(truncatingIfNeeded: row) &* 0x9E37_79B9_7F4A_7C15
            for j in 0 ..< cols {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                let v = 0.03 * (Float(state >> 40) / Float(1 << 23) - 1)
                switch storage {
                case .bf16: out[r * cols + j] = sana_bf16_to_f32(sana_f32_to_bf16(v))
                case .f16: out[r * cols + j] = sana_f16_to_f32(sana_f32_to_f16(v))
                default: out[r * cols + j] = v
                }
            }
        }
        return (out, storage)
    }
}
