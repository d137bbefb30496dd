import Foundation
import SanaFormat
import SanaKit

/// Committed reference fixtures under Tests/Fixtures (written by the scripts in tools/fixtures/).
enum Fixtures {
    static let root: String = {
        // Tests/SanaKitTests/Fixtures.swift → Tests/Fixtures
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures").path
    }()

    static func path(_ relative: String) -> String { (root as NSString).appendingPathComponent(relative) }

    /// A reference tensor from a .npy fixture.
    static func tensor(_ relative: String) throws -> Tensor {
        let (shape, values) = try Npy.read(path(relative))
        return Tensor(shape: shape, data: values)
    }
}

/// max|a − b| / max|b|: the relative error measure used throughout docs/NUMERICS.md.
func relativeMaxError(_ a: Tensor, _ b: Tensor) -> Float {
    precondition(a.shape == b.shape, "relativeMaxError: shapes \(a.shape) and \(b.shape) differ")
    var maxDiff: Float = 0
    for i in 0 ..< a.count { maxDiff = max(maxDiff, abs(a.data[i] - b.data[i])) }
    return maxDiff / max(b.maxAbs, 1e-30)
}
