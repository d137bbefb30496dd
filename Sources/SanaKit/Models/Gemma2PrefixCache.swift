// The encoder state of a fixed token prefix (Sana's complex human instruction): per layer, the keys (after RoPE)
// and values of the prefix positions, and the final hidden states of those positions. A sequence that starts with
// the same ids reuses them and only computes the positions after the shared part. With causal attention a position's
// state depends only on the ids up to it, so the result equals a full run (the sliding window reads cached keys).
import SanaFormat

public final class Gemma2PrefixCache: Sendable {
    public let config: Gemma2Config
    /// The prefix ids (including <bos>).
    public let ids: [Int]
    /// Per layer: keys and values [ids.count, kvHeads·headDim].
    let keys: [[Float]]
    let values: [[Float]]
    /// last_hidden_state rows of the prefix [ids.count, hidden].
    let output: [Float]

    init(config: Gemma2Config, ids: [Int], keys: [[Float]], values: [[Float]], output: [Float]) {
        self.config = config
        self.ids = ids
        self.keys = keys
        self.values = values
        self.output = output
    }

    /// Bytes held (float32 keys, values and outputs).
    public var byteCount: Int { 4 * (keys.reduce(0) { $0 + $1.count } * 2 + output.count) }
}

extension Gemma2Model {
    /// Runs the encoder over `ids` (all valid) and keeps what later sequences sharing this prefix need.
    public func makePrefixCache(ids: [Int]) throws -> Gemma2PrefixCache {
        guard !ids.isEmpty else { throw ModelError.badInput("Gemma2: empty prefix") }
        let recorder = PrefixRecorder()
        let output = try run([Plan(ids: ids, valid: ids.count, start: 0, end: ids.count, cache: nil)], record: recorder)
        return Gemma2PrefixCache(config: config, ids: ids, keys: recorder.keys, values: recorder.values, output: output)
    }
}
