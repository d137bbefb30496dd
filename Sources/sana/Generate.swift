// `sana generate`: the command-line contract of DESIGN.md (plus --no-chi, --max-sequence-length, --threads,
// --memory-budget, --pag-scale/--pag-adaptive-scale/--pag-layers, --prompts-file). Everything that can be checked without weights is checked before
// any model loads; the image is written only when a whole generation succeeded.
import ArgumentParser
import Foundation
import SanaFormat
import SanaKit

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate an image from a text prompt with a Sana bundle.")

    @Option(name: .long, help: "The model bundle (from `sana convert`).") var model: String
    @Option(name: .long, help: "The text prompt.") var prompt: String?
    @Option(name: .long, help: "A file of prompts: .txt (one a line) or .json (a list of {\"prompt\": …, optional settings}).")
    var promptsFile: String?
    @Option(name: .long, help: "The negative prompt.") var negativePrompt: String = ""
    @Option(name: .long, help: "Image width in pixels (a multiple of the autoencoder factor, 32).") var width: Int = 1024
    @Option(name: .long, help: "Image height in pixels (a multiple of the autoencoder factor, 32).") var height: Int = 1024
    @Option(name: .long, help: "Number of denoising steps.") var steps: Int = 20
    @Option(name: .long, help: "Classifier-free guidance scale (guidance runs above 1).") var guidanceScale: Double = 4.5
    @Option(name: .long, help: "Seed of the initial noise (torch.manual_seed compatible); random if omitted.") var seed: UInt64?
    @Option(name: .long, help: "Scheduler: dpm-solver or euler (default: the bundle's).") var scheduler: String?
    @Option(name: .long, help: "Output PNG path (with a prompts file: numbered after it).") var output: String = "out.png"
    @Option(name: .long, help: "Initial latents (.npy [1, C, H/32, W/32]) instead of seeded noise.") var latents: String?
    @Option(name: .long, help: "Write intermediate tensors as .npy files to this directory.") var dump: String?
    @Option(name: .long, help: "Bound on resident memory, e.g. 800MB, 2GiB, 1.5G.") var memoryBudget: String?
    @Option(name: .long, help: "Worker threads (default: all cores).") var threads: Int?
    @Option(name: .long, help: "Maximum prompt tokens.") var maxSequenceLength: Int = 300
    @Flag(name: .long, help: "Do not prepend the complex human instruction to the prompt.") var noChi = false
    @Option(name: .long, help: "Perturbed-attention guidance scale (SanaPAGPipeline's pag_scale; 0: off).") var pagScale: Double = 0
    @Option(name: .long, help: "PAG adaptive scale: the scale at timestep t is max(0, pag-scale − this·(1000 − t)).")
    var pagAdaptiveScale: Double = 0
    @Option(name: .long, help: "Comma-separated DiT block indices whose self-attention PAG perturbs (transformer_blocks.i).")
    var pagLayers: String = "0"

    func validate() throws {
        guard (prompt == nil) != (promptsFile == nil) else {
            throw ValidationError("give exactly one of --prompt and --prompts-file")
        }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        _ = try parsedPAGLayers()
    }

    func run() throws {
        let budget = try memoryBudget.map { text -> Int in
            do { return try Memory.parseSize(text) } catch { throw ValidationError("--memory-budget: \(error)") }
        }
        let jobs = try makeJobs()
        // What needs no bundle is checked first; sizes against the autoencoder factor and latents against the
        // model once the bundle's header is read (still before any weights load).
        for job in jobs {
            var settings = job.request
            settings.latents = nil
            try settings.validate(vaeScaleFactor: 1, latentChannels: 1)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: model, isDirectory: &isDirectory), !isDirectory.boolValue,
              FileManager.default.isReadableFile(atPath: model) else {
            throw GenerateError("--model \(model): no such readable bundle file")
        }
        let pipeline: SanaPipeline
        do {
            pipeline = try SanaPipeline(bundlePath: model, memoryBudget: budget, threads: threads, dumpDirectory: dump)
        } catch let e as BundleError {
            throw GenerateError("--model: \(e)")
        }
        // Every request is checked against the bundle (sizes, schedule, memory budget) before any weights load.
        for job in jobs { try pipeline.validate(job.request) }
        let bar = ProgressBar()
        try pipeline.generate(jobs.map(\.request), progress: bar.update) { i, result in
            bar.finish()
            let job = jobs[i]
            try PNGWriter.write(result.image, to: job.output, text: metadata(job.request, result))
            print(summary(job, result))
        }
    }

    /// "out.png: 96x64, seed 7, dpm-solver × 4 | encode prompt 0.1s, denoise 0.3s, decode 0.1s | peak RSS 21.3 MiB"
    func summary(_ job: Job, _ result: GenerationResult) -> String {
        let stages = PipelineStage.allCases.map { stage -> String in
            let shared = stage == .encode && result.encodeShared > 1 ? " (\(result.encodeShared) prompts together)" : ""
            return "\(stage.rawValue) \(String(format: "%.2f", result.seconds[stage] ?? 0))s\(shared)"
        }
        return "\(job.output): \(job.request.width)x\(job.request.height), seed \(result.seed), \(result.scheduler) × "
            + "\(job.request.steps) | \(stages.joined(separator: ", ")) | peak RSS \(Memory.format(Memory.peakResidentBytes))"
    }

    func metadata(_ r: GenerationRequest, _ result: GenerationResult) -> [(key: String, value: String)] {
        let pag: [(key: String, value: String)] = r.usesPAG ? [("pag_scale", "\(r.pagScale)"), ("pag_adaptive_scale",
            "\(r.pagAdaptiveScale)"), ("pag_layers", r.pagLayers.map(String.init).joined(separator: ","))] : []
        return [("prompt", r.prompt), ("negative_prompt", r.negativePrompt), ("seed", "\(result.seed)"), ("steps", "\(r.steps)"),
                ("guidance_scale", "\(r.guidanceScale)")] + pag + [("scheduler", result.scheduler),
                ("size", "\(r.width)x\(r.height)"), ("model", URL(fileURLWithPath: model).lastPathComponent), ("Software", "SanaEdge")]
    }

    struct Job { var request: GenerationRequest; var output: String }

    /// One job per prompt, each a request with the command line's settings, overridden per item by a JSON prompts file.
    func makeJobs() throws -> [Job] {
        var base = GenerationRequest(prompt: prompt ?? "")
        base.negativePrompt = negativePrompt
        (base.width, base.height, base.steps, base.guidanceScale) = (width, height, steps, guidanceScale)
        base.seed = seed ?? UInt64.random(in: 0 ..< (1 << 53))
        base.scheduler = try scheduler.map { try SchedulerKind(name: $0) }
        base.maxSequenceLength = maxSequenceLength
        base.complexHumanInstruction = !noChi
        (base.pagScale, base.pagAdaptiveScale, base.pagLayers) = (pagScale, pagAdaptiveScale, try parsedPAGLayers())
        if let latents {
            do {
                let (shape, values) = try Npy.read(latents)
                base.latents = Tensor(shape: shape, data: values)
            } catch { throw GenerateError("--latents: \(error)") }
        }
        guard let promptsFile else { return [Job(request: base, output: output)] }
        let items = try PromptsFile.read(promptsFile, base: base)
        return items.enumerated().map { i, item in
            Job(request: item.request, output: item.output ?? (items.count == 1 ? output : numbered(output, i + 1)))
        }
    }

    /// "7,8" → [7, 8]; each a block index ≥ 0 (checked against the model's depth once the bundle is open).
    func parsedPAGLayers() throws -> [Int] {
        let parts = pagLayers.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        return try parts.map { part in
            guard let i = Int(part), i >= 0 else {
                throw ValidationError("--pag-layers: expected comma-separated block indices ≥ 0, got '\(pagLayers)'")
            }
            return i
        }
    }

    /// out.png → out-001.png
    func numbered(_ path: String, _ n: Int) -> String {
        let url = URL(fileURLWithPath: path), ext = url.pathExtension.isEmpty ? "png" : url.pathExtension
        let stem = url.deletingPathExtension().path
        return "\(stem)-\(String(format: "%03d", n)).\(ext)"
    }
}

