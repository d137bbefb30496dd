import CSanaKernels
import SanaFormat
import SanaKit
import XCTest

/// The C hot operations (through their Swift entry points) against plain scalar loops, on odd sizes, including
/// sizes large enough to run on the thread pool.
final class OpsTests: XCTestCase {
    func gaussian(_ n: Int, _ seed: UInt64) -> [Float] { KernelTests.gaussian(n, seed: seed, outliers: false) }

    /// The pool hands out items dynamically (pool.c): every item must still run exactly once, for any count of
    /// items and threads, including fewer items than threads and counts that do not divide evenly.
    func testThreadPoolVisitsEveryItemOnce() {
        defer { sana_set_threads(0) }
        for threads: Int32 in [1, 2, 3, 8] {
            sana_set_threads(threads)
            for items in [1, 2, 3, 7, 15, 16, 17, 64, 1000, 4097] {
                for _ in 0 ..< 20 {  // repeated: the split between threads differs from call to call
                    var visits = [Int32](repeating: 0, count: items)
                    sana_pool_visit_for_testing(Int64(items), &visits)
                    XCTAssertEqual(visits, [Int32](repeating: 1, count: items), "items \(items), threads \(threads)")
                }
            }
        }
    }

    func testNormsMatchScalarLoops() {
        for (rows, c) in [(3, 7), (40, 1152), (300, 37)] {
            let x = Tensor(shape: [rows, c], data: gaussian(rows * c, 1).map { $0 * 3 + 0.5 })
            let w = gaussian(c, 2), b = gaussian(c, 3)
            var rms = [Float](), ln = [Float]()
            for r in 0 ..< rows {
                let row = x.data[r * c ..< (r + 1) * c].map(Double.init)
                let ms = row.reduce(0) { $0 + $1 * $1 } / Double(c)
                rms += row.enumerated().map { Float($1 / (ms + 1e-6).squareRoot() * Double(w[$0])) }
                let mean = row.reduce(0, +) / Double(c)
                let v = row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(c)
                ln += row.enumerated().map { Float(($1 - mean) / (v + 1e-5).squareRoot() * Double(w[$0]) + Double(b[$0])) }
            }
            XCTAssertLessThan(relErr(x.rmsNorm(weight: w, eps: 1e-6).data, rms), 1e-5)
            XCTAssertLessThan(relErr(x.layerNorm(weight: w, bias: b, eps: 1e-5).data, ln), 1e-5)
            XCTAssertLessThan(relErr(x.layerNorm(weight: nil, bias: nil, eps: 1e-5).data,
                                     x.layerNorm(weight: [Float](repeating: 1, count: c), bias: nil, eps: 1e-5).data), 1e-7)
        }
    }

    /// SiLU's vectorizable exp against Foundation's (double precision, rounded): within 2 ulp on [−87, 88].
    func testVectorizableExpWithinTwoUlp() {
        var worst: Float = 0
        for i in 0 ..< 174_900 {  // x < 88 (the clamp)
            let x = -87 + Float(i) * 0.001
            let e = sana_exp_vec_for_testing(x), ref = Float(Foundation.exp(Double(x)))
            worst = max(worst, abs(e - ref) / ref.ulp)
        }
        print("exp_vec worst error: \(worst) ulp")
        XCTAssertLessThanOrEqual(worst, 2)
        XCTAssertEqual(sana_exp_vec_for_testing(-200), sana_exp_vec_for_testing(-87))  // clamped, finite
    }

    func testActivationsAndSoftmax() {
        let count = 4096 * 9 + 13  // pool chunks plus a tail
        let x = Tensor(shape: [count], data: gaussian(count, 4).map { $0 * 4 })
        for act in [Activation.silu, .relu, .gelu, .geluTanh] {
            let y = act.apply(x)
            XCTAssertLessThan(relErr(y.data, x.data.map { act($0) }), 1e-6, "\(act)")
        }
        var s = gaussian(5 * 77, 5)
        let ref = (0 ..< 5).flatMap { r -> [Float] in
            let row = s[r * 77 ..< (r + 1) * 77].map(Double.init), mx = row.max() ?? 0
            let e = row.map { Foundation.exp($0 - mx) }, sum = e.reduce(0, +)
            return e.map { Float($0 / sum) }
        }
        sana_softmax(&s, 5, 77)
        XCTAssertLessThan(relErr(s, ref), 1e-6)
    }

