import CSanaKernels
import XCTest

/// The DiT's kernels: products of one input sharing its quantization (sana_linear_shared) and the feed-forward's
/// SiLU and fused depthwise 3×3 + GLU (dit_ops.c), for every kernel family this CPU supports, against separate
/// sana_linear calls and scalar loops.
final class DiTKernelTests: XCTestCase {
    override func tearDown() { sana_select_kernel_family(nil) }

    /// Bit-identical to one sana_linear per weight, for the integer types (shared quantization) and the others
    /// (plain fallback), with and without bias, over several 512-row chunks (m = 1100).
    func testSharedProductsEqualSeparateCalls() {
        let (m, k) = (1100, 200), ns = [48, 33, 16]
        let x = KernelTests.gaussian(m * k, seed: 21, outliers: true)
        for family in KernelTests.families + ["reference"] where sana_select_kernel_family(family) != 0 {
            for type in [SANA_TYPE_Q8, SANA_TYPE_Q4, SANA_TYPE_BF16, SANA_TYPE_F32].map({ Int32($0.rawValue) }) {
                let ws = ns.enumerated().map { i, n in
                    KernelTests.pack(type, KernelTests.gaussian(n * k, seed: UInt64(30 + i), outliers: false).map { $0 * 0.05 }, n, k)
                }
                let biases: [[Float]?] = [KernelTests.gaussian(ns[0], seed: 40, outliers: false), nil, KernelTests.gaussian(ns[2], seed: 41, outliers: false)]
                var separate = ns.map { [Float](repeating: 0, count: m * $0) }
                for p in 0 ..< ns.count {
                    biases[p].withUnsafeBufferPointerOrNil { b in sana_linear(x, Int64(m), Int64(k), type, ws[p], Int64(ns[p]), b, &separate[p]) }
                }
                var shared = ns.map { [Float](repeating: .nan, count: m * $0) }
                withPointers(ws, biases, &shared) { w, b, y in
                    sana_linear_shared(x, Int64(m), Int64(k), type, Int32(ns.count), w, ns.map(Int64.init), b, y)
                }
                XCTAssertEqual(shared, separate, "\(family) type \(type)")
            }
        }
    }

    /// silu(X·Wᵀ + b) with the SiLU fused into the kernels' store equals the product followed by sana_dit_silu, bit
    /// for bit, in every family (fused where the family can, two steps elsewhere), for every storage type.
    func testLinearSiLUEqualsProductThenSiLU() {
        let (m, k, n) = (700, 200, 40)
        let x = KernelTests.gaussian(m * k, seed: 70, outliers: true), bias = KernelTests.gaussian(n, seed: 71, outliers: false)
        for family in KernelTests.families + ["reference"] where sana_select_kernel_family(family) != 0 {
            for type in [SANA_TYPE_Q8, SANA_TYPE_Q4, SANA_TYPE_BF16, SANA_TYPE_F32].map({ Int32($0.rawValue) }) {
                let w = KernelTests.pack(type, KernelTests.gaussian(n * k, seed: 72, outliers: false).map { $0 * 0.05 }, n, k)
                var twoSteps = [Float](repeating: 0, count: m * n), fused = [Float](repeating: .nan, count: m * n)
                sana_linear(x, Int64(m), Int64(k), type, w, Int64(n), bias, &twoSteps)
                sana_dit_silu(&twoSteps, Int64(m * n))
                sana_linear_silu(x, Int64(m), Int64(k), type, w, Int64(n), bias, &fused)
                XCTAssertEqual(fused, twoSteps, "\(family) type \(type)")
            }
        }
    }

