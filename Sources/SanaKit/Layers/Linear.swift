import COpenBLAS
import Foundation
import CSanaKernels
import SanaFormat

/// A linear (or 1×1 / k×k convolution) weight kept in its storage type: W [N, K] (reference shape [N, ...]),
/// with an optional float bias [N]. `apply` computes Y[rows, N] = X[rows, K] · Wᵀ + bias.
public struct Linear: Sendable {
    public let weight: StoredTensor
    public let bias: [Float]?
    public var outFeatures: Int { weight.rows }
    public var inFeatures: Int { weight.cols }

    public init(weight: StoredTensor, bias: [Float]?) {
        self.weight = weight
        self.bias = bias
    }

    /// Loads "<prefix>.weight" (and "<prefix>.bias" when `bias` is true), checking the shape.
    public init(_ source: WeightSource, _ prefix: String, shape: [Int], bias: Bool = true) throws {
        weight = try source.checkedTensor(prefix + ".weight", shape: shape)
        self.bias = bias ? try source.floats(prefix + ".bias", shape: [shape[0]]) : nil
    }

    /// True when products run on the C kernels (sana_linear / sana_conv2d), false when on OpenBLAS sgemm.
    public var runsOnKernels: Bool {
        forceReferenceKernels
            || (!dequantizeWeightsForDebugging && (weight.type.isQuantized || sana_linear_has_kernel(weight.type.rawValue) != 0))
    }

    /// X [..., K] → [..., N].
    /// Routing: int8/int4 → integer SIMD kernels (sana_linear); bf16 → bf16 dot-product kernel where the CPU has
    /// one; f32 → OpenBLAS sgemm; f16 (and bf16 without a kernel) → rows unpacked to f32 in chunks, then sgemm.
    /// SANA_FORCE_REFERENCE=1 sends everything to the scalar reference; SANA_DEQUANTIZE_WEIGHTS=1 (a debugging
    /// switch) unpacks every weight to f32 and uses sgemm, which separates weight rounding from activation rounding.
    public func apply(_ x: Tensor) -> Tensor {
        precondition(x.lastDim == inFeatures, "Linear \(weight.name): input has \(x.lastDim) features, weight wants \(inFeatures)")
        let m = x.rows, n = outFeatures
        // Every element is written by `apply(_:rows:into:)`: no zero fill (a page-touching pass) first.
        let out = [Float](unsafeUninitializedCapacity: m * n) { yp, initialized in
            x.data.withUnsafeBufferPointer { xp in apply(xp.baseAddress!, rows: m, into: yp.baseAddress!) }
            initialized = m * n
        }
        var shape = x.shape
        shape[shape.count - 1] = n
        return Tensor(shape: shape, data: out)
    }

    /// Y [rows, N] = X [rows, K] · Wᵀ + bias, written into y (every element; y need not be initialized).
    public func apply(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>) {
        let n = outFeatures, k = inFeatures
        guard m > 0, n > 0 else { return }
        guard k > 0 else {  // an empty product: bias only
            for i in 0 ..< m { for j in 0 ..< n { y[i * n + j] = bias?[j] ?? 0 } }
            return
        }
        let type = weight.type.rawValue
        weight.bytes.withUnsafeBytes { wp in
            if runsOnKernels {
                bias.withUnsafeBufferPointerOrNil { bp in sana_linear(x, Int64(m), Int64(k), type, wp.baseAddress, Int64(n), bp, y) }
                return
            }
            // Column blocks of Y over our workers, each sgemm on one OpenBLAS thread (Ops/ParallelParts.swift).
            let parts = min(n, max(1, Int(sana_get_threads())))
            let (xb, yb, wb) = (SendablePointer(x), SendablePointer(y), SendablePointer(wp.baseAddress!))
            let (isF32, bias) = (weight.type == .f32, bias)
            forEachPartInParallel(parts) { _, ps in
                // This worker's columns [c0, c1) of Y, from weight rows [c0, c1).
                let c0 = ps.lowerBound * n / parts, c1 = ps.upperBound * n / parts
                defer {
                    // Y[i, c0 ..< c1] += bias[c0 ..< c1]
                    if let bias { for i in 0 ..< m { for j in c0 ..< c1 { yb.value[i * n + j] += bias[j] } } }
                }
                if isF32 {
                    // Y[:, c0 ..< c1] = X[m, k] · W[c0 ..< c1]ᵀ (beta 0: Y is written, not read).
                    let w = wb.value.assumingMemoryBound(to: Float.self) + c0 * k
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(c1 - c0), Int32(k), 1,
                                xb.value, Int32(k), w, Int32(k), 0, yb.value + c0, Int32(n))
                    return
                }
                // Weight rows [j0, j0 + rows) unpacked to f32 [rows, k]; result columns [j0, j0 + rows) of Y.
                let chunk = max(1, min(c1 - c0, (1 << 22) / max(k, 1)))
                var w32 = [Float](repeating: 0, count: chunk * k)
                w32.withUnsafeMutableBufferPointer { wf in
                    for j0 in stride(from: c0, to: c1, by: chunk) {
                        let rows = min(chunk, c1 - j0)
                        sana_matrix_unpack_rows(type, wb.value, Int64(n), Int64(k), Int64(j0), Int64(rows), wf.baseAddress)
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(rows), Int32(k), 1,
                                    xb.value, Int32(k), wf.baseAddress, Int32(k), 0, yb.value + j0, Int32(n))
                    }
                }
            }
        }
    }

    /// silu(X [rows, K] · Wᵀ + bias) into y: on the integer kernels the SiLU is applied as each output tile is stored
    /// (sana_linear_silu, one pass over Y less); otherwise `apply`, then the same SiLU (sana_dit_silu) over y.
    public func applySiLU(_ x: UnsafePointer<Float>, rows m: Int, into y: UnsafeMutablePointer<Float>) {
        guard runsOnKernels, m > 0, outFeatures > 0, inFeatures > 0 else {
            apply(x, rows: m, into: y)
            sana_dit_silu(y, Int64(m * outFeatures))
            return
        }
        weight.bytes.withUnsafeBytes { wp in
            bias.withUnsafeBufferPointerOrNil { bp in
                sana_linear_silu(x, Int64(m), Int64(inFeatures), weight.type.rawValue, wp.baseAddress, Int64(outFeatures), bp, y)
            }
        }
    }

    /// Products of one input X [rows, K] with several layers (same K): y[p] [rows, layers[p].N] = X · W_pᵀ + b_p.
    /// When all weights share one integer storage type and run on the kernels, X is quantized once for all of them
    /// (sana_linear_shared; bit-identical to separate `apply` calls); otherwise each layer runs `apply`.
    public static func apply(_ layers: [Linear], _ x: UnsafePointer<Float>, rows: Int, into y: [UnsafeMutablePointer<Float>]) {
        precondition(layers.count == y.count && layers.allSatisfy { $0.inFeatures == layers[0].inFeatures }, "Linear.apply: shared-input layers")
        guard let first = layers.first, layers.count > 1, rows > 0, first.inFeatures > 0, first.weight.type.isQuantized,
              layers.allSatisfy({ $0.weight.type == first.weight.type && $0.runsOnKernels }) else {
            for (l, yp) in zip(layers, y) { l.apply(x, rows: rows, into: yp) }
            return
        }
        let type = first.weight.type
        // Keep every weight and bias buffer alive and pinned while the C call holds their addresses.
        withPinnedBuffers(layers) { weights, biases in
            let outs = y.map { Optional($0) }
            let n = layers.map { Int64($0.outFeatures) }
            sana_linear_shared(x, Int64(rows), Int64(first.inFeatures), type.rawValue, Int32(layers.count), weights, n, biases, outs)
        }
    }
}