    /// The depthwise kernel (register blocks of 32 channels, a second pass for kernels over 11×11) rounds exactly
    /// like the plain loop: bias, then each in-frame tap's product added in (ky, kx) order — bit for bit.
    func testDepthwiseIsBitIdenticalToTheTapOrderedLoop() {
        for (c, k, withBias) in [(6, 3, true), (40, 3, false), (70, 5, true), (33, 13, true)] {
            let (b, h, w) = (2, 6, 5)
            let x = Tensor(shape: [b, h, w, c], data: gaussian(b * h * w * c, 11))
            let dw = gaussian(c * k * k, 12), bias = withBias ? gaussian(c, 13) : nil
            var ref = [Float](repeating: 0, count: x.count)
            for n in 0 ..< b { for y in 0 ..< h { for xx in 0 ..< w { for ch in 0 ..< c {
                var acc = bias?[ch] ?? 0
                for ky in 0 ..< k { for kx in 0 ..< k {
                    let iy = y + ky - k / 2, ix = xx + kx - k / 2
                    if iy >= 0 && iy < h && ix >= 0 && ix < w {
                        let p = x.data[((n * h + iy) * w + ix) * c + ch] * dw[ch * k * k + ky * k + kx]
                        acc += p
                    }
                } }
                ref[((n * h + y) * w + xx) * c + ch] = acc
            } } } }
            let got = x.depthwiseConv2d(weight: dw, bias: bias, kernel: k)
            XCTAssertEqual(got.data.map(\.bitPattern), ref.map(\.bitPattern), "c \(c) k \(k)")
        }
    }

    func testConvolutionsMatchScalarLoops() throws {
        let (b, h, w, c, k) = (2, 5, 7, 6, 3)
        let x = Tensor(shape: [b, h, w, c], data: gaussian(b * h * w * c, 6))
        let dw = gaussian(c * k * k, 7), dwb = gaussian(c, 8)
        var ref = [Float](repeating: 0, count: x.count)
        for n in 0 ..< b { for y in 0 ..< h { for xx in 0 ..< w { for ch in 0 ..< c {
            var acc = dwb[ch]
            for ky in 0 ..< k { for kx in 0 ..< k {
                let iy = y + ky - 1, ix = xx + kx - 1
                if iy >= 0 && iy < h && ix >= 0 && ix < w { acc += x.data[((n * h + iy) * w + ix) * c + ch] * dw[ch * 9 + ky * 3 + kx] }
            } }
            ref[((n * h + y) * w + xx) * c + ch] = acc
        } } } }
        XCTAssertLessThan(relErr(x.depthwiseConv2d(weight: dw, bias: dwb, kernel: k).data, ref), 1e-6)

        // 3×3 conv through im2col + Linear (f32 → OpenBLAS) against a direct loop.
        let cout = 4, wconv = gaussian(cout * c * k * k, 9), bconv = gaussian(cout, 10)
        let conv = Linear(weight: StoredTensor.pack(name: "conv", shape: [cout, c, k, k], values: wconv, as: .f32), bias: bconv)
        let y = x.conv2d(conv, kernel: k, padding: 1)
        XCTAssertEqual(y.shape, [b, h, w, cout])
        var cref = [Float](repeating: 0, count: b * h * w * cout)
        for n in 0 ..< b { for yy in 0 ..< h { for xx in 0 ..< w { for o in 0 ..< cout {
            var acc = bconv[o]
            for ci in 0 ..< c { for ky in 0 ..< k { for kx in 0 ..< k {
                let iy = yy + ky - 1, ix = xx + kx - 1
                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                    acc += x.data[((n * h + iy) * w + ix) * c + ci] * wconv[((o * c + ci) * k + ky) * k + kx]
                }
            } } }
            cref[((n * h + yy) * w + xx) * cout + o] = acc
        } } } }
        XCTAssertLessThan(relErr(y.data, cref), 1e-5)
    }

    func relErr(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        let md = zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
        return md / max(b.reduce(0) { max($0, abs($1)) }, 1e-30)
    }
}
