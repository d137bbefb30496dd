import ArgumentParser
import CSanaKernels
import SanaFormat
import SanaKit

// No allocator tuning (mallopt) at start-up, on purpose: fixing glibc's mmap/trim thresholds at 1 MiB lowered the
// peak of a budgeted 1024² run by 62 MiB (881 → 819) but made every large buffer a fresh mmap the kernel zeroes:
// +17 % process CPU (system time 6.9 → 15.7 s) and +3 % per DiT step. Measurements: docs/BENCHMARKS.md "Linear DiT".
@main
struct Sana: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sana",
        abstract: "Sana text-to-image on a CPU: convert diffusers checkpoints to quantized bundles and generate images.",
        subcommands: [Convert.self, Inspect.self, Generate.self, Bench.self, Info.self]
    )
}

/// Prints the kernel family chosen for this CPU and the storage types this build knows.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the kernel family and storage types of this build.")

    func run() throws {
        print("kernels: \(String(cString: sana_kernel_family()))")
        print("storage types: \(StorageType.allCases.map(\.name).joined(separator: ", "))")
    }
}
