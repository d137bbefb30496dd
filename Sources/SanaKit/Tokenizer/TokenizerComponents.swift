// The pieces of a `tokenizers` pipeline around the BPE model, for the forms Gemma's tokenizer.json uses:
// added-token extraction (tokenizers/src/tokenizer/added_vocabulary.rs), the Replace/Prepend normalizers, the Split
// pre-tokenizer with a literal pattern, and TemplateProcessing. Anything else in a file is rejected by name.
import Foundation

/// Errors reading a tokenizer: every case says what was wrong.
public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case cannotRead(path: String)
    case badFile(String)
    case unsupported(component: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotRead(p): return "\(p): cannot read tokenizer file"
        case let .badFile(r): return "tokenizer.json: \(r)"
        case let .unsupported(c, r): return "tokenizer.json: unsupported \(c): \(r)"
        }
    }
}

/// A token added on top of the model vocabulary (tokenizer.json "added_tokens").
struct AddedToken: Sendable {
    let id: Int
    let content: [UInt8]  // UTF-8; for normalized tokens, the normalized content
    let special: Bool
    let normalized: Bool
    let lstrip: Bool
    let rstrip: Bool
    let singleWord: Bool
}

/// A piece of the input on its way through the pipeline: either already a token (an added token) or text to tokenize.
enum TextPiece {
    case token(Int)
    case text([UInt8])  // UTF-8
}

/// Leftmost-longest matching of added tokens (the library uses Aho-Corasick with MatchKind::LeftmostLongest).
struct AddedTokenMatcher: Sendable {
    private let byFirstByte: [UInt8: [AddedToken]]  // candidates per first byte, longest first

    init(_ tokens: [AddedToken]) {
        var map: [UInt8: [AddedToken]] = [:]
        for t in tokens where !t.content.isEmpty { map[t.content[0], default: []].append(t) }
        byFirstByte = map.mapValues { $0.sorted { $0.content.count > $1.content.count } }
    }

    var isEmpty: Bool { byFirstByte.isEmpty }

    /// Splits `text` into added tokens and the text between them (AddedVocabulary::find_matches).
    func split(_ bytes: [UInt8]) -> [TextPiece] {
        if isEmpty { return [.text(bytes)] }
        var pieces: [TextPiece] = []
        var startOffset = 0  // end of the last emitted piece
        var i = 0
        while i < bytes.count {
            guard let candidates = byFirstByte[bytes[i]],
                  let token = candidates.first(where: { bytes.hasPrefix($0.content, at: i) }) else {
                i += 1
                continue
            }
            var start = i, stop = i + token.content.count
            i = stop  // the automaton resumes after the raw match, whatever stripping extends it to
            if token.singleWord {
                let before = start == 0 || !AddedTokenMatcher.endsWithWordCharacter(bytes[..<start])
                let after = stop == bytes.count || !AddedTokenMatcher.startsWithWordCharacter(bytes[stop...])
                if !(before && after) { continue }
            }
            if token.lstrip { start = max(AddedTokenMatcher.leadingWhitespaceStart(bytes, before: start), startOffset) }
            if token.rstrip { stop = AddedTokenMatcher.trailingWhitespaceEnd(bytes, after: stop) }
            if startOffset < start { pieces.append(.text(Array(bytes[startOffset ..< start]))) }
            pieces.append(.token(token.id))
            startOffset = stop
            i = max(i, stop)
        }
        if startOffset < bytes.count { pieces.append(.text(Array(bytes[startOffset...]))) }
        return pieces
    }

    private static func scalars(_ bytes: ArraySlice<UInt8>) -> String.UnicodeScalarView {
        String(decoding: bytes, as: UTF8.self).unicodeScalars
    }

    private static func isWordCharacter(_ s: Unicode.Scalar) -> Bool {
        s.properties.isAlphabetic || s.properties.numericType != nil || s == "_"
    }

    static func endsWithWordCharacter(_ bytes: ArraySlice<UInt8>) -> Bool {
        scalars(bytes).last.map(isWordCharacter) ?? false
    }

    static func startsWithWordCharacter(_ bytes: ArraySlice<UInt8>) -> Bool {
        scalars(bytes).first.map(isWordCharacter) ?? false
    }

    /// The byte offset where the run of whitespace ending at `before` starts.
    static func leadingWhitespaceStart(_ bytes: [UInt8], before: Int) -> Int {
        var start = before
        for s in scalars(bytes[..<before]).reversed() {
            guard s.properties.isWhitespace else { break }
            start -= String(s).utf8.count
        }
        return start
    }

    /// The byte offset where the run of whitespace starting at `after` ends.
    static func trailingWhitespaceEnd(_ bytes: [UInt8], after: Int) -> Int {
        var end = after
        for s in scalars(bytes[after...]) {
            guard s.properties.isWhitespace else { break }
            end += String(s).utf8.count
        }
        return end
    }
}

/// A normalizer step (tokenizer.json "normalizer"), on UTF-8 bytes so that no Unicode equivalence is applied.
enum Normalizer: Sendable {
    case replace(pattern: [UInt8], content: [UInt8])
    case prepend([UInt8])
    case sequence([Normalizer])

