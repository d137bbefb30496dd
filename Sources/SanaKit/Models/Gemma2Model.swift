// Gemma2Model (transformers/models/gemma2/modeling_gemma2.py, eager attention): last_hidden_state [B, L, hidden].
// Layers are loaded from the WeightSource one at a time and released after use; the embedding is read by rows.
//
// Right padding and what is computed: with a causal mask and right padding, a valid position only ever attends to
// valid positions, so its output does not depend on the padding. By default only valid positions are computed and
// padded rows of the output are zero (they are masked out of every later use). `computePadded: true` computes them
// as the reference does (a padded query sees the valid keys of its window; when there are none, the reference's
// finfo.min mask makes its attention uniform over all keys), for comparison with a reference dump.
//
// Prefix reuse: positions covered by a Gemma2PrefixCache (same ids from position 0) take their keys/values and outputs
// from the cache; only later positions are computed. Causality makes the result identical.
import Foundation
import SanaFormat

public struct Gemma2Model: Sendable {
    public let config: Gemma2Config
    let source: WeightSource
    let embedding: EmbeddingRowReader
    /// 1 + weight of the final norm ("norm.weight").
    let finalNorm: [Float]

    /// Checks every tensor name and the shapes of the small ones; layer weights are loaded (and shape-checked) on use.
    /// `embedding` overrides how rows of embed_tokens.weight are read (default: `embeddingReader(source, ...)`).
    public init(config: Gemma2Config, source: WeightSource, embedding: EmbeddingRowReader? = nil) throws {
        try config.validate()
        self.config = config
        self.source = source
        try ModelError.checkExactTensorNames(expected: Gemma2Model.tensorNames(config), present: source.tensorNames,
                                             component: "Gemma2")
        let h = config.hiddenSize
        self.embedding = try embedding ?? Gemma2Model.embeddingReader(source, name: "embed_tokens.weight", shape: [config.vocabSize, h])
        finalNorm = try source.floats("norm.weight", shape: [h]).map { 1 + $0 }
    }

    /// Reads config.json and model*.safetensors of a text_encoder directory.
    public init(directory: String) throws {
        let config = try Gemma2Config.load(path: (directory as NSString).appendingPathComponent("config.json"))
        try self.init(config: config, source: try SafetensorsDirectory(path: directory))
    }

    /// Embedding scale sqrt(hidden), rounded to the embedding's storage type when that is f16/bf16 (the reference
    /// casts it to the weight dtype).
    func embedScale(_ storage: StorageType) -> Float {
        let scale = Float(Double(config.hiddenSize).squareRoot())
        switch storage {
        case .bf16: return sana_bf16_to_f32(sana_f32_to_bf16(scale))
        case .f16: return sana_f16_to_f32(sana_f32_to_f16(scale))
        default: return scale
        }
    }

    /// The reference state-dict keys of a Gemma2Model.
    static func tensorNames(_ c: Gemma2Config) -> Set<String> {
        var names: Set<String> = ["embed_tokens.weight", "norm.weight"]
        for i in 0 ..< c.numHiddenLayers { names.formUnion(Gemma2DecoderLayer.tensorNames(i, c)) }
        return names
    }

    // MARK: Forward

    /// What is computed for one sequence: rows start ..< end of ids (ids.count = L); `valid` leading ids are real.
    struct Plan {
        let ids: [Int]
        let valid: Int
        let start: Int
        let end: Int
        let cache: Gemma2PrefixCache?
    }

    /// last_hidden_state [B, L, hidden] for right-padded `inputIds` [B][L] with `attentionMask` [B][L] (1 = token).
    /// `prefix`: a cache built by `makePrefixCache`; rows sharing its ids are taken from it.
    public func callAsFunction(inputIds: [[Int]], attentionMask: [[Int]], computePadded: Bool = false,
                               prefix: Gemma2PrefixCache? = nil) throws -> Tensor {
        guard let length = inputIds.first?.count, inputIds.allSatisfy({ $0.count == length }),
              attentionMask.count == inputIds.count else {
            throw ModelError.badInput("Gemma2: id rows must be of equal length, one mask row each")
        }
        let outputs = try encode(zip(inputIds, attentionMask).map { ($0, $1) }, computePadded: computePadded, prefix: prefix)
        return Tensor(shape: [outputs.count, length, config.hiddenSize], data: outputs.flatMap(\.data))
    }

