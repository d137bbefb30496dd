// Vectorizable activations for the hot loops of the Gemma-2 MLP and attention (the DiT's SiLU is C: sana_dit_silu,
// fused into the integer GEMM's store where it can be). The C activations
// (sana_activate) call libm's expf/tanhf per element; these evaluate e^t with a polynomial instead, written without
// calls or trapping conversions so the compiler vectorizes the loops. Accuracy: within a few ulp of expf
// (FastMathTests measures gelu-tanh and the soft-cap, and sana_dit_silu, against double-precision formulas).

/// e^t for t already clamped to [−87.3, 88.3] (so the result is a finite, normal float): range reduction
/// t = k·ln2 + r and Cephes expf's degree-6 polynomial in r, 2^k assembled from exponent bits.
@inline(__always) func polyExp(_ t: Float) -> Float {
    // k = round(t / ln2) with the 1.5·2^23 trick: m's low mantissa bits hold k + 0x400000.
    let m = t * 1.442_695_04 + 12_582_912
    let k = m - 12_582_912
    var r = t - k * 0.693_359_375  // ln2 split in two (Cephes C1, C2)
    r += k * 2.121_944_4e-4
    var p: Float = 1.987_569_1e-4
    p = p * r + 1.398_199_9e-3
    p = p * r + 8.333_452e-3
    p = p * r + 4.166_579_6e-2
    p = p * r + 1.666_666_5e-1
    p = p * r + 0.5
    p = p * (r * r) + r + 1
    return p * Float(bitPattern: (m.bitPattern &- 0x4B40_0000 &+ 127) &<< 23)  // · 2^k
}

/// e^t clamped to the normal range: e^−87.3 ≈ 1e−38 and e^88.3 ≈ 2e38 stand in for anything beyond, which changes
/// no result of the formulas below (they divide by 1 + e^t).
@inline(__always) func clampedExp(_ t: Float) -> Float {
    polyExp(Swift.min(Swift.max(t, -87.3), 88.3))
}

/// GELU, tanh approximation (gelu_pytorch_tanh): 0.5·x·(1 + tanh(u)), u = √(2/π)·(x + 0.044715·x³), written as
/// x / (1 + e^−2u) (the same function: 0.5·(1 + tanh u) = 1 / (1 + e^−2u)), in place.
func fastGELUTanhInPlace(_ x: UnsafeMutablePointer<Float>, _ count: Int) {
    for i in 0 ..< count {
        let v = x[i]
        let u = 0.797_884_560_802_865_4 * (v + 0.044715 * v * v * v)
        x[i] = v / (1 + clampedExp(-2 * u))
    }
}

/// cap·tanh(x / cap) = cap − 2·cap / (1 + e^(2x/cap)) (attention logit soft-capping), in place.
func fastSoftcapInPlace(_ x: UnsafeMutablePointer<Float>, _ count: Int, cap: Float) {
    let twoOverCap = 2 / cap
    for i in 0 ..< count {
        x[i] = cap - 2 * cap / (1 + clampedExp(x[i] * twoOverCap))
    }
}
