import ArgumentParser
import CSanaKernels
import SanaFormat
import SanaKit

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
