import CZstd
import Foundation
@testable import SanaFormat
import XCTest

final class XXH64Tests: XCTestCase {
    func testKnownValueAndZstdOracle() {
        XCTAssertEqual(XXH64.hash([]), 0xEF46_DB37_51D8_E999)
        XCTAssertEqual(XXH64.hash(Array("a".utf8)), 0xD24E_C4F1_A98C_6E5B)
        XCTAssertEqual(XXH64.hash(Array("abc".utf8)), 0x44BC_2CF5_AD77_0999)
        XCTAssertEqual(XXH64.hash(Array("abcdefghijklmnopqrstuvwxyz12345".utf8)), 0x4676_0590_1B01_D6F6)
        // zstd's frame content checksum is the low 32 bits of XXH64 of the content: an independent implementation.
        for n in [1, 3, 4, 7, 8, 31, 32, 33, 40, 100, 1000, 4099] {
            let content = (0 ..< n).map { UInt8(truncatingIfNeeded: $0 * 37 + 11) }
            let frame = content.withUnsafeBytes { ZstdCompressor(level: 1).compress($0) }
            let stored = frame.suffix(4).enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * UInt32($1.offset)) }
            XCTAssertEqual(UInt32(truncatingIfNeeded: XXH64.hash(content)), stored, "n=\(n)")
        }
        XCTAssertEqual(XXH64.parseHex(XXH64.hex(0x0123_4567_89AB_CDEF)), 0x0123_4567_89AB_CDEF)
        XCTAssertNil(XXH64.parseHex("xyz"))
    }
}
