import Foundation
import XCTest

extension CLITests {
    /// `sana bench gemm --json` prints one object per shape with the keys the benchmark scripts read.
    func testBenchGemmJSON() throws {
        let r = try run(["bench", "gemm", "--m", "7", "--k", "40", "--n", "33", "--weights", "int4", "--threads", "2",
                         "--runs", "1", "--json"])
        XCTAssertEqual(r.status, 0, r.err)
        let line = try XCTUnwrap(r.out.split(separator: "\n").first)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        for key in ["m", "k", "n", "weights", "threads", "gops", "openblas_sgemm_gflops", "ratio"] {
            XCTAssertNotNil(obj[key], key)
        }
        XCTAssertEqual(obj["weights"] as? String, "int4")
        XCTAssertEqual(obj["n"] as? Int, 33)
    }

    func testBenchGemmRejectsBadWeights() throws {
        let r = try run(["bench", "gemm", "--weights", "int3"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.err.contains("--weights"), r.err)
    }
}
