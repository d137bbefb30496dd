import Foundation
@testable import SanaFormat
import XCTest

/// The compressor's literal modes (docs/FORMAT.md "Data section", Compression).
final class ZstdTests: XCTestCase {
    /// Bytes like packed int4 codes: two nibbles, each peaked in the middle (the sum of two uniform 0…7), so Huffman
    /// coding saves ~7 % and matches are rare; with raw literals the frame is the content plus its headers.
    func testRawLiteralsSkipHuffmanAndRoundTrip() throws {
        var rng = TestRandom(state: 7)
        let nibble = { (r: UInt64) in UInt8((r & 7) + ((r >> 3) & 7)) }
        let content = (0 ..< 200_000).map { _ in
            let r = rng.next() >> 32
            return nibble(r) << 4 | nibble(r >> 8)
        }
        let zstd = ZstdCompressor(level: 3)
        let huffman = content.withUnsafeBytes { zstd.compress($0) }
        let raw = content.withUnsafeBytes { zstd.compress($0, rawLiterals: true) }
        let again = content.withUnsafeBytes { zstd.compress($0) }  // the mode is per call, not sticky
        print("content \(content.count) B, Huffman literals \(huffman.count) B, raw literals \(raw.count) B")
        XCTAssertLessThan(huffman.count, content.count * 95 / 100)
        XCTAssertGreaterThanOrEqual(raw.count, content.count)
        XCTAssertEqual(again, huffman)
        for frame in [huffman, raw] {
            var out = [UInt8](repeating: 0, count: content.count)
            let error = frame.withUnsafeBytes { src in out.withUnsafeMutableBytes { Zstd.decompressFrame(src, into: $0) } }
            XCTAssertNil(error)
            XCTAssertEqual(out, content)
        }
    }
}
