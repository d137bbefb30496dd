import Foundation
@testable import SanaKit
import XCTest

/// PNG output: pixel conversion as diffusers' postprocess, libpng round trip, text chunks, atomic replacement.
final class PNGWriterTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("png-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Values chosen around the rounding boundaries: numpy rounds half to even after (x·0.5 + 0.5)·255 in float32.
    func testConversionMatchesNumpyToPil() throws {
        // Expected bytes computed with torch/numpy float32: ((x*0.5+0.5).clamp(0,1)*255).round().astype(uint8)
        let xs: [Float] = [-2, -1, -0.5, 0, 0.5, 1, 3, 1.0 / 255 - 1, 2.0 / 255 - 1, 0.003921569, -0.996078431, .nan]
        let want: [UInt8] = [0, 0, 64, 128, 191, 255, 255, 0, 1, 128, 0, 0]
        let image = Tensor(shape: [3, 1, 4], data: xs)
        let rgb = try RGB8Image(decoderOutput: image)
        // planar [3, 1, 4] → interleaved: pixel p, channel c = xs[c*4 + p]
        for c in 0 ..< 3 { for p in 0 ..< 4 { XCTAssertEqual(rgb.pixels[p * 3 + c], want[c * 4 + p], "x = \(xs[c * 4 + p])") } }
        XCTAssertThrowsError(try RGB8Image(decoderOutput: Tensor(zeros: [4, 2, 2])))
    }

    func testRoundTripPixelsAndText() throws {
        let w = 7, h = 5
        let pixels = (0 ..< w * h * 3).map { UInt8(($0 * 37 + 11) % 256) }
        let image = RGB8Image(width: w, height: h, pixels: pixels)
        let path = dir.appendingPathComponent("out.png").path
        let text = [("prompt", "a cat — on a windowsill, 猫"), ("negative_prompt", ""), ("seed", "42"), ("steps", "20"),
                    ("guidance_scale", "4.5"), ("scheduler", "dpm-solver"), ("size", "224x160"), ("model", "tiny.sana")]
        try PNGWriter.write(image, to: path, text: text.map { (key: $0.0, value: $0.1) })
        let (back, chunks) = try PNGWriter.read(path)
        XCTAssertEqual(back, image)
        XCTAssertEqual(chunks.map(\.key), text.map(\.0))
        XCTAssertEqual(chunks.map(\.value), text.map(\.1))
        // No temporary file is left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path), ["out.png"])
    }

    func testFailureLeavesNoFile() throws {
        let image = RGB8Image(width: 1, height: 1, pixels: [1, 2, 3])
        let missing = dir.appendingPathComponent("no/such/dir/out.png").path
        XCTAssertThrowsError(try PNGWriter.write(image, to: missing)) { XCTAssertTrue("\($0)".contains("cannot write PNG"), "\($0)") }
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing))
        let path = dir.appendingPathComponent("bad.png").path
        XCTAssertThrowsError(try PNGWriter.write(image, to: path, text: [(key: "", value: "x")]))
        XCTAssertThrowsError(try PNGWriter.write(image, to: path, text: [(key: "k", value: "a\u{0}b")]))
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        // An existing file is replaced only by a complete one.
        try Data("old".utf8).write(to: URL(fileURLWithPath: path))
        try PNGWriter.write(image, to: path)
        XCTAssertEqual(try PNGWriter.read(path).image, image)
        XCTAssertThrowsError(try PNGWriter.read(dir.appendingPathComponent("nothing.png").path))
        try Data("not a png".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try PNGWriter.read(path)) { XCTAssertTrue("\($0)".contains("libpng"), "\($0)") }
    }
}
