// `--memory-budget`: what each stage of a request needs resident, estimated from the bundle's tensor table and the
// configs before any weights are read, and the decisions taken from it (DiT block prefetch, DC-AE tiling).
//
// A stage's estimate = the process's resident memory when the bundle was opened (runtime, libraries) + the weights
// the stage keeps + its largest set of live activations, × 1.25 for allocator slack, transients and scratch that
// kernels keep from an earlier stage (measured: docs/NUMERICS.md "End to end"). Weights are the
// packed bytes of the tensors (kernels run on them as stored) plus a float32 copy of the small ones (norms, biases,
// tables, depthwise kernels), which the layers unpack. These are estimates, not bounds: docs/NUMERICS.md
// "End to end" reports the measured peak against them.
import Foundation
import SanaFormat

/// Per-stage costs of one bundle and the decisions a memory budget implies.
struct BundleMemoryPlan: MemoryPlanning {
    /// Resident bytes when the pipeline was opened.
    let baseline: Int
    let budget: Int?
    let gemma: Gemma2Config
    let transformer: SanaTransformerConfig
    let vae: AutoencoderDCConfig
    /// Parsed tokenizer (≈ 4 × tokenizer.json), final norm, and the largest row chunk of the embedding.
    let encoderResident: Int
    /// The largest Gemma layer.
    let gemmaLayer: Int
    /// DiT tensors outside the blocks (embeddings, caption projection, output head).
    let ditResident: Int
    /// The largest DiT block.
    let ditBlock: Int
    /// DC-AE decoder tensors.
    let decoderWeights: Int
    /// Tokens of the instruction prefix cache stored in the bundle, nil without one.
    let storedPrefixTokens: Int?

    static let slack = 1.25
    /// Decoder activations allowed without a budget: beyond this the (exact) tiled decode is used. 512 MiB keeps a
    /// default Sana-1.6B 1024² run under 1 GiB resident (840 MiB measured; 1234 MiB at 1 GiB of activations) at no
    /// measurable cost in time: the decode's tiles need few margins at that size (docs/BENCHMARKS.md, End to end).
    static let unboundedDecodeActivations = 512 << 20

    init(bundle: SanaBundle, gemma: Gemma2Config, transformer: SanaTransformerConfig, vae: AutoencoderDCConfig,
         budget: Int?, baseline: Int? = nil) throws {
        self.baseline = baseline ?? Memory.residentBytes().current
        self.budget = budget
        self.gemma = gemma
        self.transformer = transformer
        self.vae = vae
        let tensors = bundle.header.tensors
        func bytes(_ t: TensorRecord) -> Int {
            let floats = t.rows * t.cols
            let depthwise = t.shape.count == 4 && t.shape[1] == 1
            return t.bytes + (floats < 65536 || depthwise ? 4 * floats : 0)
        }
        func sum(_ component: String, _ include: (String) -> Bool) -> Int {
            tensors.filter { $0.component == component && include($0.name) }.reduce(0) { $0 + bytes($1) }
        }
        /// Bytes of the largest group "<prefix><i>." for i in 0..<count.
        func largest(_ component: String, _ prefix: String, _ count: Int) -> Int {
            (0 ..< count).map { i in sum(component) { $0.hasPrefix("\(prefix)\(i).") } }.max() ?? 0
        }
        let embedding = tensors.first { $0.component == "text_encoder" && $0.name == "embed_tokens.weight" }
        let chunk = embedding.map { e in (e.storageType?.matrixBytes(rows: e.chunkRows, cols: e.cols) ?? 0) + 4 * e.chunkRows * e.cols } ?? 0
        encoderResident = 4 * (bundle.header.tokenizer.values.reduce(0) { $0 + $1.bytes }) + chunk + 4 * gemma.hiddenSize
        gemmaLayer = largest("text_encoder", "layers.", gemma.numHiddenLayers)
        ditBlock = largest("transformer", "transformer_blocks.", transformer.numLayers)
        ditResident = sum("transformer") { !$0.hasPrefix("transformer_blocks.") }
        decoderWeights = sum("vae") { $0.hasPrefix("decoder.") }
        storedPrefixTokens = tensors.first {
            $0.component == Gemma2PrefixCache.componentName && $0.name == Gemma2PrefixCache.outputName
        }?.rows
    }

    // MARK: Per-stage estimates (bytes, without the baseline and slack)

    /// Gemma-2 over the request's sequences: one layer resident, the instruction's prefix cache, activations of
    /// every token row (an upper bound: one token per byte of the instruction). With a prefix cache stored in the
    /// bundle, the instruction's rows are read from it (its exact size), not computed.
    func encodeBytes(_ r: GenerationRequest) -> (weights: Int, activations: Int) {
        let g = gemma, h = g.hiddenSize, kv = g.numKeyValueHeads * g.headDim
        let stored = r.complexHumanInstruction ? storedPrefixTokens : nil
        let instruction = r.complexHumanInstruction
            ? stored ?? SanaPromptEncoder.defaultComplexHumanInstruction.joined(separator: "\n").utf8.count + 2 : 0
        let computed = stored == nil ? instruction : 0
        let positive = computed + r.maxSequenceLength, negative = r.guidanceScale > 1 ? r.maxSequenceLength : 0
        let rows = positive + negative, longest = max(positive, negative)
        let keys = max(instruction + r.maxSequenceLength, negative)  // a query sees the prefix's keys too
        let perRow = 4 * h + 3 * g.intermediateSize + (g.numAttentionHeads + 2 * g.numKeyValueHeads) * g.headDim
        let cache = instruction * (g.numHiddenLayers * 2 * kv + h)
        let floats = rows * perRow + longest * keys + cache + rows * h  // attention scores: one head at a time
        return (encoderResident + gemmaLayer, 4 * floats)
    }