    /// AVX-512 (where this CPU has it) and the portable code against the scalar formula:
    /// gated = conv[:hidden] · silu(conv[hidden:]), conv the 3×3 depthwise conv with zero padding left and right and
    /// the halo rows given in t. hidden = 37 leaves a partial 16-channel block.
    func testDepthwiseGLUAndSiLUMatchScalarLoops() {
        let (rows, width, hidden) = (3, 7, 37), wide = 2 * hidden  // width 7: one 4-position group per row (AVX-512)
        let t = KernelTests.gaussian((rows + 2) * width * wide, seed: 50, outliers: false)
        let taps = KernelTests.gaussian(9 * wide, seed: 51, outliers: false), bias = KernelTests.gaussian(wide, seed: 52, outliers: false)
        func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }
        var expected = [Double](repeating: 0, count: rows * width * hidden)
        for oy in 0 ..< rows {
            for ox in 0 ..< width {
                for j in 0 ..< hidden {
                    var a = Double(bias[j]), g = Double(bias[hidden + j])
                    for ky in 0 ..< 3 {
                        for kx in 0 ..< 3 where (0 ..< width).contains(ox + kx - 1) {
                            let src = ((oy + ky) * width + ox + kx - 1) * wide
                            a += Double(t[src + j]) * Double(taps[(ky * 3 + kx) * wide + j])
                            g += Double(t[src + hidden + j]) * Double(taps[(ky * 3 + kx) * wide + hidden + j])
                        }
                    }
                    expected[(oy * width + ox) * hidden + j] = a * silu(g)
                }
            }
        }
        let xs = (0 ... 4000).map { Float($0 - 2000) * 0.05 } + [-1000, -88, 88, 1000, 0, 1e-20]
        var checked = 0
        for family in KernelTests.families + ["reference"] where sana_select_kernel_family(family) != 0 {
            var gated = [Float](repeating: .nan, count: rows * width * hidden)
            sana_dit_depthwise_glu(t, Int64(rows), Int64(width), Int64(wide), taps, bias, &gated)
            let scale = expected.map(abs).max() ?? 1
            let err = zip(gated, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            print("sana_dit_depthwise_glu \(family): relative max error \(err / scale)")
            XCTAssertLessThan(err / scale, 1e-6, family)
            var s = xs
            sana_dit_silu(&s, Int64(s.count))
            let worst = zip(s, xs).map { abs(Double($0) - silu(Double($1))) / max(abs(silu(Double($1))), 1e-9) }.max() ?? .infinity
            print("sana_dit_silu \(family): worst relative error \(worst)")
            XCTAssertLessThan(worst, 1e-6, family)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 1)
    }