    init?(json: Any?) throws {
        guard let json, !(json is NSNull) else { return nil }
        guard let obj = json as? [String: Any], let type = obj["type"] as? String else {
            throw TokenizerError.badFile("normalizer is not an object with a type")
        }
        switch type {
        case "Replace":
            guard let pattern = (obj["pattern"] as? [String: Any])?["String"] as? String, !pattern.isEmpty,
                  let content = obj["content"] as? String else {
                throw TokenizerError.unsupported(component: "normalizer", reason: "Replace needs a literal String pattern and a content")
            }
            self = .replace(pattern: Array(pattern.utf8), content: Array(content.utf8))
        case "Prepend":
            guard let p = obj["prepend"] as? String else { throw TokenizerError.badFile("Prepend normalizer without 'prepend'") }
            self = .prepend(Array(p.utf8))
        case "Sequence":
            guard let list = obj["normalizers"] as? [Any] else { throw TokenizerError.badFile("Sequence normalizer without a list") }
            self = .sequence(try list.compactMap { try Normalizer(json: $0) })
        default:
            throw TokenizerError.unsupported(component: "normalizer", reason: type)
        }
    }

    func apply(_ s: [UInt8]) -> [UInt8] {
        switch self {
        case let .replace(p, c):
            var out: [UInt8] = []
            out.reserveCapacity(s.count + s.count / 2)
            var i = 0
            while i < s.count {
                if s.hasPrefix(p, at: i) { out += c; i += p.count } else { out.append(s[i]); i += 1 }
            }
            return out
        case let .prepend(p): return s.isEmpty ? s : p + s
        case let .sequence(list): return list.reduce(s) { $1.apply($0) }
        }
    }
}

/// The pre-tokenizer: none, or Split on a literal pattern (what transformers' GemmaTokenizer installs).
enum PreTokenizer: Sendable {
    enum Behavior { case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous }
    case split(pattern: [UInt8], behavior: Behavior)

    init?(json: Any?) throws {
        guard let json, !(json is NSNull) else { return nil }
        guard let obj = json as? [String: Any], let type = obj["type"] as? String else {
            throw TokenizerError.badFile("pre_tokenizer is not an object with a type")
        }
        guard type == "Split" else { throw TokenizerError.unsupported(component: "pre_tokenizer", reason: type) }
        guard let pattern = (obj["pattern"] as? [String: Any])?["String"] as? String, !pattern.isEmpty else {
            throw TokenizerError.unsupported(component: "pre_tokenizer", reason: "Split needs a non-empty literal String pattern")
        }
        let raw = ((obj["behavior"] as? String) ?? "").lowercased().replacingOccurrences(of: "_", with: "")
        let names: [String: Behavior] = ["removed": .removed, "isolated": .isolated, "mergedwithprevious": .mergedWithPrevious,
                                         "mergedwithnext": .mergedWithNext, "contiguous": .contiguous]
        guard let behavior = names[raw] else { throw TokenizerError.unsupported(component: "pre_tokenizer", reason: "Split behavior \(raw)") }
        if (obj["invert"] as? Bool) == true { throw TokenizerError.unsupported(component: "pre_tokenizer", reason: "Split invert") }
        self = .split(pattern: Array(pattern.utf8), behavior: behavior)
    }

    /// Splits a normalized piece (tokenizers/src/tokenizer/normalizer.rs NormalizedString::split).
    func apply(_ s: [UInt8]) -> [[UInt8]] {
        guard case let .split(pattern, behavior) = self else { return [s] }
        // (is match, bytes) segments in order.
        var segments: [(isMatch: Bool, bytes: [UInt8])] = []
        var textStart = 0, i = 0
        while i < s.count {
            guard s.hasPrefix(pattern, at: i) else { i += 1; continue }
            if textStart < i { segments.append((false, Array(s[textStart ..< i]))) }
            segments.append((true, pattern))
            i += pattern.count
            textStart = i
        }
        if textStart < s.count { segments.append((false, Array(s[textStart...]))) }
        var out: [(isMatch: Bool, bytes: [UInt8])] = []
        switch behavior {
        case .removed: out = segments.filter { !$0.isMatch }
        case .isolated: out = segments
        case .mergedWithPrevious:
            for seg in segments {
                if seg.isMatch, let last = out.last, !last.isMatch { out[out.count - 1].bytes += seg.bytes } else { out.append(seg) }
            }
        case .mergedWithNext:
            var pending: [UInt8] = []
            for seg in segments {
                if seg.isMatch { pending += seg.bytes } else { out.append((false, pending + seg.bytes)); pending = [] }
            }
            if !pending.isEmpty { out.append((true, pending)) }
        case .contiguous:
            for seg in segments {
                if seg.isMatch, let last = out.last, last.isMatch { out[out.count - 1].bytes += seg.bytes } else { out.append(seg) }
            }
        }
        return out.map(\.bytes).filter { !$0.isEmpty }
    }
}

extension Array where Element == UInt8 {
    /// True when `pattern` occurs at offset `i`.
    func hasPrefix(_ pattern: [UInt8], at i: Int) -> Bool {
        guard !pattern.isEmpty, i + pattern.count <= count else { return false }
        for k in 0 ..< pattern.count where self[i + k] != pattern[k] { return false }
        return true
    }
}
