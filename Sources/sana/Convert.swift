// `sana convert DIFFUSERS_DIR --output BUNDLE [--weights f32|f16|bf16|int8|int4] [--no-prefix-cache]` (docs/FORMAT.md).
import ArgumentParser
import Foundation
import SanaFormat
import SanaKit

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert a diffusers Sana pipeline directory into one compressed, quantized bundle.")

    @Argument(help: "The diffusers pipeline directory (model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/).")
    var directory: String

    @Option(name: .shortAndLong, help: "The bundle to write.")
    var output: String

    @Option(help: "Storage type of the weights: f32, f16, bf16, int8 or int4.")
    var weights: String = "int8"

    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    @Option(help: "zstd compression level.")
    var zstdLevel: Int32 = 3

    @Option(help: "Integer bundles keep tensors with fewer elements in float.")
    var minElements: Int = 1024

    @Flag(help: "Print the quantization error of every tensor (default: the worst ten).")
    var allErrors = false

    @Flag(help: "Do not store the complex human instruction's prefix cache (then `generate` computes it on first use).")
    var noPrefixCache = false

    func validate() throws {
        guard StorageType(name: weights) != nil else {
            throw ValidationError("--weights must be one of \(StorageType.allCases.map(\.name).joined(separator: ", "))")
        }
    }

    func run() throws {
        guard let type = StorageType(name: weights) else { throw ValidationError("bad --weights") }
        var options = ConversionOptions(weights: type)
        if let threads { options.threads = max(1, threads) }
        options.zstdLevel = zstdLevel
        options.minElements = minElements
        if !noPrefixCache { options.derived = [Self.timed(Gemma2PrefixCache.derivedComponent())] }
        let progress = Progress(enabled: isatty(2) != 0)
        let report = try Converter.convert(pipelinePath: directory, output: output, options: options) { done, total, name in
            progress.update(done, total, name)
        }
        progress.finish()

        let ratio = report.bundleBytes > 0 ? Double(report.sourceBytes) / Double(report.bundleBytes) : 0
        print("wrote \(output): \(report.tensors.count) tensors, \(formatBytes(report.bundleBytes)) "
            + "(source \(formatBytes(report.sourceBytes)), ratio \(String(format: "%.2f", ratio))x), weights \(type.name)")
        var byType: [StorageType: (count: Int, bytes: Int)] = [:]
        for t in report.tensors { byType[t.type, default: (0, 0)].count += 1; byType[t.type, default: (0, 0)].bytes += t.storedBytes }
        for t in StorageType.allCases { if let v = byType[t] { print("  \(t.name.padding(5)) \(String(v.count).leftPad(6)) tensors  \(formatBytes(v.bytes).leftPad(10)) stored") } }
        let lossy = report.tensors.filter { $0.relRMS > 0 }.sorted { $0.relRMS > $1.relRMS }
        if !lossy.isEmpty {
            let shown = allErrors ? lossy : Array(lossy.prefix(10))
            print("quantization error (relative RMS), \(allErrors ? "all \(lossy.count)" : "worst \(shown.count) of \(lossy.count)") lossy tensors:")
            for t in shown {
                print("  \(String(format: "%.3e", t.relRMS))  \(t.type.name.padding(5)) \(t.component)/\(t.name)")
            }
        }
        print("peak memory: \(formatBytes(peakResidentBytes()))")
    }

    /// `d`, printing what computing it cost: wall and CPU time, stored size, and the peak memory before and after.
    static func timed(_ d: DerivedComponent) -> DerivedComponent {
        DerivedComponent(name: d.name, after: d.after) { bundle, out in
            let t0 = Date(), c0 = processCPUSeconds(), p0 = peakResidentBytes()
            let record = try d.compute(bundle, out)
            print("\(d.name): \(out.records.count) tensors, \(formatBytes(out.storedBytes)) stored, computed in "
                + String(format: "%.1f s (CPU %.1f s)", Date().timeIntervalSince(t0), processCPUSeconds() - c0)
                + "; peak memory \(formatBytes(p0)) before, \(formatBytes(peakResidentBytes())) after")
            return record
        }
    }
}

/// A one-line progress display on stderr, only when stderr is a terminal.
final class Progress {
    let enabled: Bool
    var lastPercent = -1

    init(enabled: Bool) { self.enabled = enabled }

    func update(_ done: Int, _ total: Int, _ name: String) {
        guard enabled, total > 0 else { return }
        let percent = done * 100 / total
        guard percent != lastPercent else { return }
        lastPercent = percent
        let shown = name.count > 60 ? "…" + name.suffix(59) : name
        FileHandle.standardError.write(Data("\r\u{1B}[K\(percent)% \(shown)".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// The process's peak resident set size so far.
func peakResidentBytes() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return Int(u.ru_maxrss) * 1024  // kilobytes on Linux
}

func formatBytes(_ n: Int) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"]
    var v = Double(n), i = 0
    while v >= 1000, i < units.count - 1 { v /= 1000; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[i])
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
