// swift-tools-version:6.0
// SanaEdge: Sana text-to-image on a CPU in bounded memory.
// Layout and contracts: docs/ (FORMAT.md, NUMERICS.md, BENCHMARKS.md) and ../shared/DESIGN.md.
import PackageDescription

// The C kernels are always compiled with optimization: the scalar reference kernels are test oracles that run on
// real shapes, and -O0 would make the test suite crawl. SIMD paths use per-function target attributes and are
// chosen at run time (one dispatch point), so no -march flag is needed and one binary runs on any x86-64.
let kernelCFlags: [CSetting] = [.unsafeFlags(["-O3", "-fno-math-errno", "-Wall", "-Wno-unused-function"])]

let package = Package(
    name: "SanaEdge",
    products: [
        .executable(name: "sana", targets: ["sana"]),
        .library(name: "SanaKit", targets: ["SanaKit"]),
        .library(name: "SanaFormat", targets: ["SanaFormat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // System libraries (Debian: libzstd-dev, libpng-dev, libopenblas-dev; tools/setup.sh installs them).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),

        // Storage-format traits table, scalar reference kernels, AVX2 / AVX-512 / NEON kernels, thread pool.
        .target(name: "CSanaKernels", cSettings: kernelCFlags, linkerSettings: [.linkedLibrary("pthread"), .linkedLibrary("m")]),

        // libpng behind a C shim that keeps libpng's longjmp error handling out of Swift frames.
        .target(name: "CSanaPNG", dependencies: ["CPNG"], linkerSettings: [.linkedLibrary("png16")]),

        // safetensors reader, bundle reader/writer, quantizer, .npy reader/writer.
        .target(name: "SanaFormat", dependencies: ["CZstd", "CSanaKernels"]),

        // Tensors and ops, models, tokenizer, schedulers, pipeline.
        .target(name: "SanaKit", dependencies: ["SanaFormat", "CSanaKernels", "COpenBLAS", "CPNG", "CSanaPNG"]),

        .executableTarget(name: "sana", dependencies: [
            "SanaKit", "SanaFormat", "CSanaKernels",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "CSanaKernelsTests", dependencies: ["CSanaKernels", "SanaKit"]),
        .testTarget(name: "SanaFormatTests", dependencies: ["SanaFormat", "CSanaKernels"]),
        .testTarget(name: "SanaKitTests", dependencies: ["SanaKit", "SanaFormat", "CSanaPNG"]),
        .testTarget(name: "sanaTests", dependencies: ["sana", "SanaFormat"]),
    ]
)
