import SanaFormat
@testable import SanaKit
import XCTest

final class TensorTests: XCTestCase {
    func testPermuteMatchesIndexArithmetic() {
        // [2, 3, 4] → permute (2, 0, 1) → [4, 2, 3]
        let t = Tensor(shape: [2, 3, 4], data: (0 ..< 24).map(Float.init))
        let p = t.permuted([2, 0, 1])
        XCTAssertEqual(p.shape, [4, 2, 3])
        for a in 0 ..< 2 { for b in 0 ..< 3 { for c in 0 ..< 4 {
            XCTAssertEqual(p.data[(c * 2 + a) * 3 + b], t.data[(a * 3 + b) * 4 + c])
        } } }
    }

    func testLinearF32MatchesNaiveProduct() {
        let n = 5, k = 7, m = 3
        let w = (0 ..< n * k).map { Float(($0 * 37) % 11) - 5 }
        let x = (0 ..< m * k).map { Float(($0 * 13) % 7) - 3 }
        let bias = (0 ..< n).map { Float($0) * 0.5 }
        let lin = Linear(weight: .pack(name: "w", shape: [n, k], values: w, as: .f32), bias: bias)
        let y = lin.apply(Tensor(shape: [m, k], data: x))
        for i in 0 ..< m { for j in 0 ..< n {
            var acc = bias[j]
            for p in 0 ..< k { acc += x[i * k + p] * w[j * k + p] }
            XCTAssertEqual(y.data[i * n + j], acc, accuracy: 1e-4)
        } }
    }
}
