// The Gemma tokenizer as transformers 5.x' GemmaTokenizer runs it through the `tokenizers` library
// (transformers/models/gemma/tokenization_gemma.py, tokenizers/src/tokenizer/mod.rs encode): added tokens are cut out
// of the raw text, the rest is normalized (" " → "▁"), split by the pre-tokenizer (if any) and BPE-encoded with byte
// fallback; the template adds <bos>. `encodePadded` is the call SanaPipeline makes: padding="max_length",
// truncation=True (right side, special tokens counted), add_special_tokens=True, with the attention mask.
import Foundation

public struct GemmaTokenizer: Sendable {
    /// One item of the post-processing template.
    enum TemplateItem: Sendable {
        case special([Int])
        case sequence
    }

    let model: BPEModel
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    /// Special and non-normalized added tokens, matched on the raw text; normalized ones, matched after normalizing.
    let rawAddedTokens: AddedTokenMatcher
    let normalizedAddedTokens: AddedTokenMatcher
    let template: [TemplateItem]
    public let padTokenId: Int
    public let bosTokenId: Int?

    /// Reads `tokenizer.json` and, when present, `tokenizer_config.json` from a tokenizer directory.
    public init(directory: String) throws {
        let jsonPath = (directory as NSString).appendingPathComponent("tokenizer.json")
        guard let json = FileManager.default.contents(atPath: jsonPath) else { throw TokenizerError.cannotRead(path: jsonPath) }
        let configPath = (directory as NSString).appendingPathComponent("tokenizer_config.json")
        try self.init(tokenizerJSON: json, configJSON: FileManager.default.contents(atPath: configPath))
    }

    /// `configJSON` (tokenizer_config.json) supplies add_bos_token / add_eos_token and the pad token as transformers
    /// reads them; without it the file's own post_processor and "<pad>" are used.
    public init(tokenizerJSON: Data, configJSON: Data? = nil) throws {
        guard let root = try? JSONSerialization.jsonObject(with: tokenizerJSON) as? [String: Any] else {
            throw TokenizerError.badFile("not a JSON object")
        }
        let config = try configJSON.map { data -> [String: Any] in
            guard let c = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
                throw TokenizerError.badFile("tokenizer_config.json is not a JSON object")
            }
            return c
        } ?? [:]

        model = try GemmaTokenizer.parseModel(root["model"])
        normalizer = try Normalizer(json: root["normalizer"])
        preTokenizer = try PreTokenizer(json: root["pre_tokenizer"])

        var raw: [AddedToken] = [], normalized: [AddedToken] = []
        var addedIds: [String: Int] = [:]
        for (i, entry) in ((root["added_tokens"] as? [Any]) ?? []).enumerated() {
            guard let e = entry as? [String: Any], let content = e["content"] as? String, let id = e["id"] as? Int, id >= 0 else {
                throw TokenizerError.badFile("added_tokens[\(i)] needs a content and a non-negative id")
            }
            let special = (e["special"] as? Bool) ?? false
            let isNormalized = (e["normalized"] as? Bool) ?? !special
            var bytes = Array(content.utf8)
            if isNormalized, let normalizer { bytes = normalizer.apply(bytes) }
            let token = AddedToken(id: id, content: bytes, special: special, normalized: isNormalized,
                                   lstrip: (e["lstrip"] as? Bool) ?? false, rstrip: (e["rstrip"] as? Bool) ?? false,
                                   singleWord: (e["single_word"] as? Bool) ?? false)
            if isNormalized { normalized.append(token) } else { raw.append(token) }
            addedIds[content] = id
        }
        rawAddedTokens = AddedTokenMatcher(raw)
        normalizedAddedTokens = AddedTokenMatcher(normalized)

        let model = self.model
        func tokenId(_ name: String) -> Int? { addedIds[name] ?? model.vocab[Array(name.utf8)] }
        func configToken(_ key: String) -> String? {
            if let s = config[key] as? String { return s }
            return (config[key] as? [String: Any])?["content"] as? String
        }
        padTokenId = try {
            let name = configToken("pad_token") ?? "<pad>"
            guard let id = tokenId(name) else { throw TokenizerError.badFile("pad token \"\(name)\" is not in the vocabulary") }
            return id
        }()
        bosTokenId = tokenId(configToken("bos_token") ?? "<bos>")

