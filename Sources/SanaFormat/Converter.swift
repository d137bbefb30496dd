// `sana convert`: a diffusers Sana pipeline directory → one bundle (docs/FORMAT.md). Streams: each tensor (or row
// chunk of a large tensor) is read from the memory-mapped safetensors, packed by the quantization policy, compressed
// and written, and its source pages are released; `threads` frames are in flight at a time, so peak memory is a
// small multiple of the largest frame, not of the checkpoint.
import CSanaKernels
import Dispatch
import Foundation

public struct ConversionOptions: Sendable {
    public var weights: StorageType
    public var threads: Int
    public var minElements = 1024
    public var chunkElements = 4 << 20
    public var frameElements = 1 << 20
    public var zstdLevel: Int32 = 3
    /// Components computed from the stored weights while converting (e.g. the text encoder's instruction prefix
    /// cache), each written right after the component it derives from.
    public var derived: [DerivedComponent] = []
    /// Test hook: fail after writing this many tensor frames (to test that a failed conversion leaves nothing).
    var faultAfterFrames: Int?

    public init(weights: StorageType, threads: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)) {
        self.weights = weights
        self.threads = max(1, threads)
    }
}

public struct ConversionReport: Sendable {
    public struct Tensor: Sendable {
        public let component: String, name: String, type: StorageType, policyClass: String
        public let sourceBytes: Int, storedBytes: Int, relRMS: Double
    }

    public var tensors: [Tensor] = []
    public var sourceBytes = 0
    public var bundleBytes = 0
    /// Derived components written: name, tensor count, stored bytes.
    public var derived: [(name: String, tensors: Int, storedBytes: Int)] = []
}

public enum Converter {
    /// Renames from source keys to reference keys, one table: Gemma2ForCausalLM checkpoints prefix the
    /// Gemma2Model keys with "model.".
    static let renames: [(component: String, from: String, to: String)] = [("text_encoder", "model.", "")]
    /// Source tensors not carried into bundles: the causal-LM head (tied to the embedding, unused for encoding) and
    /// BatchNorm's integer step counter (unused at inference).
    static let drops: [(component: String?, name: String)] = [("text_encoder", "lm_head.weight"), (nil, "*.num_batches_tracked")]

    static func dropped(_ component: String, _ name: String) -> Bool {
        drops.contains { d in
            (d.component == nil || d.component == component)
                && (d.name.hasPrefix("*") ? name.hasSuffix(d.name.dropFirst()) : name == d.name)
        }
    }

    static func renamed(_ component: String, _ name: String) -> String {
        for r in renames where r.component == component && name.hasPrefix(r.from) {
            return r.to + name.dropFirst(r.from.count)
        }
        return name
    }

    /// The source key of a reference key (the inverse of `renamed` for the names that exist in the checkpoint).
    static func sourceName(_ c: DiffusersPipeline.Component, _ name: String) -> String {
        if c.weights.tensorNames.contains(name) { return name }
        for r in renames where r.component == c.name && name.hasPrefix(r.to) {
            let candidate = r.from + name.dropFirst(r.to.count)
            if c.weights.tensorNames.contains(candidate) { return candidate }
        }
        return name
    }

    struct Item: @unchecked Sendable {
        let component: String
        let name: String
        let source: SafetensorsFile
        let sourceName: String
        let sourceDType: String
        let shape: [Int]
        let policyClass: QuantizationPolicy.TensorClass
        let type: StorageType
        let layout: TensorLayout  // column order (QuantizationPolicy.layout)
        let rows: Int, cols: Int, chunkRows: Int
        var frameCount: Int { (rows + chunkRows - 1) / chunkRows }
        func frameRows(_ k: Int) -> Range<Int> { k * chunkRows ..< min(rows, (k + 1) * chunkRows) }
    }