/// Calls body with the base addresses of every layer's packed weight and bias (nil when it has none), valid for the
/// call: nested withUnsafe… scopes, one per layer.
private func withPinnedBuffers(_ layers: ArraySlice<Linear>, _ weights: [UnsafeRawPointer?] = [], _ biases: [UnsafePointer<Float>?] = [],
                               _ body: ([UnsafeRawPointer?], [UnsafePointer<Float>?]) -> Void) {
    guard let l = layers.first else { return body(weights, biases) }
    l.weight.bytes.withUnsafeBytes { wp in
        l.bias.withUnsafeBufferPointerOrNil { bp in
            withPinnedBuffers(layers.dropFirst(), weights + [wp.baseAddress], biases + [bp], body)
        }
    }
}

private func withPinnedBuffers(_ layers: [Linear], _ body: ([UnsafeRawPointer?], [UnsafePointer<Float>?]) -> Void) {
    withPinnedBuffers(layers[...], [], [], body)
}

/// True when the scalar reference is forced (SANA_FORCE_REFERENCE=1 or sana_force_reference): the C side decides.
var forceReferenceKernels: Bool { sana_reference_forced() != 0 }

extension Optional where Wrapped == [Float] {
    func withUnsafeBufferPointerOrNil<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case let .some(a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}

extension WeightSource {
    /// Loads a tensor and checks its reference shape.
    public func checkedTensor(_ name: String, shape: [Int]) throws -> StoredTensor {
        let t = try tensor(name)
        guard t.shape == shape else { throw ModelError.shapeMismatch(tensor: name, expected: shape, actual: t.shape) }
        return t
    }

    /// Loads a tensor as float32 values, checking its shape.
    public func floats(_ name: String, shape: [Int]) throws -> [Float] {
        try checkedTensor(name, shape: shape).floats()
    }

    /// Loads a tensor as a float32 `Tensor` with its reference shape, checking it.
    public func floatTensor(_ name: String, shape: [Int]) throws -> Tensor {
        Tensor(shape: shape, data: try floats(name, shape: shape))
    }
}

/// OpenBLAS entry points for the float path and for benchmarks against the peer (`sana bench gemm`).
public enum OpenBLAS {
    /// Y[m, n] = X[m, k] · Wᵀ with W float32 [n, k] (cblas_sgemm, row-major).
    public static func sgemmXWt(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                                m: Int, n: Int, k: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1, x, Int32(k), w, Int32(k),
                    0, y, Int32(n))
    }

    /// Threads OpenBLAS uses (the kernels' count is sana_set_threads).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

/// SANA_DEQUANTIZE_WEIGHTS=1: every Linear unpacks its weight to f32 and runs sgemm (debugging only).
let dequantizeWeightsForDebugging: Bool = ProcessInfo.processInfo.environment["SANA_DEQUANTIZE_WEIGHTS"] == "1"
