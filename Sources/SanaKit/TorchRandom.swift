// PyTorch-compatible CPU random numbers: `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(S),
// dtype=torch.float32)` bit for bit, so a seed gives the same initial latents as diffusers.
// Follows ATen: core/MT19937RNGEngine.h (mt19937), CPUGeneratorImpl.cpp (random / random64, normal cache),
// core/TransformationHelper.h (uniform_real), core/DistributionsHelper.h (normal_distribution<double>),
// native/cpu/DistributionTemplates.h (normal_kernel, normal_fill, NormalFill16) and native/cpu/avx_mathfun.h
// (log256_ps, sincos256_ps). Measured agreement: docs/NUMERICS.md, "Schedulers and noise".
import Foundation

/// Which of torch's normal kernels to reproduce. torch compiles its CPU kernels once per capability and picks one
/// at start-up; the float32 Box–Muller of the two families differs in the last bits.
public enum TorchNormalKernel: String, Sendable, CaseIterable {
    /// torch's AVX2 build (also what it runs on AVX-512 CPUs): the Cephes float polynomials of avx_mathfun.h,
    /// compiled with fused multiply-adds.
    case avx2
    /// torch's DEFAULT build (ARM64, x86-64 without AVX2): libm logf / cosf / sinf per element.
    case generic

    /// The kernel torch itself would use on this architecture.
    public static var host: TorchNormalKernel {
        #if arch(x86_64)
            return .avx2
        #else
            return .generic
        #endif
    }
}

/// torch's CPU generator (`at::CPUGeneratorImpl`): an mt19937 engine plus the cached second normal sample of the
/// double-precision Box–Muller.
public struct TorchGenerator: Sendable {
    private static let n = 624, m = 397
    private var state = [UInt32](repeating: 0, count: 624)
    private var next = 0
    private var left = 1
    /// Second output of the last double Box–Muller pair, returned by the next scalar normal draw.
    private var cachedNormal: Double?

    /// `torch.Generator("cpu").manual_seed(seed)`: only the low 32 bits seed the engine (init_with_uint32).
    public init(seed: UInt64) {
        state[0] = UInt32(truncatingIfNeeded: seed)
        for j in 1 ..< Self.n {
            state[j] = 1_812_433_253 &* (state[j - 1] ^ (state[j - 1] >> 30)) &+ UInt32(j)
        }
    }

