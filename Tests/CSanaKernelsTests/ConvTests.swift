import CSanaKernels
import XCTest

/// sana_im2col_rows (stride, padding, row bands, nearest-upsample gather) against a scalar loop, sana_conv2d against
/// im2col + sana_linear for every kernel family (int8/int4 bit-identical: same patch values, same kernels; bf16 to
/// 1e-5 relative: tap-major patches sum the same products in another order) and against the reference when forced, and the DC-AE elementwise helpers against scalar loops. Odd shapes; some large enough to
/// run on the thread pool.
final class ConvTests: XCTestCase {
    override func tearDown() {
        sana_select_kernel_family(nil)
        sana_force_reference(0)
    }

    // (b, h, w, c, kernel, stride, pad, upsample)
    static let geometries: [sana_conv_shape] = [
        sana_conv_shape(b: 2, h: 5, w: 7, c: 3, kernel: 3, stride: 1, pad: 1, upsample: 1),
        sana_conv_shape(b: 1, h: 6, w: 5, c: 5, kernel: 3, stride: 2, pad: 1, upsample: 1),
        sana_conv_shape(b: 2, h: 3, w: 4, c: 4, kernel: 3, stride: 1, pad: 1, upsample: 2),
        sana_conv_shape(b: 1, h: 6, w: 4, c: 6, kernel: 2, stride: 2, pad: 0, upsample: 1),
        sana_conv_shape(b: 1, h: 7, w: 6, c: 2, kernel: 5, stride: 1, pad: 2, upsample: 1),
        sana_conv_shape(b: 1, h: 40, w: 33, c: 16, kernel: 3, stride: 1, pad: 1, upsample: 1),  // threaded
        sana_conv_shape(b: 1, h: 20, w: 17, c: 24, kernel: 3, stride: 1, pad: 1, upsample: 2),  // threaded
    ]

    /// The patch matrix [b·oh·ow, c·k·k] by the definition: cols[p, ci·k² + ky·k + kx] = up(x)[n, oy·s+ky−pad, ox·s+kx−pad, ci].
    static func scalarIm2col(_ x: [Float], _ g: sana_conv_shape) -> [Float] {
        let (b, h, w, c, k, s, pad, up) = (Int(g.b), Int(g.h), Int(g.w), Int(g.c), Int(g.kernel), Int(g.stride), Int(g.pad), Int(g.upsample))
        let oh = (h * up + 2 * pad - k) / s + 1, ow = (w * up + 2 * pad - k) / s + 1
        var cols = [Float](repeating: 0, count: b * oh * ow * c * k * k)
        for n in 0 ..< b { for oy in 0 ..< oh { for ox in 0 ..< ow { for ci in 0 ..< c { for ky in 0 ..< k { for kx in 0 ..< k {
            let iy = oy * s + ky - pad, ix = ox * s + kx - pad
            guard iy >= 0 && iy < h * up && ix >= 0 && ix < w * up else { continue }
            cols[((n * oh + oy) * ow + ox) * c * k * k + ci * k * k + ky * k + kx] = x[((n * h + iy / up) * w + ix / up) * c + ci]
        } } } } } }
        return cols
    }

    func testIm2colRowsMatchScalarLoopInBands() {
        for var g in Self.geometries {
            let x = KernelTests.gaussian(Int(g.b * g.h * g.w * g.c), seed: UInt64(g.h * 13 + g.c), outliers: false)
            let ref = Self.scalarIm2col(x, g)
            let rows = Int(g.b * sana_conv_out_height(&g)), ow = Int(sana_conv_out_width(&g))
            let patch = Int(g.c) * Int(g.kernel * g.kernel)
            XCTAssertEqual(rows * ow * patch, ref.count, "\(g)")
            var cols = [Float](repeating: .nan, count: ref.count)
            // Uneven bands of output rows (3 rows, crossing image boundaries when b > 1).
            for r0 in stride(from: 0, to: rows, by: 3) {
                let n = min(3, rows - r0)
                cols.withUnsafeMutableBufferPointer { c in
                    sana_im2col_rows(x, &g, Int64(r0), Int64(n), c.baseAddress.map { $0 + r0 * ow * patch })
                }
            }
            XCTAssertEqual(cols, ref, "\(g)")
        }
        var empty = sana_conv_shape(b: 1, h: 2, w: 2, c: 1, kernel: 5, stride: 1, pad: 0, upsample: 1)
        XCTAssertEqual(sana_conv_out_height(&empty), 0)
    }

