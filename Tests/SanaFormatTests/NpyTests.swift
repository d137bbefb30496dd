import Foundation
import SanaFormat
import XCTest

final class NpyTests: XCTestCase {
    func testWriteThenReadRoundTrips() throws {
        let path = NSTemporaryDirectory() + "/npy-\(UUID().uuidString).npy"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let values: [Float] = (0 ..< 24).map { Float($0) * 0.25 - 3 }
        try Npy.write(path, shape: [2, 3, 4], values: values)
        let (shape, read) = try Npy.read(path)
        XCTAssertEqual(shape, [2, 3, 4])
        XCTAssertEqual(read, values)
    }

    func testRejectsForeignFile() throws {
        let path = NSTemporaryDirectory() + "/npy-\(UUID().uuidString).npy"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try Data("not numpy at all".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try Npy.read(path))
    }
}