    /// One DiT forward on the request: non-block weights, `blocks` blocks, and the activations of a block.
    func denoiseBytes(batch: Int, latentHeight h: Int, latentWidth w: Int, tokens l: Int, blocks: Int) -> (weights: Int, activations: Int) {
        let t = transformer, c = t.innerDim, p = t.patchSize
        let n = (h / p) * (w / p), hidden = Int(Double(c) * t.mlpRatio)
        // Tokens: input, norm/modulation, q/k/v, attention out, GLUMBConv's 2·hidden expansion (conv and depthwise)
        // and gated half; caption: projection and k/v; cross-attention scores (one head at a time).
        let floats = batch * (n * (8 * c + 5 * hidden) + l * (t.captionChannels + 4 * c)) + n * l
            + 3 * batch * t.inChannels * h * w
        return (ditResident + blocks * ditBlock, 4 * floats)
    }

    func denoiseBytes(_ r: GenerationRequest, blocks: Int) -> (weights: Int, activations: Int) {
        let f = vae.spatialCompressionRatio
        return denoiseBytes(batch: r.denoiseBatch, latentHeight: r.height / f, latentWidth: r.width / f,
                            tokens: r.maxSequenceLength, blocks: blocks)
    }

    /// The decoder's weights, its activations untiled and at the finest tiling that the planner finds, and the
    /// image buffers (float [3, H, W], 8-bit, PNG rows).
    func decodeBytes(_ r: GenerationRequest) -> (weights: Int, untiled: Int, minimum: Int) {
        let f = vae.spatialCompressionRatio, h = r.height / f, w = r.width / f
        let image = 6 * 3 * r.height * r.width
        let untiled = AutoencoderDC.estimatedDecodePeakBytes(config: vae, batch: 1, latentHeight: h, latentWidth: w)
        var minimum = untiled
        if let shapes = try? DCAEDecoder.layout(vae) {
            // The smallest activation budget the tiling planner accepts (its estimate is monotone in the budget).
            var lo = 0, hi = untiled
            while lo < hi {
                let mid = lo + (hi - lo) / 2
                if AutoencoderDC.plan(shapes, batch: 1, latentHeight: h, latentWidth: w, budget: mid) != nil { hi = mid } else { lo = mid + 1 }
            }
            minimum = lo
        }
        return (decoderWeights + image, untiled + image, minimum + image)
    }

    func total(_ weights: Int, _ activations: Int) -> Int { baseline + Int(Double(weights + activations) * Self.slack) }

    // MARK: MemoryPlanning

    func check(_ request: GenerationRequest, config: PipelineConfig) throws {
        guard let budget else { return }
        func need(_ stage: PipelineStage, _ weights: Int, _ activations: Int) throws {
            let needed = total(weights, activations)
            guard needed > budget else { return }
            throw GenerationError.memoryBudget(
                stage: stage, needed: needed, budget: budget,
                detail: "process \(Memory.format(baseline)) + weights \(Memory.format(weights)) + activations "
                    + "\(Memory.format(activations)), with \(Int((Self.slack - 1) * 100))% slack")
        }
        let e = encodeBytes(request)
        try need(.encode, e.weights, e.activations)
        let d = denoiseBytes(request, blocks: 1)
        try need(.denoise, d.weights, d.activations)
        let v = decodeBytes(request)
        try need(.decode, v.weights, v.minimum)
    }

    // MARK: Decisions

    /// Two blocks resident (block i+1 read while block i runs) when they fit the budget.
    func prefetch(batch: Int, latentHeight: Int, latentWidth: Int, tokens: Int) -> Bool {
        guard let budget else { return true }
        let d = denoiseBytes(batch: batch, latentHeight: latentHeight, latentWidth: latentWidth, tokens: tokens, blocks: 2)
        return total(d.weights, d.activations) <= budget
    }

    /// Full-frame when its activations fit what the budget leaves beside the decoder's weights, else the cheapest
    /// exact tiling that does.
    func decoderTiling(latentHeight: Int, latentWidth: Int) -> DecodeTiling {
        guard let budget else { return .auto(budgetBytes: Self.unboundedDecodeActivations) }
        let image = 6 * 3 * latentHeight * latentWidth * vae.spatialCompressionRatio * vae.spatialCompressionRatio
        let left = Double(budget - baseline) / Self.slack - Double(decoderWeights + image)
        return .auto(budgetBytes: max(0, Int(left)))
    }
}