    /// Plans the conversion of one component: renames, drops, dtype and shape checks, policy, chunking.
    static func plan(_ c: DiffusersPipeline.Component, policy: QuantizationPolicy) throws -> [Item] {
        var items: [Item] = []
        var seen: [String: String] = [:]
        for file in c.weights.files {
            for (srcName, e) in file.entries where !dropped(c.name, srcName) {
                let name = renamed(c.name, srcName)
                if let other = seen[name] {
                    throw PipelineError.inconsistent(path: file.path, reason: "tensors '\(other)' and '\(srcName)' both become '\(name)'")
                }
                seen[name] = srcName
                guard SafetensorsFile.floatDTypes.contains(e.dtype) else {
                    throw SafetensorsError.unsupportedDType(path: file.path, tensor: srcName, dtype: e.dtype)
                }
                guard !e.shape.contains(0), e.shape.count <= BundleFormat.maxDimensions else {
                    throw SafetensorsError.badTensor(path: file.path, tensor: srcName, reason: "shape \(e.shape) cannot be stored (empty or > \(BundleFormat.maxDimensions) dimensions)")
                }
                let (cls, type) = policy.decide(component: c.name, name: name, shape: e.shape)
                let rows = e.shape.count >= 2 ? e.shape[0] : 1
                let cols = e.shape.count >= 2 ? e.shape.dropFirst().reduce(1, *) : max(e.shape.first ?? 1, 1)
                let elements = rows * cols  // fits: the source validated shape × dtype without overflow
                // Row chunks split at multiples of the packed row block, so each chunk is a valid packed matrix.
                let block = type.rowBlock
                let chunkRows = elements > policy.chunkElements
                    ? min(rows, max(block, policy.frameElements / cols / block * block)) : rows
                items.append(Item(component: c.name, name: name, source: file, sourceName: srcName, sourceDType: e.dtype,
                                  shape: e.shape, policyClass: cls, type: type,
                                  layout: QuantizationPolicy.layout(shape: e.shape, type: type), rows: rows, cols: cols, chunkRows: chunkRows))
            }
        }
        // Layer by layer (groups contiguous), in natural order.
        return items.sorted {
            let (ga, gb) = (bundleGroup(of: $0.name), bundleGroup(of: $1.name))
            return ga != gb ? naturalLess(ga, gb) : $0.name < $1.name
        }
    }

    /// One compressed frame and the error statistics of its rows.
    struct FrameResult: Sendable {
        var frame: [UInt8] = []
        var sumSquaredError = 0.0
        var sumSquares = 0.0
        var error: String?
    }

    final class Box<T>: @unchecked Sendable {
        var value: T
        init(_ v: T) { value = v }
    }

    static func encodeFrame(_ item: Item, _ k: Int, _ zstd: ZstdCompressor) -> FrameResult {
        var r = FrameResult()
        let rows = item.frameRows(k)
        let values: [Float]
        let elements = rows.lowerBound * item.cols ..< rows.upperBound * item.cols
        do {
            // Whole rows, each permuted to the stored column order.
            values = item.layout.permuting(try item.source.floats(item.sourceName, elements: elements),
                                           shape: [rows.count] + item.shape.dropFirst())
        } catch {
            r.error = "\(error)"
            return r
        }
        item.source.release(item.sourceName, elements: elements)
        let t = item.type.rawValue
        let size = item.type.matrixBytes(rows: rows.count, cols: item.cols) ?? 0
        var packed = [UInt8](repeating: 0, count: size)
        values.withUnsafeBufferPointer { src in
            packed.withUnsafeMutableBytes { sana_matrix_pack(t, src.baseAddress, Int64(rows.count), Int64(item.cols), $0.baseAddress) }
        }
        if item.type != .f32 {
            var back = [Float](repeating: 0, count: values.count)
            packed.withUnsafeBytes { src in
                back.withUnsafeMutableBufferPointer {
                    sana_matrix_unpack_rows(t, src.baseAddress, Int64(rows.count), Int64(item.cols), 0, Int64(rows.count), $0.baseAddress)
                }
            }
            for i in values.indices {
                let d = Double(back[i]) - Double(values[i])
                r.sumSquaredError += d * d
                r.sumSquares += Double(values[i]) * Double(values[i])
            }
        }
        // Quantized frames keep their literals raw: int8/int4 codes are near-uniform bytes, Huffman saves ~15–20 % of
        // them but costs the runtime that much decoding every time a streamed DiT block is read (every step), ~10 % of
        // a Sana-1.6B step (docs/FORMAT.md "Compression").
        r.frame = packed.withUnsafeBytes { zstd.compress($0, rawLiterals: item.type == .int8 || item.type == .int4) }
        return r
    }

