// The per-tensor storage policy of `sana convert --weights W` (docs/FORMAT.md "The quantization policy").
public struct QuantizationPolicy: Codable, Sendable, Equatable {
    /// Why a tensor got its storage type; recorded per tensor in the bundle and shown by `inspect`.
    public enum TensorClass: String, Sendable, CaseIterable {
        case quantized, embedding, sensitive, small, norm, vector, float
        /// DC-AE EfficientViT blocks (ReLU linear attention, GLUMBConv): bf16 in integer bundles.
        case efficientViT = "efficientvit"
    }

    /// The requested storage type (`--weights`).
    public var weights: String
    /// The type of kept-float tensors.
    public var floatType: String
    /// The type of the text encoder's token embedding in integer bundles.
    public var embeddingType: String
    /// Integer bundles keep tensors with fewer elements in float.
    public var minElements: Int
    /// Tensors with more elements are split into row-chunk frames ...
    public var chunkElements: Int
    /// ... of about this many elements each (whole rows).
    public var frameElements: Int
    public var zstdLevel: Int
    /// The rules in words, for `inspect`.
    public var rules: [String]

    enum CodingKeys: String, CodingKey {
        case weights, floatType = "float_type", embeddingType = "embedding_type", minElements = "min_elements"
        case chunkElements = "chunk_elements", frameElements = "frame_elements", zstdLevel = "zstd_level", rules
    }

    public init(weights: StorageType, minElements: Int = 1024, chunkElements: Int = 4 << 20,
                frameElements: Int = 1 << 20, zstdLevel: Int = 3) {
        self.weights = weights.name
        floatType = StorageType.f32.name
        embeddingType = weights.isQuantized ? StorageType.int8.name : weights.name
        self.minElements = minElements
        self.chunkElements = chunkElements
        self.frameElements = frameElements
        self.zstdLevel = zstdLevel
        rules = weights.isQuantized
            ? ["0-D/1-D tensors and norm weights: \(floatType)",
               "text encoder token embedding: \(embeddingType)",
               "sensitive (transformer patch_embed/proj_out/scale_shift_table, DC-AE decoder conv_in/conv_out): \(floatType)",
               "efficientvit (DC-AE EfficientViT blocks' .attn. and .conv_out.conv_* weights): \(StorageType.bf16.name)",
               "fewer than \(minElements) elements or fewer columns than one quantization group: \(floatType)",
               "other weights (linear, 1x1 and kxk convolutions): \(weights.name)"]
            : ["0-D/1-D tensors and norm weights: \(floatType)", "other tensors: \(weights.name)"]
    }

    /// Names kept in float in integer bundles because they map model inputs or outputs directly.
    static let sensitive: [String: [String]] = [
        "transformer": ["patch_embed.proj.weight", "proj_out.weight", "scale_shift_table"],
        "vae": ["decoder.conv_in.weight", "decoder.conv_out.weight"],
    ]
    static let embeddings: [String: String] = ["text_encoder": "embed_tokens.weight"]

    /// The column layout a tensor of `shape` stored as `type` gets: tap-major for k×k convolution weights
    /// [O, I, kh, kw] (kh·kw > 1) in an integer type when I is a multiple of the type's group size, so each
    /// quantization group lies within one kernel tap and the input is quantized once per pixel
    /// (docs/FORMAT.md "Convolution weight layout"); the reference order otherwise.
    public static func layout(shape: [Int], type: StorageType) -> TensorLayout {
        guard type.isQuantized, shape.count == 4, shape[2] * shape[3] > 1, shape[1] % type.groupSize == 0 else { return .reference }
        return .tapMajor
    }

    /// The class and storage type of one tensor.
    public func decide(component: String, name: String, shape: [Int]) -> (TensorClass, StorageType) {
        let target = StorageType(name: weights) ?? .f32
        let float = StorageType(name: floatType) ?? .f32
        let parts = name.split(separator: ".")
        let module = parts.count >= 2 ? parts[parts.count - 2] : Substring(name)
        if shape.count < 2 { return (.vector, float) }
        if module.lowercased().contains("norm") { return (.norm, float) }
        guard target.isQuantized else { return (.float, target) }
        if Self.embeddings[component] == name { return (.embedding, StorageType(name: embeddingType) ?? float) }
        let isSensitive = (Self.sensitive[component] ?? []).contains {
            name == $0 || ($0 == "scale_shift_table" && name.hasSuffix(".scale_shift_table"))
        }
        if isSensitive { return (.sensitive, float) }
        let elements = Checked.product(shape) ?? 0
        let cols = shape.dropFirst().reduce(1, *)
        // A row shorter than one scale group is padded with zeros to a whole group: worth it down to 32 columns
        // (int4 groups are 64 wide); below that the scales and padding outweigh the saving.
        if elements < minElements || cols < min(target.groupSize, 32) { return (.small, float) }
        // int8 activation rounding in the DC-AE's EfficientViT blocks shows in the picture; its ResBlock stages (~85 %
        // of the decoder's work) stay integer (docs/NUMERICS.md "DC-AE", faithfulness).
        if component == "vae" && (name.contains(".attn.") || name.contains(".conv_out.conv_")) { return (.efficientViT, .bf16) }
        return (.quantized, target)
    }
}
