import CSanaKernels
import XCTest

/// SIMD kernels against the scalar reference (the oracle) on odd and aligned shapes, for every kernel family
/// this CPU supports; packed-format invariants the bundle relies on.
final class KernelTests: XCTestCase {
    static let families = ["avx512vnni+bf16", "avx512vnni", "avx2", "neon-dotprod", "neon"]
    // (M, K, N): K, N, M not multiples of the group / row block / micro-tile, and aligned ones.
    static let shapes: [(Int, Int, Int)] = [(1, 8, 1), (7, 37, 19), (13, 200, 33), (6, 256, 32), (25, 1000, 70),
                                            (3, 129, 17), (64, 576, 48), (50, 1152, 40)]

    override func tearDown() { sana_select_kernel_family(nil) }

    func testTraitsFinalLayouts() throws {
        let q8 = try XCTUnwrap(sana_type_traits_of(Int32(SANA_TYPE_Q8.rawValue))).pointee
        let q4 = try XCTUnwrap(sana_type_traits_of(Int32(SANA_TYPE_Q4.rawValue))).pointee
        XCTAssertEqual(q8.row_block, 16)
        XCTAssertEqual(q4.row_block, 16)
        XCTAssertEqual(q8.group_size, 128)
        XCTAssertEqual(q4.group_size, 64)
        // One block of 16 rows, K = 2240: 18 groups of scales (16 floats each) + 2240·16 bytes (int8) or half (int4).
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_Q8.rawValue), 16, 2240), 18 * 64 + 2240 * 16)
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_Q4.rawValue), 16, 2240), 35 * 64 + 2240 * 8)
        // Partial blocks are padded to 16 rows; K is padded to a multiple of 8.
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_Q8.rawValue), 17, 3), 2 * (64 + 8 * 16))
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_BF16.rawValue), 3, 5), 30)
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_Q4.rawValue), Int64.max, 5), 0)
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_Q4.rawValue), 5, 0), 0)
    }

    /// Rows [a, b) of a packed matrix (a, b multiples of row_block, or b = N) equal the packing of those rows alone;
    /// single rows unpack to the same values as the whole matrix.
    func testRowChunksAreValidMatrices() {
        let n = 37, k = 75
        let w = Self.gaussian(n * k, seed: 3, outliers: true)
        for type in [SANA_TYPE_F32, SANA_TYPE_F16, SANA_TYPE_BF16, SANA_TYPE_Q8, SANA_TYPE_Q4].map({ Int32($0.rawValue) }) {
            let rb = Int(sana_type_traits_of(type).pointee.row_block)
            let whole = Self.pack(type, w, n, k)
            for (a, b) in [(0, n), (rb, n), (0, rb), (rb, 2 * rb)] where b <= n {
                let part = Self.pack(type, Array(w[(a * k) ..< (b * k)]), b - a, k)
                let offset = Int(sana_matrix_bytes(type, Int64(a), Int64(k)))
                XCTAssertEqual(Array(whole[offset ..< offset + part.count]), part, "type \(type) rows \(a)..<\(b)")
            }
            var all = [Float](repeating: 0, count: n * k), row = [Float](repeating: 0, count: k)
            sana_matrix_unpack_rows(type, whole, Int64(n), Int64(k), 0, Int64(n), &all)
            sana_matrix_unpack_rows(type, whole, Int64(n), Int64(k), 20, 1, &row)
            XCTAssertEqual(row, Array(all[20 * k ..< 21 * k]))
        }
    }

    /// Dequantization error of the formats on Gaussian weights (measured values in docs/NUMERICS.md).
    func testQuantizationErrorBounds() {
        let n = 64, k = 1152
        let w = Self.gaussian(n * k, seed: 5, outliers: false)
        for (type, bound) in [(SANA_TYPE_Q8, 0.01), (SANA_TYPE_Q4, 0.15), (SANA_TYPE_BF16, 0.005)] {
            let t = Int32(type.rawValue)
            var back = [Float](repeating: 0, count: n * k)
            sana_matrix_unpack_rows(t, Self.pack(t, w, n, k), Int64(n), Int64(k), 0, Int64(n), &back)
            let rms = Self.rmsRelative(back, w)
            XCTAssertLessThan(rms, bound, "type \(type)")
        }
    }

    /// Every SIMD family agrees with the scalar reference on the same quantized inputs to ≤ 1e-6 relative
    /// (int8/int4: the same integer arithmetic, in practice bit-identical); bf16 to ≤ 1e-5 (fp32 summation order).
    func testSimdMatchesReference() {
        var checked = 0
        for family in Self.families where sana_select_kernel_family(family) != 0 {
            for (m, k, n) in Self.shapes {
                for type in [SANA_TYPE_Q8, SANA_TYPE_Q4, SANA_TYPE_BF16].map({ Int32($0.rawValue) }) {
                    sana_select_kernel_family(family)
                    if type == Int32(SANA_TYPE_BF16.rawValue) && sana_linear_has_kernel(type) == 0 { continue }
                    let err = Self.compareWithReference(type: type, m: m, k: k, n: n)
                    XCTAssertLessThanOrEqual(err, type == Int32(SANA_TYPE_BF16.rawValue) ? 1e-5 : 1e-6,
                                             "\(family) type \(type) m=\(m) k=\(k) n=\(n)")
                    checked += 1
                }
            }
        }
        XCTAssertGreaterThan(checked, 0)
    }

    func testForceReference() {
        sana_force_reference(1)
        XCTAssertEqual(String(cString: sana_kernel_family()), "reference")
        XCTAssertEqual(Self.compareWithReference(type: Int32(SANA_TYPE_Q8.rawValue), m: 5, k: 40, n: 9), 0)
        sana_force_reference(0)
        XCTAssertNotEqual(String(cString: sana_kernel_family()), "")
    }

    /// Many calls through the persistent pool with changing thread counts give the same answer.
    func testThreadCountsAgree() {
        let type = Int32(SANA_TYPE_Q4.rawValue), m = 70, k = 300, n = 100
        let x = Self.gaussian(m * k, seed: 11, outliers: true), w = Self.pack(type, Self.gaussian(n * k, seed: 12, outliers: false), n, k)
        var first = [Float]()
        for threads in [1, 2, 3, 1, 2] {
            sana_set_threads(Int32(threads))
            var y = [Float](repeating: 0, count: m * n)
            sana_linear(x, Int64(m), Int64(k), type, w, Int64(n), nil, &y)
            if first.isEmpty { first = y } else { XCTAssertEqual(y, first, "threads \(threads)") }
        }
        sana_set_threads(0)
    }

    // MARK: helpers

    static func compareWithReference(type: Int32, m: Int, k: Int, n: Int) -> Double {
        var x = gaussian(m * k, seed: UInt64(m * 31 + k), outliers: true)
        if type == Int32(SANA_TYPE_BF16.rawValue) { x = x.map { sana_bf16_to_f32(sana_f32_to_bf16($0)) } }
        let w = pack(type, gaussian(n * k, seed: UInt64(n * 7 + k), outliers: false).map { $0 * 0.05 }, n, k)
        let bias = gaussian(n, seed: 99, outliers: false)
        var y = [Float](repeating: 0, count: m * n), yr = y
        sana_linear(x, Int64(m), Int64(k), type, w, Int64(n), bias, &y)
        sana_linear_ref(x, Int64(m), Int64(k), type, w, Int64(n), bias, &yr)
        let maxRef = yr.reduce(0) { max($0, abs($1)) }
        let maxDiff = zip(y, yr).reduce(0) { max($0, abs($1.0 - $1.1)) }
        return Double(maxDiff / max(maxRef, 1e-30))
    }

    static func pack(_ type: Int32, _ w: [Float], _ n: Int, _ k: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(sana_matrix_bytes(type, Int64(n), Int64(k))))
        sana_matrix_pack(type, w, Int64(n), Int64(k), &out)
        return out
    }

    static func rmsRelative(_ a: [Float], _ b: [Float]) -> Double {
        var num = 0.0, den = 0.0
        for (x, y) in zip(a, b) { num += Double(x - y) * Double(x - y); den += Double(y) * Double(y) }
        return (num / max(den, 1e-300)).squareRoot()
    }

    /// Deterministic Gaussian values (Box–Muller on an LCG); `outliers`: every 97th value ×20, like activation
    /// outlier channels.
    static func gaussian(_ count: Int, seed: UInt64, outliers: Bool) -> [Float] {
        var s = seed &* 6364136223846793005 &+ 1442695040888963407
        func next() -> Double {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return (Double(s >> 11) + 1) / 9007199254740994.0
        }
        return (0 ..< count).map { i in
            let v = Float((-2 * log(next())).squareRoot() * cos(2 * Double.pi * next()))
            return outliers && i % 97 == 0 ? v * 20 : v
        }
    }
}
