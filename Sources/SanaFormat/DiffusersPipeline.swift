// A diffusers Sana pipeline directory as the converter sees it: model_index.json, the three weight components
// (config.json + safetensors), tokenizer/ and scheduler/. Classes are checked against what SanaEdge runs, and key
// config values against tensor shapes, so an inconsistent checkpoint fails at conversion, naming file and tensor.
import Foundation

public enum PipelineError: Error, CustomStringConvertible, Equatable {
    case missingFile(path: String)
    case badJSON(path: String, reason: String)
    case unsupportedClass(path: String, component: String, className: String, supported: [String])
    case missingTensor(path: String, tensor: String)
    case shapeMismatch(path: String, tensor: String, expected: [Int], actual: [Int], reason: String)
    case inconsistent(path: String, reason: String)

    public var description: String {
        switch self {
        case let .missingFile(p): return "\(p): missing"
        case let .badJSON(p, r): return "\(p): \(r)"
        case let .unsupportedClass(p, c, n, s):
            return "\(p): \(c) class '\(n)' is not supported (supported: \(s.joined(separator: ", ")))"
        case let .missingTensor(p, t): return "\(p): tensor '\(t)' is missing"
        case let .shapeMismatch(p, t, e, a, r): return "\(p): tensor '\(t)' has shape \(a), the config gives \(e) (\(r))"
        case let .inconsistent(p, r): return "\(p): \(r)"
        }
    }
}

/// Reads JSON as diffusers writes it: Python's json emits the non-standard tokens NaN, Infinity and -Infinity,
/// which are replaced by null here (only for the converter's own checks; bundles keep the original text).
public func lenientJSONObject(_ text: String, path: String) throws -> [String: Any] {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    var inString = false, escape = false
    var i = text.startIndex
    while i < text.endIndex {
        let c = text[i]
        if inString {
            out.append(c)
            if escape { escape = false } else if c == "\\" { escape = true } else if c == "\"" { inString = false }
            i = text.index(after: i)
            continue
        }
        if c == "\"" { inString = true }
        var replaced = false
        for token in ["-Infinity", "Infinity", "NaN"] where text[i...].hasPrefix(token) {
            out += "null"
            i = text.index(i, offsetBy: token.count)
            replaced = true
            break
        }
        if !replaced {
            out.append(c)
            i = text.index(after: i)
        }
    }
    guard let obj = try? JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
        throw PipelineError.badJSON(path: path, reason: "not a JSON object")
    }
    return obj
}

public final class DiffusersPipeline: @unchecked Sendable {
    public struct Component {
        public let name: String
        public let library: String
        public let className: String
        public let configPath: String
        public let configText: String
        public let config: [String: Any]
        public let weights: SafetensorsDirectory
    }

    public static let supported: [String: [String]] = [
        "text_encoder": ["Gemma2Model", "Gemma2ForCausalLM"],
        "transformer": ["SanaTransformer2DModel"],
        "vae": ["AutoencoderDC"],
        "scheduler": ["DPMSolverMultistepScheduler", "FlowMatchEulerDiscreteScheduler"],
        "tokenizer": ["GemmaTokenizer", "GemmaTokenizerFast"],
    ]
    public static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]

    public let path: String
    public let modelIndexText: String
    public let components: [String: Component]
    public let schedulerClass: String
    public let schedulerText: String
    /// Tokenizer file name → path (tokenizer.json always present).
    public let tokenizerFiles: [String: String]

    static func readText(_ path: String) throws -> String {
        guard let d = FileManager.default.contents(atPath: path) else { throw PipelineError.missingFile(path: path) }
        guard let s = String(data: d, encoding: .utf8) else { throw PipelineError.badJSON(path: path, reason: "not UTF-8") }
        return s
    }

    public init(path: String) throws {
        self.path = path
        func sub(_ parts: String...) -> String { parts.reduce(path) { ($0 as NSString).appendingPathComponent($1) } }
        let indexPath = sub("model_index.json")
        modelIndexText = try Self.readText(indexPath)
        let index = try lenientJSONObject(modelIndexText, path: indexPath)
        guard let pipelineClass = index["_class_name"] as? String, pipelineClass == "SanaPipeline" else {
            throw PipelineError.unsupportedClass(path: indexPath, component: "pipeline",
                                                 className: "\(index["_class_name"] ?? "none")", supported: ["SanaPipeline"])
        }
        func entry(_ name: String) throws -> (library: String, className: String) {
            guard let pair = index[name] as? [Any], pair.count == 2, let lib = pair[0] as? String, let cls = pair[1] as? String else {
                throw PipelineError.badJSON(path: indexPath, reason: "no [library, class] entry for '\(name)'")
            }
            guard Self.supported[name]?.contains(cls) == true else {
                throw PipelineError.unsupportedClass(path: indexPath, component: name, className: cls, supported: Self.supported[name] ?? [])
            }
            return (lib, cls)
        }
        var comps: [String: Component] = [:]
        for name in BundleFormat.components {
            let (lib, cls) = try entry(name)
            let configPath = sub(name, "config.json")
            let text = try Self.readText(configPath)
            let config = try lenientJSONObject(text, path: configPath)
            // diffusers configs name their class in _class_name, transformers configs in architectures.
            let declared = (config["_class_name"] as? String) ?? ((config["architectures"] as? [String])?.first)
            if let declared, !(Self.supported[name] ?? []).contains(declared) {
                throw PipelineError.unsupportedClass(path: configPath, component: name, className: declared, supported: Self.supported[name] ?? [])
            }
            comps[name] = Component(name: name, library: lib, className: cls, configPath: configPath, configText: text,
                                    config: config, weights: try SafetensorsDirectory(path: sub(name)))
        }
        components = comps
        (_, schedulerClass) = try entry("scheduler")
        let schedPath = sub("scheduler", "scheduler_config.json")
        schedulerText = try Self.readText(schedPath)
        let sched = try lenientJSONObject(schedulerText, path: schedPath)
        if let declared = sched["_class_name"] as? String, declared != schedulerClass {
            throw PipelineError.inconsistent(path: schedPath, reason: "class '\(declared)' but model_index.json says '\(schedulerClass)'")
        }
        _ = try entry("tokenizer")
        var tok: [String: String] = [:]
        for f in Self.tokenizerFiles where FileManager.default.fileExists(atPath: sub("tokenizer", f)) { tok[f] = sub("tokenizer", f) }
        guard tok["tokenizer.json"] != nil else { throw PipelineError.missingFile(path: sub("tokenizer", "tokenizer.json")) }
        tokenizerFiles = tok
    }
}
