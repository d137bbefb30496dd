import Foundation
@testable import SanaKit
import XCTest

final class MemoryTests: XCTestCase {
    func testParseSizes() throws {
        XCTAssertEqual(try Memory.parseSize("800MB"), 800_000_000)
        XCTAssertEqual(try Memory.parseSize("2GiB"), 2 << 30)
        XCTAssertEqual(try Memory.parseSize("1.5G"), 3 << 29)
        XCTAssertEqual(try Memory.parseSize("512m"), 512 << 20)
        XCTAssertEqual(try Memory.parseSize(" 4 kb "), 4000)
        XCTAssertEqual(try Memory.parseSize("1048576"), 1 << 20)
        for bad in ["", "MB", "-1G", "0", "1.2.3G", "12XB", "1e3MB", "abc", "0.0001B", "99999999999TB"] {
            XCTAssertThrowsError(try Memory.parseSize(bad), bad) { XCTAssertEqual($0 as? MemoryError, .badSize(bad)) }
        }
    }

    /// Touching 64 MiB raises the peak by about that much and the peak never falls below the current size.
    func testResidentSizeTracksAllocation() {
        let before = Memory.residentBytes()
        XCTAssertGreaterThan(before.current, 1 << 20)
        XCTAssertGreaterThanOrEqual(before.peak, before.current)
        let n = 64 << 20
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        for i in stride(from: 0, to: n, by: 4096) { buffer[i] = UInt8(truncatingIfNeeded: i) }
        let during = Memory.residentBytes()
        buffer.deallocate()
        XCTAssertGreaterThanOrEqual(during.peak - before.current, n / 2, "peak \(during.peak), before \(before.current)")
        XCTAssertEqual(Memory.format(1536), "1.50 KiB")
    }
}