    /// The same for sequences of different lengths (one pass, so each layer is loaded once): [L_b, hidden] each.
    public func encode(_ sequences: [(ids: [Int], mask: [Int])], computePadded: Bool = false,
                       prefix: Gemma2PrefixCache? = nil) throws -> [Tensor] {
        guard !sequences.isEmpty else { throw ModelError.badInput("Gemma2: no sequence to encode") }
        var plans: [Plan] = []
        for (b, (ids, mask)) in sequences.enumerated() {
            guard ids.count == mask.count else {
                throw ModelError.badInput("Gemma2: row \(b) has \(ids.count) ids and \(mask.count) mask entries")
            }
            let valid = mask.prefix { $0 != 0 }.count
            guard mask[valid...].allSatisfy({ $0 == 0 }) else {
                throw ModelError.badInput("Gemma2: attention mask row \(b) is not right-padded (ones, then zeros)")
            }
            var start = 0
            if let prefix, prefix.config == config {
                start = zip(ids.prefix(valid), prefix.ids).prefix { $0 == $1 }.count
            }
            plans.append(Plan(ids: ids, valid: valid, start: start, end: computePadded ? ids.count : valid,
                              cache: start > 0 ? prefix : nil))
        }
        let rows = try run(plans, record: nil)
        let h = config.hiddenSize
        var offset = 0
        return plans.map { p in
            var out = Tensor(zeros: [p.ids.count, h])
            if let cache = p.cache {
                for t in 0 ..< p.start { copyRow(cache.output, t, into: &out.data, t * h, h) }
            }
            for t in p.start ..< p.end { copyRow(rows, offset + t - p.start, into: &out.data, t * h, h) }
            offset += p.end - p.start
            return out
        }
    }

    private func copyRow(_ src: [Float], _ row: Int, into dst: inout [Float], _ at: Int, _ h: Int) {
        for j in 0 ..< h { dst[at + j] = src[row * h + j] }
    }

    /// Runs every layer over the planned rows (all sequences together, so each layer is loaded once) and returns the
    /// final-norm output of those rows, concatenated [Σ(end − start), hidden]. `record` collects each layer's keys
    /// and values of the first sequence (for a prefix cache).
    func run(_ plans: [Plan], record: PrefixRecorder?) throws -> [Float] {
        let h = config.hiddenSize
        var ids: [Int] = []
        for p in plans { ids += p.ids[p.start ..< p.end] }
        guard !ids.isEmpty else { return [] }
        if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
            throw ModelError.badInput("Gemma2: token id \(bad) outside the vocabulary 0..<\(config.vocabSize)")
        }
        let (rows, storage) = try embedding.rows(ids)
        var x = Tensor(shape: [ids.count, h], data: rows).scaled(embedScale(storage))
        let rope = RotaryEmbedding(headDim: config.headDim, theta: config.ropeTheta)
        for i in 0 ..< config.numHiddenLayers {
            let layer = try Gemma2DecoderLayer(source, i, config)  // released at the end of this iteration
            x = layer(x, plans: plans, rope: rope, record: record)
        }
        return x.rmsNorm(weight: finalNorm, eps: Float(config.rmsNormEps)).data
    }
}

/// Collects per-layer keys and values while a prefix cache is built.
final class PrefixRecorder {
    var keys: [[Float]] = []
    var values: [[Float]] = []
}

/// RoPE with the rotate_half convention: for d < D/2, (x_d, x_{d+D/2}) rotates by pos · theta^(−2d/D).
struct RotaryEmbedding {
    let invFreq: [Float]

    init(headDim: Int, theta: Double) {
        // As the reference: inv_freq = 1 / theta^(arange(0, D, 2) / D) in float32.
        invFreq = (0 ..< headDim / 2).map { 1 / powf(Float(theta), Float(2 * $0) / Float(headDim)) }
    }

    /// Rotates x [rows, heads·D] in place; row r is at position positions[r].
    func apply(_ x: inout Tensor, heads: Int, positions: [Int]) {
        let half = invFreq.count, d = 2 * half
        x.data.withUnsafeMutableBufferPointer { p in
            for (r, pos) in positions.enumerated() {
                for j in 0 ..< half {
                    let angle = Float(pos) * invFreq[j]
                    let c = cosf(angle), s = sinf(angle)
                    for hd in 0 ..< heads {
                        let base = r * heads * d + hd * d  // x[r, hd, :] of the [rows, heads, D] view
                        let x1 = p[base + j], x2 = p[base + j + half]
                        p[base + j] = x1 * c - x2 * s
                        p[base + j + half] = x2 * c + x1 * s
                    }
                }
            }
        }
    }
}

import CSanaKernels