    /// Converts `pipelinePath` into a bundle at `output`. `progress(doneBytes, totalBytes, tensor)` is called after
    /// each frame. On any error nothing is left at `output` (nor a temporary file).
    public static func convert(pipelinePath: String, output: String, options: ConversionOptions,
                               progress: (Int, Int, String) -> Void = { _, _, _ in }) throws -> ConversionReport {
        let pipeline = try DiffusersPipeline(path: pipelinePath)
        try PipelineChecks.check(pipeline)
        let policy = QuantizationPolicy(weights: options.weights, minElements: options.minElements,
                                        chunkElements: options.chunkElements, frameElements: options.frameElements,
                                        zstdLevel: Int(options.zstdLevel))
        var items: [Item] = []
        for name in BundleFormat.components {
            guard let c = pipeline.components[name] else { continue }
            items += try plan(c, policy: policy)
        }
        // Checked before anything is written: a derived component runs after the last tensor of the one it needs.
        let converted = Set(items.map(\.component))
        if let orphan = options.derived.first(where: { !converted.contains($0.after) }) {
            throw PipelineError.inconsistent(path: output, reason: "derived component '\(orphan.name)' needs '\(orphan.after)', which has no tensors")
        }
        let writer = try BundleWriter(path: output)
        do {
            var report = ConversionReport()
            var tokenizer: [String: BlobRecord] = [:]
            let zstd = (0 ..< options.threads).map { _ in Box(ZstdCompressor(level: options.zstdLevel)) }
            for (name, file) in pipeline.tokenizerFiles.sorted(by: { $0.key < $1.key }) {
                guard let data = FileManager.default.contents(atPath: file) else { throw PipelineError.missingFile(path: file) }
                let frame = try writer.appendFrame(data.withUnsafeBytes { zstd[0].value.compress($0) })
                tokenizer[name] = BlobRecord(offset: frame.offset, size: frame.size, bytes: data.count, checksum: frame.checksum)
            }
            let units = items.indices.flatMap { i in (0 ..< items[i].frameCount).map { (i, $0) } }
            let totalBytes = items.reduce(0) { $0 + $1.rows * $1.cols * 4 }
            var doneBytes = 0
            var records: [TensorRecord] = []
            var frames: [FrameRecord] = []
            var sse = 0.0, ss = 0.0
            var writtenFrames = 0
            var comps: [String: ComponentRecord] = [:]
            for (name, c) in pipeline.components {
                comps[name] = ComponentRecord(className: c.className, library: c.library, config: c.configText,
                                              sourceBytes: c.weights.sourceBytes)
            }
            func header(_ tensors: [TensorRecord]) -> BundleHeader {
                BundleHeader(
                    format: "sana-bundle", version: Int(BundleFormat.version(for: tensors)), alignment: BundleFormat.alignment,
                    converter: "sana convert 1, zstd \(Zstd.versionString), level \(options.zstdLevel), int8/int4 literals raw",
                    modelIndex: pipeline.modelIndexText, components: comps,
                    scheduler: SchedulerRecord(className: pipeline.schedulerClass, config: pipeline.schedulerText),
                    tokenizer: tokenizer, quantization: policy, sourceBytes: comps.values.reduce(0) { $0 + $1.sourceBytes },
                    storageLayout: StorageLayout.current, tensors: tensors)
            }
            /// Runs the derived components of `component` on the bundle written so far.
            func derive(after component: String) throws {
                for d in options.derived where d.after == component {
                    guard comps[d.name] == nil, !BundleFormat.components.contains(d.name) else {
                        throw PipelineError.inconsistent(path: output, reason: "derived component '\(d.name)' clashes with a component")
                    }
                    let unfinished = try SanaBundle(unfinished: writer.temporaryPath, header: header(records),
                                                    dataLength: writer.dataLength)
                    let out = DerivedTensorWriter(component: d.name, writer: writer, policy: policy, zstd: zstd[0].value)
                    guard var record = try d.compute(unfinished, out) else {
                        guard out.records.isEmpty else {
                            throw PipelineError.inconsistent(path: output, reason: "derived component '\(d.name)' wrote tensors but no record")
                        }
                        continue
                    }
                    record.sourceBytes = 0
                    comps[d.name] = record
                    records += out.records
                    report.derived.append((d.name, out.records.count, out.storedBytes))
                }
            }
            var start = 0
            while start < units.count {
                // A batch stays inside one component, so derived components run when theirs is complete.
                var end = min(units.count, start + options.threads)
                if let cut = units[start ..< end].firstIndex(where: { items[$0.0].component != items[units[start].0].component }) {
                    end = cut
                }
                let batch = Array(units[start ..< end])
                let results = Box([FrameResult](repeating: FrameResult(), count: batch.count))
                let lock = NSLock()
                let itemsRef = items
                DispatchQueue.concurrentPerform(iterations: batch.count) { j in
                    let (i, k) = batch[j]
                    let r = encodeFrame(itemsRef[i], k, zstd[j].value)
                    lock.lock()
                    results.value[j] = r
                    lock.unlock()
                }
                for (j, (i, k)) in batch.enumerated() {
                    let item = items[i], r = results.value[j]
                    if let e = r.error { throw PipelineError.inconsistent(path: item.source.path, reason: e) }
                    frames.append(try writer.appendFrame(r.frame))
                    writtenFrames += 1
                    if let limit = options.faultAfterFrames, writtenFrames >= limit {
                        throw PipelineError.inconsistent(path: item.source.path, reason: "injected fault after \(limit) frames")
                    }
                    sse += r.sumSquaredError
                    ss += r.sumSquares
                    doneBytes += item.frameRows(k).count * item.cols * 4
                    progress(doneBytes, totalBytes, "\(item.component)/\(item.name)")
                    guard k == item.frameCount - 1 else { continue }
                    let rel = ss > 0 ? (sse / ss).squareRoot() : (sse > 0 ? Double.infinity : 0)
                    guard rel.isFinite else {
                        throw PipelineError.inconsistent(path: item.source.path, reason: "tensor '\(item.sourceName)': "
                            + "non-finite values (NaN or Inf in the source, or beyond the range of \(item.type.name))")
                    }
                    let bytes = item.type.matrixBytes(rows: item.rows, cols: item.cols) ?? 0
                    let rec = TensorRecord(component: item.component, name: item.name, shape: item.shape, type: item.type.name,
                                           policyClass: item.policyClass.rawValue, sourceDType: item.sourceDType,
                                           group: bundleGroup(of: item.name), bytes: bytes, chunkRows: item.chunkRows,
                                           frames: frames, relRMS: rel,
                                           layout: item.layout == .reference ? nil : item.layout.rawValue)
                    records.append(rec)
                    let srcBytes = item.source.entries[item.sourceName].map { $0.end - $0.begin } ?? 0
                    report.tensors.append(.init(component: item.component, name: item.name, type: item.type,
                                                policyClass: item.policyClass.rawValue, sourceBytes: srcBytes,
                                                storedBytes: rec.storedBytes, relRMS: rel))
                    frames = []
                    sse = 0
                    ss = 0
                }
                start += batch.count
                let last = items[batch[batch.count - 1].0].component
                if start == units.count || items[units[start].0].component != last { try derive(after: last) }
            }
            try writer.finish(header: header(records))
            report.sourceBytes = comps.values.reduce(0) { $0 + $1.sourceBytes }
            report.bundleBytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
            return report
        } catch {
            writer.abort()
            throw error
        }
    }
}
