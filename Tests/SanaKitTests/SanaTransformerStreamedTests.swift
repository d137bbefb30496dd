import CSanaKernels
import Foundation
import SanaFormat
@testable import SanaKit
import XCTest

// The DiT block computed slice by slice (SanaTransformerBlock+Streamed.swift) against the whole-tensor composition of
// the same modules (SanaAttention / GLUMBConv callAsFunction), on fixture blocks (Tests/Fixtures/dit, see
// SanaTransformerTests) with slices and feed-forward bands small enough that slices straddle the two batches and
// every band boundary is exercised. Differences are float rounding of the linear attention's sums (measured ≤ 1e-6).
final class SanaTransformerStreamedTests: XCTestCase {
    /// The block forward as whole-tensor ops: the reference formulation, written out.
    func wholeTensor(_ blk: SanaTransformerBlock, _ x: Tensor, _ mod: [[Float]], _ caption: Tensor, _ bias: Tensor?,
                     _ h: Int, _ w: Int) -> Tensor {
        let (b, c) = (x.shape[0], x.lastDim)
        var t = x.layerNorm(weight: nil, bias: nil, eps: blk.normEps).modulated(shift: mod[0], scale: mod[1])
        var out = x.addingGated(blk.attn1(t), gate: mod[2])
        out = out + blk.attn2(out, context: caption, keyBias: bias)
        t = out.layerNorm(weight: blk.norm2Weight, bias: blk.norm2Bias, eps: blk.normEps).modulated(shift: mod[3], scale: mod[4])
        return out.addingGated(blk.ff(t.reshaped([b, h, w, c])).reshaped([b, h * w, c]), gate: mod[5])
    }

    func noise(_ n: Int, _ seed: Int, _ amplitude: Float = 1) -> [Float] {
        (0 ..< n).map { amplitude * Float(sin(Double($0 &* 7919 &+ seed * 104_729) * 0.37)) }
    }

    func testSlicesAndBandsMatchWholeTensor() throws {
        for name in ["sana10", "sana15_qknorm"] {
            let c = try SanaTransformerTests.load(name)
            let blk = try c.model.loadBlock(0)
            let ch = c.model.config.innerDim, (h, w) = (7, 6), b = 2, l = 9
            let x = Tensor(shape: [b, h * w, ch], data: noise(b * h * w * ch, 1))
            let mod = (0 ..< 6).map { noise(b * ch, 10 + $0, 0.3) }
            let caption = Tensor(shape: [b, l, ch], data: noise(b * l * ch, 3))
            // Caption masks: 4 and 2 kept keys; 4 kept and every key of batch 1 masked. A fully masked row is
            // ill-conditioned in the reference itself (scores + −10000 keep ~3 significant digits, so a last-bit
            // difference of a score moves its weight by ~1e−3): it gets a looser bound.
            let masks: [(kept: [Int], tolerance: Float)] = [([4, 2], 1e-5), ([4, 0], 1e-4)]
            for (kept, tolerance) in masks {
                let bias = Tensor(shape: [b, l], data: (0 ..< b * l).map { $0 % l < kept[$0 / l] ? 0 : -10000 })
                let expected = wholeTensor(blk, x, mod, caption, bias, h, w)
                for slice in [512, 13, 5] {  // one slice; slices across batches and 2-row bands; 1-row bands
                    let got = blk.streamedForward(x, modulation: mod, caption: caption, captionBias: bias, height: h,
                                                  width: w, sliceRows: slice)
                    let e = relativeMaxError(got, expected)
                    print("\(name) kept \(kept) slice \(slice): relative max error \(e)")
                    XCTAssertLessThan(e, tolerance, "\(name) kept \(kept) slice \(slice)")
                }
            }
        }
    }
}

/// Ops/FastMath.swift against the same functions in double precision (the float libm formulas are themselves off by
/// up to ~2e−4 relative where 1 + tanh(u) cancels).
final class FastMathTests: XCTestCase {
    func worstRelativeError(_ f: (UnsafeMutablePointer<Float>, Int) -> Void, _ reference: (Double) -> Double) -> Float {
        var xs = (0 ... 4000).map { Float($0 - 2000) * 0.05 } + [-1000, -104, -88, -87, 87, 88, 89, 1000, 0, -0, 1e-20, -1e-20]
        let expected = xs.map { Float(reference(Double($0))) }
        xs.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
        var worst: Float = 0
        for (a, e) in zip(xs, expected) {
            XCTAssertTrue(a.isFinite)
            worst = max(worst, abs(a - e) / max(abs(e), 1e-9))  // far tails (|e| < 1e−9): absolute
        }
        return worst
    }

    /// The DiT's SiLU (sana_dit_silu, C; it replaced a Swift loop on the same polynomial e^x).
    func testSiLU() {
        let e = worstRelativeError({ sana_dit_silu($0, Int64($1)) }) { $0 / (1 + exp(-$0)) }
        print("sana_dit_silu: worst relative error \(e)")
        XCTAssertLessThan(e, 1e-6)
    }

    func testGELUTanh() {
        let e = worstRelativeError(fastGELUTanhInPlace) { 0.5 * $0 * (1 + tanh(0.7978845608028654 * ($0 + 0.044715 * $0 * $0 * $0))) }
        print("fastGELUTanh: worst relative error \(e)")
        XCTAssertLessThan(e, 5e-6)  // measured 2.0e−6: float rounding of u = c·(x + 0.044715·x³), as in the reference
    }

    /// Soft-capping feeds a softmax, so what matters is the absolute error of the logit.
    func testSoftcap() {
        var xs = (0 ... 4000).map { Float($0 - 2000) * 0.1 }
        let expected = xs.map { 50 * tanhf($0 / 50) }
        xs.withUnsafeMutableBufferPointer { fastSoftcapInPlace($0.baseAddress!, $0.count, cap: 50) }
        let worst = zip(xs, expected).map { abs($0 - $1) }.max() ?? 0
        print("fastSoftcap: worst absolute error \(worst)")
        XCTAssertLessThan(worst, 2e-5)
    }
}