    func testConv2dEqualsIm2colThenLinear() {
        var checked = 0
        for family in KernelTests.families where sana_select_kernel_family(family) != 0 {
            for var g in Self.geometries {
                for type in [SANA_TYPE_Q8, SANA_TYPE_Q4, SANA_TYPE_BF16].map({ Int32($0.rawValue) }) {
                    sana_select_kernel_family(family)
                    if type == Int32(SANA_TYPE_BF16.rawValue) && sana_linear_has_kernel(type) == 0 { continue }
                    let (conv, viaCols) = Self.convBothWays(&g, type: type, cout: 19)
                    if type == Int32(SANA_TYPE_BF16.rawValue) {
                        let maxRef = viaCols.reduce(0) { max($0, abs($1)) }
                        let maxDiff = zip(conv, viaCols).reduce(0) { max($0, abs($1.0 - $1.1)) }
                        XCTAssertLessThanOrEqual(maxDiff / maxRef, 1e-5, "\(family) bf16 \(g)")
                    } else {
                        XCTAssertEqual(conv, viaCols, "\(family) type \(type) \(g)")
                    }
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
        // The forced reference (also the path of types without a kernel) is im2col + the scalar product.
        sana_force_reference(1)
        for var g in Self.geometries.prefix(3) {
            for type in [SANA_TYPE_Q8, SANA_TYPE_Q4, SANA_TYPE_BF16, SANA_TYPE_F32].map({ Int32($0.rawValue) }) {
                let (conv, viaCols) = Self.convBothWays(&g, type: type, cout: 5)
                XCTAssertTrue(conv == viaCols, "reference type \(type) \(g)")
            }
        }
    }

    /// (sana_conv2d_ordered, sana_linear on the scalar im2col in the same column order) for random weights and bias.
    static func convBothWays(_ g: inout sana_conv_shape, type: Int32, cout: Int, order: sana_conv_order = SANA_CONV_REFERENCE) -> ([Float], [Float]) {
        let x = KernelTests.gaussian(Int(g.b * g.h * g.w * g.c), seed: UInt64(g.w * 7 + g.c), outliers: true)
        let k = Int(g.c) * Int(g.kernel * g.kernel), m = Int(g.b * sana_conv_out_height(&g) * sana_conv_out_width(&g))
        let w = KernelTests.pack(type, KernelTests.gaussian(cout * k, seed: UInt64(k), outliers: false).map { $0 * 0.05 }, cout, k)
        let bias = KernelTests.gaussian(cout, seed: 5, outliers: false)
        var y = [Float](repeating: .nan, count: m * cout), yc = y
        sana_conv2d_ordered(x, &g, type, w, Int32(order.rawValue), Int64(cout), bias, &y)
        let cols = order == SANA_CONV_TAP_MAJOR ? scalarTapMajorIm2col(x, g) : scalarIm2col(x, g)
        sana_linear(cols, Int64(m), Int64(k), type, w, Int64(cout), bias, &yc)
        return (y, yc)
    }

    // Tap-major geometries: c a multiple of the int4 group (64) or of both groups (128), so the quantized fast path
    // runs; the last one has output rows entirely in the padding (pad ≥ kernel).
    static let tapMajorGeometries: [sana_conv_shape] = [
        sana_conv_shape(b: 2, h: 5, w: 7, c: 128, kernel: 3, stride: 1, pad: 1, upsample: 1),
        sana_conv_shape(b: 1, h: 6, w: 5, c: 64, kernel: 3, stride: 2, pad: 1, upsample: 1),
        sana_conv_shape(b: 2, h: 3, w: 4, c: 128, kernel: 3, stride: 1, pad: 1, upsample: 2),
        sana_conv_shape(b: 1, h: 9, w: 11, c: 64, kernel: 3, stride: 1, pad: 1, upsample: 1),
        sana_conv_shape(b: 1, h: 3, w: 4, c: 64, kernel: 2, stride: 1, pad: 2, upsample: 1),
        sana_conv_shape(b: 1, h: 4, w: 3, c: 24, kernel: 3, stride: 1, pad: 1, upsample: 1),  // c % group ≠ 0: fallback
    ]

    /// The tap-major patch matrix by the definition: cols[p, (ky·k + kx)·c + ci], from the reference im2col.
    static func scalarTapMajorIm2col(_ x: [Float], _ g: sana_conv_shape) -> [Float] {
        let ref = scalarIm2col(x, g), c = Int(g.c), taps = Int(g.kernel * g.kernel), patch = c * taps
        var cols = ref
        for p in 0 ..< ref.count / patch { for ci in 0 ..< c { for t in 0 ..< taps {
            cols[p * patch + t * c + ci] = ref[p * patch + ci * taps + t]
        } } }
        return cols
    }

    /// sana_conv2d_ordered(TAP_MAJOR) against sana_linear on the tap-major im2col matrix: bit-identical for int8/int4
    /// (each activation group is one pixel's group either way), for every family, with bands of the default size and
    /// of a few pixels (band boundaries inside rows and images), and for the forced reference; and the tap-major
    /// f32 conv of the permuted weight against the reference-order conv (the permutation is the right one).
    func testTapMajorConvEqualsTapMajorIm2colThenLinear() {
        defer { sana_set_conv_band_pixels(0) }
        let types = [SANA_TYPE_Q8, SANA_TYPE_Q4, SANA_TYPE_BF16].map { Int32($0.rawValue) }
        var checked = 0
        for family in KernelTests.families where sana_select_kernel_family(family) != 0 {
            for bandPixels in [0, 5] {
                sana_set_conv_band_pixels(Int64(bandPixels))
                for var g in Self.tapMajorGeometries {
                    for type in types {
                        let (conv, viaCols) = Self.convBothWays(&g, type: type, cout: 19, order: SANA_CONV_TAP_MAJOR)
                        XCTAssertTrue(conv == viaCols, "\(family) band \(bandPixels) type \(type) \(g): max diff \(zip(conv, viaCols).map { abs($0 - $1) }.max() ?? 0)")
                        checked += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
        sana_select_kernel_family(nil)
        sana_force_reference(1)
        for var g in Self.tapMajorGeometries.prefix(3) {
            for type in types {
                let (conv, viaCols) = Self.convBothWays(&g, type: type, cout: 5, order: SANA_CONV_TAP_MAJOR)
                XCTAssertTrue(conv == viaCols, "reference type \(type) \(g)")
            }
        }
        sana_force_reference(0)
        for var g in Self.tapMajorGeometries {
            let x = KernelTests.gaussian(Int(g.b * g.h * g.w * g.c), seed: 3, outliers: false)
            let (c, taps, cout) = (Int(g.c), Int(g.kernel * g.kernel), 7)
            let w = KernelTests.gaussian(cout * c * taps, seed: 4, outliers: false)
            var wt = w  // [cout, c, taps] → [cout, taps, c]
            for o in 0 ..< cout { for ci in 0 ..< c { for t in 0 ..< taps { wt[(o * taps + t) * c + ci] = w[(o * c + ci) * taps + t] } } }
            let f32 = Int32(SANA_TYPE_F32.rawValue), m = Int(g.b * sana_conv_out_height(&g) * sana_conv_out_width(&g))
            var y = [Float](repeating: .nan, count: m * cout), yt = y
            sana_conv2d(x, &g, f32, KernelTests.pack(f32, w, cout, c * taps), Int64(cout), nil, &y)
            sana_conv2d_ordered(x, &g, f32, KernelTests.pack(f32, wt, cout, c * taps), Int32(SANA_CONV_TAP_MAJOR.rawValue), Int64(cout), nil, &yt)
            let maxRef = y.reduce(0) { max($0, abs($1)) }, maxDiff = zip(y, yt).reduce(0) { max($0, abs($1.0 - $1.1)) }
            XCTAssertLessThanOrEqual(maxDiff / maxRef, 1e-5, "\(g)")
        }
    }

    /// The direct f32 convolution for few outputs against sana_linear on the scalar im2col, both column orders.
    func testDirectF32ConvMatchesIm2col() {
        let f32 = Int32(SANA_TYPE_F32.rawValue)
        for var g in Self.geometries + Self.tapMajorGeometries {
            for order in [SANA_CONV_REFERENCE, SANA_CONV_TAP_MAJOR] {
                let x = KernelTests.gaussian(Int(g.b * g.h * g.w * g.c), seed: 9, outliers: false)
                let k = Int(g.c) * Int(g.kernel * g.kernel), m = Int(g.b * sana_conv_out_height(&g) * sana_conv_out_width(&g)), cout = 3
                let w = KernelTests.gaussian(cout * k, seed: 10, outliers: false), bias = KernelTests.gaussian(cout, seed: 11, outliers: false)
                var y = [Float](repeating: .nan, count: m * cout), yc = y
                XCTAssertEqual(sana_conv2d_f32_direct(x, &g, Int32(order.rawValue), w, Int64(cout), bias, &y), 1)
                let cols = order == SANA_CONV_TAP_MAJOR ? Self.scalarTapMajorIm2col(x, g) : Self.scalarIm2col(x, g)
                sana_linear(cols, Int64(m), Int64(k), f32, KernelTests.pack(f32, w, cout, k), Int64(cout), bias, &yc)
                let maxRef = yc.reduce(0) { max($0, abs($1)) }, maxDiff = zip(y, yc).reduce(0) { max($0, abs($1.0 - $1.1)) }
                XCTAssertLessThanOrEqual(maxDiff / maxRef, 1e-5, "\(order) \(g)")
            }
        }
    }

    func testElementwiseHelpersMatchScalarLoops() {
        // sana_add, threaded above 128 Ki elements, with a tail.
        let n = 300_001
        var a = KernelTests.gaussian(n, seed: 1, outliers: false)
        let b = KernelTests.gaussian(n, seed: 2, outliers: false), sum = zip(a, b).map { $0 + $1 }
        sana_add(&a, b, Int64(n))
        XCTAssertEqual(a, sum)

        // GLU with SiLU gate: [rows, 2·hidden] → [rows, hidden].
        let (rows, hidden) = (37, 45)
        let t = KernelTests.gaussian(rows * 2 * hidden, seed: 3, outliers: false)
        var g = [Float](repeating: 0, count: rows * hidden)
        sana_glu_silu(t, Int64(rows), Int64(hidden), &g)
        for r in 0 ..< rows { for j in 0 ..< hidden {
            let v = t[r * 2 * hidden + j], gate = t[r * 2 * hidden + hidden + j]
            XCTAssertEqual(g[r * hidden + j], v * (gate / (1 + expf(-gate))), accuracy: 1e-6)
        } }

        // Up-block shortcut: repeat_interleave(4·cout / cin) then pixel_shuffle(2), added.
        // repeats 2, 4, 1 (the strided fast paths) and 8 (the general one)
        for (bb, h, w, cin, cout) in [(2, 3, 5, 6, 3), (1, 4, 2, 8, 8), (1, 3, 3, 8, 2), (1, 2, 3, 2, 4)] {
            let x = KernelTests.gaussian(bb * h * w * cin, seed: 4, outliers: false)
            let base = KernelTests.gaussian(bb * 4 * h * w * cout, seed: 6, outliers: false)
            var out = base
            sana_add_shuffled_repeat(&out, x, Int64(bb), Int64(h), Int64(w), Int64(cin), Int64(cout))
            let repeats = 4 * cout / cin
            for n in 0 ..< bb { for y in 0 ..< 2 * h { for xx in 0 ..< 2 * w { for c in 0 ..< cout {
                let i = ((n * 2 * h + y) * 2 * w + xx) * cout + c
                let src = x[((n * h + y / 2) * w + xx / 2) * cin + (c * 4 + (y % 2) * 2 + xx % 2) / repeats]
                XCTAssertEqual(out[i], base[i] + src)
            } } } }
        }
    }
}