    /// One tempered 32-bit output (`CPUGeneratorImpl::random`).
    public mutating func random() -> UInt32 {
        left -= 1
        if left == 0 { twist() }
        var y = state[next]
        next += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// Two outputs, the first in the high half (`random64`, make64BitsFrom32Bits(hi, lo)).
    public mutating func random64() -> UInt64 {
        let hi = UInt64(random()), lo = UInt64(random())
        return hi << 32 | lo
    }

    private mutating func twist() {
        left = Self.n
        next = 0
        func mixTwist(_ u: UInt32, _ v: UInt32) -> UInt32 {
            let mixed = (u & 0x8000_0000) | (v & 0x7FFF_FFFF)
            return (mixed >> 1) ^ (v & 1 != 0 ? 0x9908_B0DF : 0)
        }
        for j in 0 ..< Self.n {
            state[j] = state[(j + Self.m) % Self.n] ^ mixTwist(state[j], state[(j + 1) % Self.n])
        }
    }

    /// uniform_real_distribution<float>(0, 1): 24 random bits scaled by 2⁻²⁴, in [0, 1).
    mutating func uniformFloat() -> Float { Float(random() & 0xFF_FFFF) * (1.0 / 16_777_216.0) }

    /// uniform_real_distribution<double>(0, 1): 53 random bits of random64 scaled by 2⁻⁵³.
    mutating func uniformDouble() -> Double { Double(random64() & ((1 << 53) - 1)) * (1.0 / 9_007_199_254_740_992.0) }

    /// normal_distribution<double>(0, 1): Box–Muller on two doubles, the sine half cached for the next call.
    mutating func normalDouble() -> Double {
        if let cached = cachedNormal {
            cachedNormal = nil
            return cached
        }
        let u1 = uniformDouble(), u2 = uniformDouble()
        let r = (-2.0 * log1p(-u2)).squareRoot()
        let theta = 2.0 * Double.pi * u1
        cachedNormal = r * sin(theta)
        return r * cos(theta)
    }

    /// `torch.randn(count, generator=self, dtype=torch.float32)` (contiguous; mean 0, std 1).
    public mutating func randn(count: Int, kernel: TorchNormalKernel = .host) -> [Float] {
        precondition(count >= 0, "randn: negative count")
        // Fewer than 16 elements: torch's serial kernel, one double-precision normal per element.
        guard count >= 16 else { return (0 ..< count).map { _ in Float(normalDouble()) } }
        // normal_fill: all uniforms first, then Box–Muller over each block of 16 in place, pairing j with j + 8.
        var data = (0 ..< count).map { _ in uniformFloat() }
        data.withUnsafeMutableBufferPointer { p in
            var i = 0
            while i + 16 <= count {
                Self.boxMuller16(p.baseAddress! + i, kernel)
                i += 16
            }
        }
        // A partial last block is redrawn: 16 fresh uniforms overwrite the last 16 values (overlapping the
        // already transformed ones) and are transformed again.
        if count % 16 != 0 {
            for i in count - 16 ..< count { data[i] = uniformFloat() }
            data.withUnsafeMutableBufferPointer { p in Self.boxMuller16(p.baseAddress! + count - 16, kernel) }
        }
        return data
    }

    /// `torch.randn(shape, generator=self, dtype=torch.float32)` as a tensor of that shape.
    public mutating func randn(shape: [Int], kernel: TorchNormalKernel = .host) -> Tensor {
        Tensor(shape: shape, data: randn(count: shape.reduce(1, *), kernel: kernel))
    }

    /// NormalFill16 on 16 uniforms in place: data[j] = r·cos θ, data[j + 8] = r·sin θ for j < 8, where
    /// r = sqrt(−2 log(1 − data[j])) and θ = 2π·data[j + 8]. Mean 0 and std 1, so the final fma(n, std, mean) is n.
    private static func boxMuller16(_ data: UnsafeMutablePointer<Float>, _ kernel: TorchNormalKernel) {
        for j in 0 ..< 8 {
            let u1 = 1 - data[j]  // [0, 1) → (0, 1] for the logarithm
            let u2 = data[j + 8]
            switch kernel {
            case .avx2:
                // _mm256_set1_ps(2.0f * pi<double>): 2π rounded to float, then a float product.
                let radius = (-2 * CephesFloat.log(u1)).squareRoot()
                let (s, c) = CephesFloat.sincos(Float(2.0 * Double.pi) * u2)
                data[j] = radius * c
                data[j + 8] = radius * s
            case .generic:
                // 2.0f * pi<double> * u2 is a double product rounded once to float.
                let radius = (-2 * Foundation.log(u1)).squareRoot()
                let theta = Float(2.0 * Double.pi * Double(u2))
                data[j] = radius * Foundation.cos(theta)
                data[j + 8] = radius * Foundation.sin(theta)
            }
        }
    }
}

/// One lane of avx_mathfun.h's log256_ps and sincos256_ps (Cephes float polynomials), reproducing the fused
/// multiply-adds that torch's AVX2 build contracts (each multiply feeding an add becomes one fma; checked bit for
/// bit against torch on millions of inputs, see docs/NUMERICS.md).
enum CephesFloat {
    /// log(x) for x > 0 (the Box–Muller only passes x in (0, 1]).
    static func log(_ x0: Float) -> Float {
        // Split x = m·2^e with m in [0.5, 1): the float's exponent field, its mantissa with the exponent of 0.5.
        var x = max(x0, Float(bitPattern: 0x0080_0000))  // flush denormals to the smallest normal
        let bits = x.bitPattern
        var e = Float(Int32(bitPattern: bits >> 23) - 0x7F) + 1
        x = Float(bitPattern: (bits & ~0x7F80_0000) | Float(0.5).bitPattern)
        // m < √½: use 2m − 1 and e − 1, so the polynomial argument stays in [√½ − 1, √2 − 1).
        let small = x < 0.707106781186547524
        let tmp: Float = small ? x : 0
        x = x - 1
        if small { e -= 1 }
        x = x + tmp
        let z = x * x
        var y: Float = 7.0376836292E-2
        y = y.fma(x, -1.1514610310E-1)
        y = y.fma(x, 1.1676998740E-1)
        y = y.fma(x, -1.2420140846E-1)
        y = y.fma(x, 1.4249322787E-1)
        y = y.fma(x, -1.6668057665E-1)
        y = y.fma(x, 2.0000714765E-1)
        y = y.fma(x, -2.4999993993E-1)
        y = y.fma(x, 3.3333331174E-1)
        y = y * x
        y = y.fma(z, e * -2.12194440e-4)
        y = z.fma(-0.5, y)
        x = x + y
        return e.fma(0.693359375, x)
    }

    /// (sin θ, cos θ) for |θ| < 8192.
    static func sincos(_ theta: Float) -> (sin: Float, cos: Float) {
        var signSin = theta.bitPattern & 0x8000_0000
        var x = abs(theta)
        // Octant j = (⌊x·4/π⌋ + 1) & ~1, so that x − j·π/4 lies in [−π/4, π/4].
        var j = Int32(x * 1.27323954473516)
        j = (j + 1) & ~1
        let yq = Float(j)
        signSin ^= UInt32(bitPattern: j & 4) << 29
        let sinePolyForSine = (j & 2) == 0
        let signCos = UInt32(bitPattern: ~(j - 2) & 4) << 29
        // x − j·π/4 in three pieces of π/4 ("extended precision modular arithmetic").
        x = yq.fma(-0.78515625, x)
        x = yq.fma(-2.4187564849853515625e-4, x)
        x = yq.fma(-3.77489497744594108e-8, x)
        let z = x * x
        var yc: Float = Float(2.443315711809948E-005).fma(z, -1.388731625493765E-003)
        yc = yc.fma(z, 4.166664568298827E-002)
        yc = yc * z
        yc = yc.fma(z, -(z * 0.5))
        yc = yc + 1
        var ys: Float = Float(-1.9515295891E-4).fma(z, 8.3321608736E-3)
        ys = ys.fma(z, -1.6666654611E-1)
        ys = ys * z
        ys = ys.fma(x, x)
        let s = sinePolyForSine ? ys : yc, c = sinePolyForSine ? yc : ys
        return (Float(bitPattern: s.bitPattern ^ signSin), Float(bitPattern: c.bitPattern ^ signCos))
    }
}

extension Float {
    /// self·b + c with one rounding.
    @inline(__always) fileprivate func fma(_ b: Float, _ c: Float) -> Float { c.addingProduct(self, b) }
}