    /// softmax(x + bias) per row against double precision, rows of 120 (the kept caption keys) and 7 (a partial
    /// register), with −10000 biases among them.
    func testSoftmaxWithBias() {
        var checked = 0
        for c in [120, 7] {
            let rows = 3
            let x = KernelTests.gaussian(rows * c, seed: 60, outliers: true)
            let bias = (0 ..< c).map { $0 % 5 == 4 ? Float(-10000) : Float($0) * 0.01 }
            for family in KernelTests.families + ["reference"] where sana_select_kernel_family(family) != 0 {
                var got = x
                sana_dit_softmax_bias(&got, Int64(rows), Int64(c), bias)
                var worst = 0.0
                for r in 0 ..< rows {
                    let z = (0 ..< c).map { Double(x[r * c + $0]) + Double(bias[$0]) }
                    let m = z.max() ?? 0, e = z.map { exp($0 - m) }, sum = e.reduce(0, +)
                    for j in 0 ..< c { worst = max(worst, abs(Double(got[r * c + j]) - e[j] / sum)) }
                }
                print("sana_dit_softmax_bias \(family) c=\(c): max abs error \(worst)")
                XCTAssertLessThan(worst, 1e-6, "\(family) c=\(c)")
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 2)
    }

    /// The bf16 cross-attention core: the AVX-512 BF16 kernel against its scalar reference (same roundings) on odd
    /// shapes, and both against float64 attention of the unrounded operands. Tolerances: docs/NUMERICS.md "Linear DiT".
    func testBF16CrossAttention() {
        // (query rows, heads, d, dv, kept keys): 1.6B's shape (d = dv = 112, 120 keys), and odd ones (odd d, odd
        // key count, partial 16-lane blocks, a single key, more rows than a work item).
        let shapes = [(40, 3, 112, 112, 120), (13, 2, 5, 9, 17), (1, 1, 1, 1, 1), (25, 4, 33, 17, 300), (7, 1, 2, 16, 16)]
        var kernelChecked = 0
        for (index, (m, heads, d, dv, lk)) in shapes.enumerated() {
            let seed = UInt64(70 + 4 * index)
            let q = KernelTests.gaussian(m * heads * d, seed: seed, outliers: false)
            let k = KernelTests.gaussian(lk * heads * d, seed: seed + 1, outliers: false)
            let v = KernelTests.gaussian(lk * heads * dv, seed: seed + 2, outliers: false)
            // Mask-like biases on a few keys (never all of them), small ones elsewhere.
            let bias = (0 ..< lk).map { $0 % 7 == 6 ? Float(-10000) : Float($0 % 5) * 0.1 }
            let scale = 1 / Float(d).squareRoot()
            var ref = [Float](repeating: .nan, count: m * heads * dv)
            sana_dit_cross_attention_ref(q, Int64(m), Int64(heads), Int64(d), Int64(dv), k, v, Int64(lk), bias, scale, &ref)
            // float64 attention of the unrounded operands.
            var exact = [Double](repeating: 0, count: m * heads * dv)
            for h in 0 ..< heads {
                for r in 0 ..< m {
                    let z = (0 ..< lk).map { j in
                        Double(scale) * (0 ..< d).reduce(0.0) { $0 + Double(q[r * heads * d + h * d + $1]) * Double(k[j * heads * d + h * d + $1]) }
                            + Double(bias[j])
                    }
                    let top = z.max() ?? 0, e = z.map { exp($0 - top) }, sum = e.reduce(0, +)
                    for c in 0 ..< dv {
                        exact[r * heads * dv + h * dv + c] = (0 ..< lk).reduce(0.0) { $0 + e[$1] / sum * Double(v[$1 * heads * dv + h * dv + c]) }
                    }
                }
            }
            let vmax = Double(v.map { abs($0) }.max() ?? 1)
            let refError = zip(ref, exact).map { abs(Double($0) - $1) }.max() ?? .infinity
            print("bf16 cross-attention reference \(m)×\(heads)×\(d)×\(dv)×\(lk): max error \(refError / vmax) of max|v|")
            XCTAssertLessThan(refError / vmax, 6e-3, "reference, shape \(index)")
            for family in KernelTests.families where sana_select_kernel_family(family) != 0 {
                // Packed in the family's layout, as the DiT packs them once per block.
                var packed = [UInt16](repeating: 0, count: Int(sana_dit_cross_kv_bytes(Int64(lk), Int64(heads), Int64(d), Int64(dv))) / 2)
                XCTAssertEqual(sana_dit_cross_kv_pack(k, v, Int64(lk), Int64(heads), Int64(d), Int64(dv), &packed),
                               sana_dit_cross_attention_has_kernel(), family)
                var got = [Float](repeating: .nan, count: m * heads * dv)
                let ran = sana_dit_cross_attention(q, Int64(m), Int64(heads), Int64(d), Int64(dv), packed, Int64(lk), bias, scale, &got)
                XCTAssertEqual(ran != 0, sana_dit_cross_attention_has_kernel() != 0, family)
                guard ran != 0 else {
                    XCTAssertTrue(got.allSatisfy { $0.isNaN }, "\(family): no kernel, nothing written")
                    continue
                }
                let err = zip(got, ref).map { abs(Double($0) - Double($1)) }.max() ?? .infinity
                print("bf16 cross-attention \(family) \(m)×\(heads)×\(d)×\(dv)×\(lk): max |kernel − reference| \(err / vmax) of max|v|")
                XCTAssertLessThan(err / vmax, 1e-3, "\(family), shape \(index)")
                kernelChecked += 1
            }
        }
        sana_select_kernel_family(nil)
        if sana_dit_cross_attention_has_kernel() != 0 { XCTAssertEqual(kernelChecked, shapes.count) }
    }

    private func withPointers(_ ws: [[UInt8]], _ biases: [[Float]?], _ ys: inout [[Float]],
                              _ body: ([UnsafeRawPointer?], [UnsafePointer<Float>?], [UnsafeMutablePointer<Float>?]) -> Void) {
        // Arrays of pointers for the C call; the arrays stay alive (and unmoved) for the duration of body.
        let wp = ws.map { UnsafeMutableRawPointer.allocate(byteCount: $0.count, alignment: 64) }
        let bp = biases.map { b in b.map { v in UnsafeMutablePointer<Float>.allocate(capacity: v.count) } }
        let yp = ys.map { UnsafeMutablePointer<Float>.allocate(capacity: $0.count) }
        defer { wp.forEach { $0.deallocate() }; bp.forEach { $0?.deallocate() }; yp.forEach { $0.deallocate() } }
        for (p, w) in zip(wp, ws) { p.copyMemory(from: w, byteCount: w.count) }
        for (p, b) in zip(bp, biases) { if let p, let b { p.update(from: b, count: b.count) } }
        for (p, y) in zip(yp, ys) { p.update(from: y, count: y.count) }
        body(wp.map { UnsafeRawPointer($0) }, bp.map { $0.map { UnsafePointer($0) } }, yp)
        for i in ys.indices { ys[i] = Array(UnsafeBufferPointer(start: yp[i], count: ys[i].count)) }
    }
}

private extension Optional where Wrapped == [Float] {
    func withUnsafeBufferPointerOrNil<R>(_ body: (UnsafePointer<Float>?) -> R) -> R {
        switch self {
        case .none: return body(nil)
        case let .some(a): return a.withUnsafeBufferPointer { body($0.baseAddress) }
        }
    }
}
