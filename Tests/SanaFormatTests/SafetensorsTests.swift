import Foundation
@testable import SanaFormat
import XCTest

/// Hostile and valid safetensors files, each malformation with its own error (as the reference validator).
final class SafetensorsTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws { dir = try TestPaths.scratch() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func open(_ bytes: [UInt8]) throws -> SafetensorsFile {
        let path = dir + "/t-\(UUID().uuidString).safetensors"
        try SafetensorsBuilder.write(bytes, to: path)
        return try SafetensorsFile(path: path)
    }

    func expect(_ bytes: [UInt8], _ check: (SafetensorsError) -> Bool, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try open(bytes), file: file, line: line) { e in
            guard let s = e as? SafetensorsError else { return XCTFail("not a SafetensorsError: \(e)", file: file, line: line) }
            XCTAssertTrue(check(s), "unexpected error: \(s)", file: file, line: line)
        }
    }

    func testReadsFloatDTypes() throws {
        // 1.5 as F32, F16 (0x3E00) and BF16 (0x3FC0).
        let data: [UInt8] = [0, 0, 0xC0, 0x3F, 0x00, 0x3E, 0xC0, 0x3F]
        let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F16","shape":[1],"data_offsets":[4,6]},"c":{"dtype":"BF16","shape":[1],"data_offsets":[6,8]},"__metadata__":{"format":"pt"}}"#
        let f = try open(SafetensorsBuilder.raw(header: header, data: data))
        for n in ["a", "b", "c"] { XCTAssertEqual(try f.tensor(n).floats(), [1.5], n) }
        XCTAssertEqual(try f.tensor("b").type, .f16)
        XCTAssertEqual(try f.floats("c", elements: 0 ..< 1), [1.5])
        XCTAssertEqual(f.metadata["format"], "pt")
    }

    func testHeaderLengthTooLarge() {
        expect(SafetensorsBuilder.raw(header: "{}", data: [], headerLength: 200_000_000)) {
            if case .headerTooLarge = $0 { return true } else { return false }
        }
    }

    func testHeaderLengthBeyondFile() {
        expect(SafetensorsBuilder.raw(header: "{}", data: [], headerLength: 50)) {
            if case .truncated = $0 { return true } else { return false }
        }
    }

    func testTruncatedFile() throws {
        let good = SafetensorsBuilder.f32([("w", [2, 2], [1, 2, 3, 4])])
        expect(Array(good.prefix(5))) { if case .truncated = $0 { return true } else { return false } }
        // Cut inside the data: the tensor's range now ends past the data.
        expect(Array(good.dropLast(4))) { if case .offsetsOutOfRange(_, "w", _, _, _) = $0 { return true } else { return false } }
    }

    func testNotJSON() {
        expect(SafetensorsBuilder.raw(header: "{nope", data: [])) { if case .badHeader = $0 { return true } else { return false } }
    }

    func testOverlappingOffsets() {
        let h = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 12))) {
            if case .overlappingOffsets(_, "b", "a") = $0 { return true } else { return false }
        }
    }

    func testOutOfRangeOffsets() {
        let h = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,1000]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 12))) {
            if case .offsetsOutOfRange(_, "b", 8, 1000, 12) = $0 { return true } else { return false }
        }
    }

    func testNonContiguousOffsets() {
        let h = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 12))) {
            if case .nonContiguousOffsets(_, "b", 4, 8) = $0 { return true } else { return false }
        }
    }

    func testTrailingBytes() {
        let h = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 8))) {
            if case .trailingData(_, 4, 8) = $0 { return true } else { return false }
        }
    }

    func testUnknownDType() {
        let h = #"{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [0, 0, 0, 0])) {
            if case .unknownDType(_, "a", "Q7") = $0 { return true } else { return false }
        }
    }

    func testDuplicateNames() {
        let h = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 8))) {
            if case .duplicateTensor(_, "a") = $0 { return true } else { return false }
        }
    }

    func testShapeSizeMismatchAndOverflow() {
        let h = #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#
        expect(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 8))) {
            if case .sizeMismatch(_, "a", 12, 8) = $0 { return true } else { return false }
        }
        let o = #"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}}"#
        expect(SafetensorsBuilder.raw(header: o, data: [UInt8](repeating: 0, count: 8))) {
            if case .badTensor(_, "a", _) = $0 { return true } else { return false }
        }
    }

    func testIntegerTensorIsRejectedOnRead() throws {
        let h = #"{"n":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}"#
        let f = try open(SafetensorsBuilder.raw(header: h, data: [UInt8](repeating: 0, count: 8)))
        XCTAssertThrowsError(try f.tensor("n")) { XCTAssertEqual($0 as? SafetensorsError, .unsupportedDType(path: f.path, tensor: "n", dtype: "I64")) }
    }

    func testShardedFixtureThroughIndex() throws {
        let d = try SafetensorsDirectory(path: TestPaths.pipeline("sana15") + "/transformer")
        XCTAssertNotNil(d.indexPath)
        XCTAssertEqual(d.files.count, 2)
        XCTAssertTrue(d.tensorNames.contains("transformer_blocks.1.attn1.to_q.weight"))
        XCTAssertEqual(try d.tensor("transformer_blocks.1.attn1.to_q.weight").type, .f16)
    }

    func testShardIndexMustMatchShards() throws {
        try SafetensorsBuilder.write(SafetensorsBuilder.f32([("a", [1], [1]), ("b", [1], [2])]), to: dir + "/m-1.safetensors")
        let index = #"{"metadata":{},"weight_map":{"a":"m-1.safetensors","c":"m-1.safetensors"}}"#
        try Data(index.utf8).write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
        XCTAssertThrowsError(try SafetensorsDirectory(path: dir)) { e in
            guard case .badIndex = e as? SafetensorsError else { return XCTFail("\(e)") }
        }
    }
}