/// A command-line error with its message.
struct GenerateError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// `--prompts-file`: .txt (one prompt a line, blank lines skipped) or .json (a list of objects).
enum PromptsFile {
    struct Item { var request: GenerationRequest; var output: String? }

    /// One object of a .json prompts file; the keys are the snake_case names of the command-line options.
    struct Entry: Decodable {
        let prompt: String
        let negative_prompt: String?, scheduler: String?, output: String?
        let width: Int?, height: Int?, steps: Int?, seed: UInt64?
        let guidance_scale: Double?
    }

    static let keys: Set<String> = ["prompt", "negative_prompt", "width", "height", "steps", "guidance_scale", "seed",
                                    "scheduler", "output"]

    static func read(_ path: String, base: GenerationRequest) throws -> [Item] {
        guard let data = FileManager.default.contents(atPath: path) else { throw GenerateError("--prompts-file \(path): cannot read") }
        func fail(_ why: String) -> GenerateError { GenerateError("--prompts-file \(path): \(why)") }
        var items: [Item] = []
        if path.lowercased().hasSuffix(".json") {
            guard let list = try? JSONSerialization.jsonObject(with: data) as? [Any] else {
                throw fail("expected a JSON list of objects")
            }
            for (i, element) in list.enumerated() {
                let n = i + 1
                guard let object = element as? [String: Any] else { throw fail("item \(n) is not an object") }
                if let unknown = object.keys.sorted().first(where: { !keys.contains($0) }) {
                    throw fail("item \(n): unknown key '\(unknown)' (known: \(keys.sorted().joined(separator: ", ")))")
                }
                let entry: Entry
                do {
                    entry = try JSONDecoder().decode(Entry.self, from: JSONSerialization.data(withJSONObject: object))
                } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
                    let key = context.codingPath.last?.stringValue ?? "?"
                    throw fail("item \(n): \"\(key)\" must be \(type == String.self ? "a string" : type == Double.self ? "a number" : "an integer")")
                } catch DecodingError.keyNotFound {
                    throw fail("item \(n): \"prompt\" must be a string")
                } catch { throw fail("item \(n): \(error)") }
                var r = base
                r.prompt = entry.prompt
                if let v = entry.negative_prompt { r.negativePrompt = v }
                if let v = entry.width { r.width = v }
                if let v = entry.height { r.height = v }
                if let v = entry.steps { r.steps = v }
                if let v = entry.guidance_scale { r.guidanceScale = v }
                if let v = entry.seed { r.seed = v }
                if let v = entry.scheduler {
                    do { r.scheduler = try SchedulerKind(name: v) } catch { throw fail("item \(n): \(error)") }
                }
                items.append(Item(request: r, output: entry.output))
            }
        } else if path.lowercased().hasSuffix(".txt") {
            guard let text = String(data: data, encoding: .utf8) else { throw fail("not UTF-8 text") }
            for line in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
                let p = line.trimmingCharacters(in: .whitespaces)
                if p.isEmpty { continue }
                var r = base
                r.prompt = p
                items.append(Item(request: r, output: nil))
            }
        } else {
            throw fail("expected a .txt or .json file")
        }
        guard !items.isEmpty else { throw fail("no prompts") }
        return items
    }
}

/// A one-line progress display on stderr when it is a terminal: stage, steps and ETA of the denoising loop.
final class ProgressBar {
    private let enabled = isatty(STDERR_FILENO) != 0
    private var stageStart = Date()
    private var stage: PipelineStage?
    private var item = -1
    private var pending = false

    func update(_ p: PipelineProgress) {
        guard enabled else { return }
        if p.stage != stage || p.item != item { (stage, item, stageStart) = (p.stage, p.item, Date()) }
        pending = true
        let width = 30, filled = p.total > 0 ? width * p.step / p.total : 0
        let elapsed = Date().timeIntervalSince(stageStart)
        let eta = p.step > 0 ? elapsed / Double(p.step) * Double(p.total - p.step) : 0
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let which = p.items > 1 ? "[\(p.item + 1)/\(p.items)] " : ""
        let line = "\r\(which)\(p.stage.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)) \(bar) \(p.step)/\(p.total)"
            + (p.step > 0 && p.step < p.total ? String(format: "  ETA %.0fs", eta) : "") + "   "
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Ends the current line (before other output).
    func finish() {
        if enabled, pending { FileHandle.standardError.write(Data("\n".utf8)) }
        pending = false
    }
}
