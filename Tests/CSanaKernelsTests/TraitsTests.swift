import CSanaKernels
import XCTest

final class TraitsTests: XCTestCase {
    func testTraitsTableCoversEveryType() {
        for t in 0 ..< Int32(SANA_TYPE_COUNT.rawValue) { XCTAssertNotNil(sana_type_traits_of(t)) }
        XCTAssertNil(sana_type_traits_of(Int32(SANA_TYPE_COUNT.rawValue)))
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_F32.rawValue), 3, 5), 60)
        XCTAssertEqual(sana_matrix_bytes(Int32(SANA_TYPE_F32.rawValue), Int64.max, 5), 0)
    }
}
