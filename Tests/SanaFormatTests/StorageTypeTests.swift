import SanaFormat
import XCTest

final class StorageTypeTests: XCTestCase {
    func testNamesRoundTrip() {
        for t in StorageType.allCases { XCTAssertEqual(StorageType(name: t.name), t) }
        XCTAssertNil(StorageType(name: "q3"))
    }

    func testFloatPackRoundTripIsExactForF32() {
        let v: [Float] = [1.5, -2.25, 3e-8, 65504, -0.0]
        let t = StoredTensor.pack(name: "v", shape: [5], values: v, as: .f32)
        XCTAssertEqual(t.floats(), v)
    }
}
