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
        let m = x.rows, n = outFeatures, k = inFeatures
        var out = [Float](repeating: 0, count: m * n)
        let type = weight.type.rawValue
        let useKernel = runsOnKernels
        x.data.withUnsafeBufferPointer { xp in
            weight.bytes.withUnsafeBytes { wp in
                out.withUnsafeMutableBufferPointer { yp in
                    if useKernel {
                        bias.withUnsafeBufferPointerOrNil { bp in
                            sana_linear(xp.baseAddress, Int64(m), Int64(k), type, wp.baseAddress, Int64(n), bp, yp.baseAddress)
                        }
                        return
                    }
                    if weight.type == .f32 {
                        // Y[m, n] = X[m, k] · Wᵀ, W [n, k].
                        wp.withMemoryRebound(to: Float.self) { wf in
                            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                                        xp.baseAddress, Int32(k), wf.baseAddress, Int32(k), 0, yp.baseAddress, Int32(n))
                        }
                    } else {
                        // Weight rows [j0, j0 + rows) unpacked to f32 [rows, k]; result columns [j0, j0 + rows) of Y.
                        let chunk = max(1, min(n, (1 << 22) / max(k, 1)))
                        var w32 = [Float](repeating: 0, count: chunk * k)
                        w32.withUnsafeMutableBufferPointer { wf in
                            for j0 in stride(from: 0, to: n, by: chunk) {
                                let rows = min(chunk, n - j0)
                                sana_matrix_unpack_rows(type, wp.baseAddress, Int64(n), Int64(k), Int64(j0), Int64(rows), wf.baseAddress)
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(rows), Int32(k), 1,
                                            xp.baseAddress, Int32(k), wf.baseAddress, Int32(k), 0, yp.baseAddress.map { $0 + j0 }, Int32(n))
                            }
                        }
                    }
                    if let bias {
                        // Y[i, :] += bias
                        for i in 0 ..< m { for j in 0 ..< n { yp[i * n + j] += bias[j] } }
                    }
                }
            }
        }
        var shape = x.shape
        shape[shape.count - 1] = n
        return Tensor(shape: shape, data: out)
    }
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
