// The BPE model of the `tokenizers` library (tokenizers/src/models/bpe/{model.rs,word.rs}) for the options Gemma uses:
// byte fallback to <0xXX> pieces, unknown-token fusing, ignore_merges, merges applied by rank with a priority queue.
// Reproduces the library's ids exactly, including its tie-breaking (lowest rank first, then leftmost position).

/// A byte-pair-encoding model: vocabulary, ranked merges and the unknown/byte fallback rules.
struct BPEModel: Sendable {
    /// Keyed by UTF-8 bytes: Swift String keys would merge canonically equivalent pieces ("é" and "e\u{301}").
    let vocab: [[UInt8]: Int]
    /// (left id, right id) packed in 64 bits → (rank, merged id).
    let merges: [UInt64: (rank: Int, id: Int)]
    let unkId: Int?
    let fuseUnk: Bool
    let byteFallback: Bool
    let ignoreMerges: Bool
    /// The ids of "<0x00>" … "<0xFF>", nil where the vocabulary lacks the piece.
    let byteIds: [Int?]

    /// `mergePairs` are (left, right) token strings in rank order; each must be in the vocabulary, as must their
    /// concatenation (the library rejects such a file too).
    init(vocab: [[UInt8]: Int], mergePairs: [([UInt8], [UInt8])], unkToken: String?, fuseUnk: Bool, byteFallback: Bool,
         ignoreMerges: Bool) throws {
        self.vocab = vocab
        var merges: [UInt64: (rank: Int, id: Int)] = [:]
        merges.reserveCapacity(mergePairs.count)
        for (rank, (a, b)) in mergePairs.enumerated() {
            guard let ia = vocab[a], let ib = vocab[b] else {
                throw TokenizerError.badFile("merge \(rank) (\"\(String(decoding: a, as: UTF8.self))\", \"\(String(decoding: b, as: UTF8.self))\") uses a token missing from the vocabulary")
            }
            guard let merged = vocab[a + b] else {
                throw TokenizerError.badFile("merge \(rank): \"\(String(decoding: a + b, as: UTF8.self))\" is missing from the vocabulary")
            }
            // A pair listed twice keeps its last rank, as the library's HashMap collect does.
            merges[BPEModel.pairKey(ia, ib)] = (rank, merged)
        }
        self.merges = merges
        if let unkToken {
            guard let id = vocab[Array(unkToken.utf8)] else { throw TokenizerError.badFile("unk_token \"\(unkToken)\" is not in the vocabulary") }
            unkId = id
        } else {
            unkId = nil
        }
        self.fuseUnk = fuseUnk
        self.byteFallback = byteFallback
        self.ignoreMerges = ignoreMerges
        byteIds = (0 ..< 256).map { vocab[Array(BPEModel.bytePiece(UInt8($0)).utf8)] }
    }

    @inline(__always) static func pairKey(_ a: Int, _ b: Int) -> UInt64 { UInt64(UInt32(a)) << 32 | UInt64(UInt32(b)) }

    /// "<0x0A>": the piece name of one byte (Rust `format!("<{b:#04X}>")`).
    static func bytePiece(_ b: UInt8) -> String {
        let hex = String(b, radix: 16, uppercase: true)
        return "<0x" + (hex.count == 1 ? "0" + hex : hex) + ">"
    }

    /// The ids of one pre-tokenized piece.
    func tokenize(_ word: [UInt8]) -> [Int] {
        if word.isEmpty { return [] }
        if ignoreMerges, let id = vocab[word] { return [id] }
        var symbols = initialSymbols(word)
        mergeAll(&symbols)
        return symbols.map(\.id)
    }

    /// One symbol per character (or per byte for characters outside the vocabulary), as BPE::merge_word builds them.
    private func initialSymbols(_ word: [UInt8]) -> [BPESymbol] {
        var ids: [Int] = []
        var pendingUnk = false  // an unknown run not yet emitted (fused when fuseUnk)
        for scalar in String(decoding: word, as: UTF8.self).unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if let id = vocab[bytes] {
                if pendingUnk, let unkId { ids.append(unkId); pendingUnk = false }
                ids.append(id)
                continue
            }
            if byteFallback {
                let pieces = bytes.compactMap { byteIds[Int($0)] }
                if pieces.count == bytes.count {
                    // As in the library, a pending <unk> is not flushed here: it lands after these bytes.
                    ids.append(contentsOf: pieces)
                    continue
                }
            }
            guard let unkId else { continue }  // no unk token: the character is dropped, as the library does
            if pendingUnk && !fuseUnk { ids.append(unkId) }
            pendingUnk = true
        }
        if pendingUnk, let unkId { ids.append(unkId) }
        return ids.enumerated().map { i, id in BPESymbol(id: id, prev: i - 1, next: i + 1 < ids.count ? i + 1 : -1, alive: true) }
    }

    /// Word::merge_all: pops the lowest (rank, position) pair, skips stale entries, merges, queues the new neighbours.
    private func mergeAll(_ symbols: inout [BPESymbol]) {
        var queue = MergeQueue()
        for i in 0 ..< max(symbols.count - 1, 0) {
            if let m = merges[BPEModel.pairKey(symbols[i].id, symbols[i + 1].id)] {
                queue.push(.init(rank: m.rank, pos: i, id: m.id))
            }
        }
        while let top = queue.pop() {
            guard symbols[top.pos].alive, symbols[top.pos].next >= 0 else { continue }
            let nextPos = symbols[top.pos].next
            // A stale entry: the pair at this position changed since it was queued.
            guard let m = merges[BPEModel.pairKey(symbols[top.pos].id, symbols[nextPos].id)], m.id == top.id else { continue }
            let right = symbols[nextPos]
            symbols[top.pos].id = top.id
            symbols[top.pos].next = right.next
            symbols[nextPos].alive = false
            if right.next >= 0 { symbols[right.next].prev = top.pos }
            let current = symbols[top.pos]
            if current.prev >= 0, let m = merges[BPEModel.pairKey(symbols[current.prev].id, current.id)] {
                queue.push(.init(rank: m.rank, pos: current.prev, id: m.id))
            }
            if current.next >= 0, let m = merges[BPEModel.pairKey(current.id, symbols[current.next].id)] {
                queue.push(.init(rank: m.rank, pos: top.pos, id: m.id))
            }
        }
        symbols.removeAll { !$0.alive }
    }
}

/// A symbol of a word being merged: a doubly linked list over an array, as in the library's Word.
struct BPESymbol {
    var id: Int
    var prev: Int
    var next: Int
    var alive: Bool
}

/// A binary min-heap of pending merges ordered by (rank, position).
struct MergeQueue {
    struct Entry {
        let rank: Int
        let pos: Int
        let id: Int
        @inline(__always) func precedes(_ o: Entry) -> Bool { rank != o.rank ? rank < o.rank : pos < o.pos }
    }

    private var heap: [Entry] = []

    mutating func push(_ e: Entry) {
        heap.append(e)
        var i = heap.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].precedes(heap[parent]) else { break }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        if heap.isEmpty { return first }
        heap[0] = last
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var best = i
            if l < heap.count && heap[l].precedes(heap[best]) { best = l }
            if r < heap.count && heap[r].precedes(heap[best]) { best = r }
            if best == i { break }
            heap.swapAt(i, best)
            i = best
        }
        return first
    }
}
