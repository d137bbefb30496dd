// `sana inspect BUNDLE [--verify] [--json]`: what a bundle holds, and (with --verify) that every frame is intact.
import ArgumentParser
import Foundation
import SanaFormat
import SanaKit

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a bundle's components, configs, storage and quantization policy; --verify checks every frame.")

    @Argument(help: "The bundle file.")
    var bundle: String

    @Flag(help: "Decompress every frame and check its checksums.")
    var verify = false

    @Flag(help: "Print a JSON summary (with every tensor) instead of text.")
    var json = false

    /// Config values worth a glance, per component.
    static let briefKeys: [String: [String]] = [
        "text_encoder": ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "vocab_size"],
        "transformer": ["num_layers", "num_attention_heads", "attention_head_dim", "caption_channels", "in_channels", "patch_size", "qk_norm"],
        "vae": ["latent_channels", "decoder_block_out_channels", "upsample_block_type", "scaling_factor"],
        "scheduler": ["prediction_type", "flow_shift", "shift", "solver_order", "algorithm_type", "use_flow_sigmas"],
    ]

    static func brief(_ text: String, _ keys: [String]) -> String {
        guard let obj = try? lenientJSONObject(text, path: "") else { return "(config not readable)" }
        return keys.compactMap { k -> String? in
            guard let v = obj[k] else { return nil }
            if v is NSNull { return "\(k)=null" }
            // JSONSerialization returns booleans as NSNumber of C type "c".
            if let n = v as? NSNumber, String(cString: n.objCType) == "c" { return "\(k)=\(n.boolValue)" }
            if let a = v as? [Any] { return "\(k)=[\(a.map { "\($0)" }.joined(separator: ","))]" }
            return "\(k)=\(v)"
        }.joined(separator: " ")
    }

    func run() throws {
        let b = try SanaBundle(path: bundle)
        let h = b.header
        var verified: (frames: Int, bytes: Int)?
        if verify {
            let progress = Progress(enabled: isatty(2) != 0 && !json)
            verified = try b.verify { done, total in progress.update(done, total, "verifying") }
            progress.finish()
        }
        var byType: [String: (count: Int, bytes: Int, stored: Int)] = [:]
        var byClass: [String: Int] = [:]
        var perComponent: [String: (count: Int, stored: Int)] = [:]
        for t in h.tensors {
            byType[t.type, default: (0, 0, 0)].count += 1
            byType[t.type, default: (0, 0, 0)].bytes += t.bytes
            byType[t.type, default: (0, 0, 0)].stored += t.storedBytes
            byClass[t.policyClass, default: 0] += 1
            perComponent[t.component, default: (0, 0)].count += 1
            perComponent[t.component, default: (0, 0)].stored += t.storedBytes
        }
        // The instruction's prefix cache stored at conversion (docs/FORMAT.md "Derived components").
        let prefixCache = h.components[Gemma2PrefixCache.componentName].map { c in
            (stored: perComponent[Gemma2PrefixCache.componentName]?.stored ?? 0,
             floats: h.tensors.filter { $0.component == Gemma2PrefixCache.componentName }.reduce(0) { $0 + $1.bytes },
             config: try? JSONDecoder().decode(Gemma2PrefixCache.StoredConfig.self, from: Data(c.config.utf8)))
        }
        let ratio = b.fileSize > 0 ? Double(h.sourceBytes) / Double(b.fileSize) : 0
        let worst = h.tensors.filter { $0.relRMS > 0 }.sorted { $0.relRMS > $1.relRMS }.prefix(5)

        if json {
            var out: [String: Any] = [
                "path": bundle, "file_bytes": b.fileSize, "format_version": h.version, "converter": h.converter,
                "source_bytes": h.sourceBytes, "compression_ratio": ratio, "tensor_count": h.tensors.count,
                "scheduler": h.scheduler.className,
                "components": Dictionary(uniqueKeysWithValues: h.components.map { k, c in
                    (k, ["class_name": c.className, "tensors": perComponent[k]?.count ?? 0, "stored_bytes": perComponent[k]?.stored ?? 0,
                         "source_bytes": c.sourceBytes] as [String: Any])
                }),
                "storage": Dictionary(uniqueKeysWithValues: byType.map { k, v in (k, ["tensors": v.count, "bytes": v.bytes, "stored_bytes": v.stored]) }),
                "policy": ["weights": h.quantization.weights, "float_type": h.quantization.floatType,
                           "embedding_type": h.quantization.embeddingType, "min_elements": h.quantization.minElements,
                           "rules": h.quantization.rules, "classes": byClass] as [String: Any],
                "tokenizer_files": h.tokenizer.keys.sorted(),
                "tensors": h.tensors.map { t in
                    ["component": t.component, "name": t.name, "shape": t.shape, "type": t.type, "class": t.policyClass,
                     "bytes": t.bytes, "stored_bytes": t.storedBytes, "frames": t.frames.count, "rel_rms": t.relRMS] as [String: Any]
                },
            ]
            if let v = verified { out["verified"] = ["frames": v.frames, "bytes": v.bytes] }
            if let p = prefixCache {
                out["prefix_cache"] = ["tokens": p.config?.ids.count ?? 0, "bytes": p.floats, "stored_bytes": p.stored,
                                       "instruction": p.config?.instruction ?? ""] as [String: Any]
            }
            let data = try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }

        print("\(bundle): SanaEdge bundle v\(h.version), \(formatBytes(b.fileSize)) (\(h.converter))")
        print("source \(formatBytes(h.sourceBytes)), compression ratio \(String(format: "%.2f", ratio))x")
        print("components:")
        for name in BundleFormat.components {
            guard let c = h.components[name] else { continue }
            let pc = perComponent[name] ?? (0, 0)
            print("  \(name.padding(13)) \(c.className.padding(24)) \(String(pc.count).leftPad(5)) tensors \(formatBytes(pc.stored).leftPad(10))  "
                + Self.brief(c.config, Self.briefKeys[name] ?? []))
        }
        if let p = prefixCache {
            let tokens = p.config.map { "\($0.ids.count) tokens" } ?? "unreadable config"
            let first = p.config.map { $0.instruction.prefix(40).replacingOccurrences(of: "\n", with: " ") } ?? ""
            print("  \("prefix cache".padding(13)) \(tokens) of the instruction (\"\(first)…\"), "
                + "\(formatBytes(p.floats)) float32, \(formatBytes(p.stored)) stored")
        }
        print("  \("scheduler".padding(13)) \(h.scheduler.className)  " + Self.brief(h.scheduler.config, Self.briefKeys["scheduler"] ?? []))
        print("  \("tokenizer".padding(13)) " + h.tokenizer.sorted { $0.key < $1.key }.map { "\($0.key) (\(formatBytes($0.value.bytes)))" }.joined(separator: ", "))
        print("tensors: \(h.tensors.count)")
        print("  type   tensors     packed     stored")
        for t in StorageType.allCases {
            guard let v = byType[t.name] else { continue }
            print("  \(t.name.padding(5)) \(String(v.count).leftPad(8)) \(formatBytes(v.bytes).leftPad(10)) \(formatBytes(v.stored).leftPad(10))")
        }
        print("quantization policy: weights \(h.quantization.weights)")
        for r in h.quantization.rules { print("  - \(r)") }
        print("  classes: " + byClass.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        if !worst.isEmpty {
            print("largest conversion error (relative RMS):")
            for t in worst { print("  \(String(format: "%.3e", t.relRMS))  \(t.type.padding(5)) \(t.component)/\(t.name)") }
        }
        if let v = verified { print("verify: OK, \(v.frames) frames, \(formatBytes(v.bytes)) decompressed, all checksums match") }
    }
}
