import Foundation
import XCTest

/// Runs the built `sana` executable as a user would.
final class CLITests: XCTestCase {
    static var sanaURL: URL {
        // On Linux the test bundle URL is the build products directory itself; on Darwin, the .xctest inside it.
        let bundle = Bundle(for: CLITests.self).bundleURL
        let products = bundle.pathExtension == "xctest" ? bundle.deletingLastPathComponent() : bundle
        return products.appendingPathComponent("sana")
    }

    func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) { try Self.run(args) }

    /// Runs `sana args…`; shared with the other CLI test classes.
    static func run(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = Self.sanaURL
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    func testInfoNamesStorageTypes() throws {
        let r = try run(["info"])
        XCTAssertEqual(r.status, 0, r.err)
        XCTAssertTrue(r.out.contains("int4"), r.out)
    }
}
