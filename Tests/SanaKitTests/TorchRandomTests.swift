import Foundation
@testable import SanaKit
import XCTest

/// torch.randn reproduction. Fixtures: `${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_pipeline_refs.py noise`
/// (Tests/Fixtures/noise/{avx2,default}/<case>.npy, one per torch CPU capability; cases.json lists seeds and shapes).
final class TorchRandomTests: XCTestCase {
    struct NoiseCase: Decodable { let name: String; let seed: UInt64; let shapes: [[Int]] }

    func cases() throws -> [NoiseCase] {
        let data = try Data(contentsOf: URL(fileURLWithPath: Fixtures.path("noise/cases.json")))
        return try JSONDecoder().decode([NoiseCase].self, from: data)
    }

    /// Every case, drawn shape after shape from one generator, equals torch bit for bit (tolerance 0).
    func check(_ kernel: TorchNormalKernel, directory: String) throws {
        for c in try cases() {
            var g = TorchGenerator(seed: c.seed)
            var got: [Float] = []
            for shape in c.shapes { got += g.randn(shape: shape, kernel: kernel).data }
            let want = try Fixtures.tensor("noise/\(directory)/\(c.name).npy").data
            XCTAssertEqual(got.count, want.count, c.name)
            let mismatches = zip(got, want).enumerated().filter { $0.element.0.bitPattern != $0.element.1.bitPattern }
            XCTAssertTrue(mismatches.isEmpty, "\(c.name) [\(kernel)]: \(mismatches.count) of \(want.count) differ, first at "
                + "\(mismatches.first.map { "\($0.offset): \($0.element.0) vs \($0.element.1)" } ?? "")")
        }
    }

    func testAVX2KernelMatchesTorchBitForBit() throws { try check(.avx2, directory: "avx2") }
    func testGenericKernelMatchesTorchBitForBit() throws { try check(.generic, directory: "default") }

    /// The well-known first values of torch.manual_seed(42); torch.randn(...) on x86-64.
    func testKnownSeed42Values() {
        var g = TorchGenerator(seed: 42)
        let x = g.randn(count: 32, kernel: .avx2)
        XCTAssertEqual(x[0], 1.9269152879714966)
        XCTAssertEqual(x[1], 1.4872840642929077)
    }

    /// The reference mt19937 sequence for seed 5489 (the C++ std::mt19937 default): the 10000th output is 4123659995.
    func testEngineMatchesStdMt19937() {
        var g = TorchGenerator(seed: 5489)
        var last: UInt32 = 0
        for _ in 0 ..< 10000 { last = g.random() }
        XCTAssertEqual(last, 4_123_659_995)
    }
}
