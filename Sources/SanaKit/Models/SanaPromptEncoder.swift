// Sana's prompt path as diffusers' SanaPipeline runs it (diffusers/pipelines/sana/pipeline_sana.py, encode_prompt and
// _get_gemma_prompt_embeds): lower-case and strip the prompt, prepend the complex human instruction (joined by "\n"),
// tokenize padded/truncated to max_length_all = n_instruction_tokens + max_sequence_length − 2, encode with Gemma-2,
// then keep the first token and the last max_sequence_length − 1 (select_index = [0] + range(−msl + 1, 0)).
// The negative prompt is encoded without the instruction at max_sequence_length and without selection.
// The instruction's encoder state is computed once and reused (Gemma2PrefixCache), or read from the bundle when
// `sana convert` stored it (Gemma2PrefixCache+Bundle.swift).
import Foundation

public final class SanaPromptEncoder {
    /// The default `complex_human_instruction` of SanaPipeline.__call__ (also in models/complex_human_instruction.txt).
    public static let defaultComplexHumanInstruction: [String] = [
        "Given a user prompt, generate an 'Enhanced prompt' that provides detailed visual descriptions suitable for image generation. Evaluate the level of detail in the user prompt:",
        "- If the prompt is simple, focus on adding specifics about colors, shapes, sizes, textures, and spatial relationships to create vivid and concrete scenes.",
        "- If the prompt is already detailed, refine and enhance the existing details slightly without overcomplicating.",
        "Here are examples of how to transform or refine prompts:",
        "- User Prompt: A cat sleeping -> Enhanced: A small, fluffy white cat curled up in a round shape, sleeping peacefully on a warm sunny windowsill, surrounded by pots of blooming red flowers.",
        "- User Prompt: A busy city street -> Enhanced: A bustling city street scene at dusk, featuring glowing street lamps, a diverse crowd of people in colorful clothing, and a double-decker bus passing by towering glass skyscrapers.",
        "Please generate only the enhanced description for the prompt below and avoid including any additional commentary or evaluations:",
        "User Prompt: ",
    ]

    public let tokenizer: GemmaTokenizer
    public let encoder: Gemma2Model
    /// Tokens per prompt after selection (SanaPipeline's max_sequence_length, 300).
    public let maxSequenceLength: Int
    /// Lines of the instruction, or nil to encode prompts without one (complex_human_instruction=None).
    public let instruction: [String]?
    /// A cache stored in the bundle (computed at conversion); used only for an instruction with exactly its ids.
    public let storedPrefixCache: StoredPrefixCache?
    private var cache: Gemma2PrefixCache?

    /// Where the instruction's prefix cache came from, once `prefixCache()` has run.
    public enum PrefixCacheOrigin: Sendable { case computed, stored }
    public private(set) var prefixCacheOrigin: PrefixCacheOrigin?

    public init(tokenizer: GemmaTokenizer, encoder: Gemma2Model, maxSequenceLength: Int = 300,
                instruction: [String]? = SanaPromptEncoder.defaultComplexHumanInstruction,
                storedPrefixCache: StoredPrefixCache? = nil) throws {
        guard maxSequenceLength >= 2 else { throw ModelError.badInput("max_sequence_length \(maxSequenceLength) must be at least 2") }
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.maxSequenceLength = maxSequenceLength
        // An empty list means no instruction in the reference (`if not complex_human_instruction`).
        self.instruction = (instruction?.isEmpty ?? true) ? nil : instruction
        self.storedPrefixCache = storedPrefixCache
    }

    /// Embeddings [B, L, C] and attention mask [B][L] of encoded prompts.
    public struct Output {
        public var embeds: Tensor
        public var mask: [[Int]]
    }

    /// The instruction text prepended to every prompt ("\n"-joined lines).
    public var instructionText: String? { instruction?.joined(separator: "\n") }

    /// The instruction's encoder state: read from the stored cache when its ids are exactly the instruction's (and
    /// it was made for this encoder's config), else computed; on first use, or ahead of time by calling this. A
    /// damaged stored cache is an error (BundleError naming its tensor), not a silent recomputation.
    public func prefixCache() throws -> Gemma2PrefixCache? {
        guard let text = instructionText else { return nil }
        if let cache { return cache }
        let ids = tokenizer.encode(text)
        let made: Gemma2PrefixCache
        if let stored = storedPrefixCache, stored.ids == ids, stored.config == encoder.config {
            made = try stored.load()
            prefixCacheOrigin = .stored
        } else {
            made = try encoder.makePrefixCache(ids: ids)
            prefixCacheOrigin = .computed
        }
        cache = made
        return made
    }

    /// SanaPipeline._text_preprocessing without clean_caption: `text.lower().strip()`.
    public static func preprocess(_ text: String) -> String {
        let scalars = Array(text.lowercased().unicodeScalars)
        // str.strip() removes what str.isspace() accepts: White_Space plus the separators U+001C…U+001F.
        let isSpace = { (s: Unicode.Scalar) in s.properties.isWhitespace || (0x1C ... 0x1F).contains(s.value) }
        guard let first = scalars.firstIndex(where: { !isSpace($0) }), let last = scalars.lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars[first ... last])
        return String(out)
    }

    /// Positive prompts (with the instruction, selection applied) and negative prompts (without), in one encoder pass
    /// (each layer is loaded once). `useCache: false` runs the instruction through the encoder with each prompt.
    public func encode(prompts: [String], negativePrompts: [String], useCache: Bool = true) throws -> (positive: Output, negative: Output) {
        let msl = maxSequenceLength
        var maxLengthAll = msl
        var texts = prompts.map(SanaPromptEncoder.preprocess)
        if let chi = instructionText {
            texts = texts.map { chi + $0 }
            maxLengthAll = tokenizer.encode(chi).count + msl - 2
        }
        guard maxLengthAll >= msl else {
            throw ModelError.badInput("prompt encoder: the instruction has too few tokens for the token selection")
        }
        let positive = try tokenizer.encodePadded(texts, maxLength: maxLengthAll)
        let negative = try tokenizer.encodePadded(negativePrompts.map(SanaPromptEncoder.preprocess), maxLength: msl)
        let sequences = Array(zip(positive.ids, positive.mask)) + Array(zip(negative.ids, negative.mask))
        let states = try encoder.encode(sequences.map { (ids: $0.0, mask: $0.1) }, prefix: useCache ? prefixCache() : nil)

        // select_index = [0] + list(range(-msl + 1, 0)) on sequences of length maxLengthAll.
        let select = [0] + Array(maxLengthAll - msl + 1 ..< maxLengthAll)
        let c = encoder.config.hiddenSize
        func stack(_ rows: ArraySlice<Tensor>, _ masks: [[Int]], _ index: [Int]) -> Output {
            var data: [Float] = []
            data.reserveCapacity(rows.count * index.count * c)
            for t in rows { for i in index { data += t.data[i * c ..< (i + 1) * c] } }
            return Output(embeds: Tensor(shape: [rows.count, index.count, c], data: data),
                          mask: masks.map { m in index.map { m[$0] } })
        }
        return (stack(states[0 ..< prompts.count], positive.mask, select),
                stack(states[prompts.count...], negative.mask, Array(0 ..< msl)))
    }
}