        if config["add_bos_token"] != nil || config["add_eos_token"] != nil {
            // transformers rebuilds the template from these flags (TokenizersBackend.update_post_processor).
            var items: [TemplateItem] = []
            if (config["add_bos_token"] as? Bool) == true {
                guard let bos = bosTokenId else { throw TokenizerError.badFile("add_bos_token is set but there is no bos token") }
                items.append(.special([bos]))
            }
            items.append(.sequence)
            if (config["add_eos_token"] as? Bool) == true {
                let name = configToken("eos_token") ?? "<eos>"
                guard let eos = tokenId(name) else { throw TokenizerError.badFile("eos token \"\(name)\" is not in the vocabulary") }
                items.append(.special([eos]))
            }
            template = items
        } else {
            template = try GemmaTokenizer.parseTemplate(root["post_processor"])
        }
    }

    private static func parseModel(_ json: Any?) throws -> BPEModel {
        guard let m = json as? [String: Any] else { throw TokenizerError.badFile("no model object") }
        guard (m["type"] as? String ?? "BPE") == "BPE" else {
            throw TokenizerError.unsupported(component: "model", reason: "\(m["type"] ?? "?") (only BPE)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix", "dropout"] {
            if let v = m[key], !(v is NSNull) { throw TokenizerError.unsupported(component: "model", reason: "\(key) = \(v)") }
        }
        guard let vocabJSON = m["vocab"] as? [String: Any] else { throw TokenizerError.badFile("model.vocab is not an object") }
        var vocab: [[UInt8]: Int] = [:]
        vocab.reserveCapacity(vocabJSON.count)
        var maxId = -1
        for (token, value) in vocabJSON {
            guard let id = value as? Int, id >= 0 else { throw TokenizerError.badFile("model.vocab[\"\(token)\"] is not a non-negative id") }
            vocab[Array(token.utf8)] = id
            maxId = max(maxId, id)
        }
        // Trained vocabularies number their pieces 0..<n. A gap means entries collapsed while the JSON was read
        // (dictionary keys are compared up to Unicode canonical equivalence) or a damaged file: refuse both.
        guard maxId + 1 == vocab.count, Set(vocab.values).count == vocab.count else {
            throw TokenizerError.badFile("model.vocab ids are not 0..<\(vocab.count) (max id \(maxId)): duplicated or equivalent pieces")
        }
        guard let mergesJSON = m["merges"] as? [Any] else { throw TokenizerError.badFile("model.merges is not a list") }
        // Older files store a merge as "a b", newer ones as ["a", "b"].
        let merges: [([UInt8], [UInt8])] = try mergesJSON.enumerated().map { i, v in
            if let pair = v as? [String], pair.count == 2 { return (Array(pair[0].utf8), Array(pair[1].utf8)) }
            if let line = v as? String {
                let parts = line.split(separator: " ", omittingEmptySubsequences: false)
                if parts.count == 2 { return (Array(parts[0].utf8), Array(parts[1].utf8)) }
            }
            throw TokenizerError.badFile("model.merges[\(i)] is neither \"a b\" nor [\"a\", \"b\"]")
        }
        let unk = m["unk_token"] as? String
        return try BPEModel(vocab: vocab, mergePairs: merges, unkToken: unk, fuseUnk: (m["fuse_unk"] as? Bool) ?? false,
                            byteFallback: (m["byte_fallback"] as? Bool) ?? false,
                            ignoreMerges: (m["ignore_merges"] as? Bool) ?? false)
    }

    private static func parseTemplate(_ json: Any?) throws -> [TemplateItem] {
        guard let json, !(json is NSNull) else { return [.sequence] }
        guard let p = json as? [String: Any], p["type"] as? String == "TemplateProcessing" else {
            throw TokenizerError.unsupported(component: "post_processor", reason: "\((json as? [String: Any])?["type"] ?? "?")")
        }
        guard let single = p["single"] as? [Any], let specials = p["special_tokens"] as? [String: Any] else {
            throw TokenizerError.badFile("TemplateProcessing without single/special_tokens")
        }
        return try single.map { item in
            if let s = (item as? [String: Any])?["SpecialToken"] as? [String: Any], let name = s["id"] as? String {
                guard let ids = (specials[name] as? [String: Any])?["ids"] as? [Int] else {
                    throw TokenizerError.badFile("post_processor special token \"\(name)\" has no ids")
                }
                return .special(ids)
            }
            if let s = (item as? [String: Any])?["Sequence"] as? [String: Any], s["id"] as? String == "A" { return .sequence }
            throw TokenizerError.badFile("post_processor.single item \(item) is not understood")
        }
    }

    /// Number of ids the template adds around the text.
    public var specialTokenCount: Int {
        template.reduce(0) { n, item in if case let .special(ids) = item { return n + ids.count } else { return n } }
    }

    /// The ids of `text` without special tokens: added tokens, then normalized, pre-tokenized, BPE-encoded pieces.
    public func tokenIds(_ text: String) -> [Int] {
        var ids: [Int] = []
        for piece in rawAddedTokens.split(Array(text.utf8)) {
            guard case let .text(raw) = piece else {
                if case let .token(id) = piece { ids.append(id) }
                continue
            }
            let normalized = normalizer?.apply(raw) ?? raw
            for sub in normalizedAddedTokens.split(normalized) {
                switch sub {
                case let .token(id): ids.append(id)
                case let .text(bytes):
                    for word in preTokenizer?.apply(bytes) ?? [bytes] { ids += model.tokenize(word) }
                }
            }
        }
        return ids
    }

    /// `tokenizer.encode(text)` / `tokenizer(text).input_ids`: the ids with the template's special tokens.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int] {
        let ids = tokenIds(text)
        return addSpecialTokens ? applyTemplate(ids) : ids
    }

    private func applyTemplate(_ ids: [Int]) -> [Int] {
        template.flatMap { item -> [Int] in
            switch item {
            case let .special(s): return s
            case .sequence: return ids
            }
        }
    }

    /// `tokenizer(texts, padding="max_length", max_length=maxLength, truncation=True, add_special_tokens=True)`
    /// with right padding: ids and attention masks, each `maxLength` long.
    public func encodePadded(_ texts: [String], maxLength: Int) throws -> (ids: [[Int]], mask: [[Int]]) {
        guard maxLength >= specialTokenCount, maxLength > 0 else {
            throw ModelError.badInput("tokenizer: max_length \(maxLength) leaves no room for the \(specialTokenCount) special tokens")
        }
        var allIds: [[Int]] = [], masks: [[Int]] = []
        for text in texts {
            let ids = applyTemplate(Array(tokenIds(text).prefix(maxLength - specialTokenCount)))
            allIds.append(ids + [Int](repeating: padTokenId, count: maxLength - ids.count))
            masks.append([Int](repeating: 1, count: ids.count) + [Int](repeating: 0, count: maxLength - ids.count))
        }
        return (allIds, masks)
    }
}
