import Foundation
import SanaFormat
import XCTest

/// Paths of committed fixtures and scratch directories for the format tests.
enum TestPaths {
    static var root: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// Tests/Fixtures/pipelines/<name>, made by
    /// `${PYTHON:-.venv-ref/bin/python} tools/fixtures/make_tiny_pipeline.py` (sana10, sana15).
    static func pipeline(_ name: String) -> String { root + "/Tests/Fixtures/pipelines/" + name }

    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "sana-format-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func copyPipeline(_ name: String, to dir: String) throws -> String {
        let dst = dir + "/" + name
        try FileManager.default.copyItem(atPath: pipeline(name), toPath: dst)
        return dst
    }
}

/// Writes safetensors files byte by byte, including malformed ones.
enum SafetensorsBuilder {
    /// A file from a raw header text and data bytes; `headerLength` overrides the length field.
    static func raw(header: String, data: [UInt8], headerLength: UInt64? = nil) -> [UInt8] {
        let h = Array(header.utf8)
        var out = [UInt8]()
        withUnsafeBytes(of: (headerLength ?? UInt64(h.count)).littleEndian) { out += $0 }
        return out + h + data
    }

    /// A well-formed file of float32 tensors, contiguous in the given order.
    static func f32(_ tensors: [(String, [Int], [Float])]) -> [UInt8] {
        var entries: [String] = []
        var data = [UInt8]()
        for (name, shape, values) in tensors {
            let begin = data.count
            for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { data += $0 } }
            entries.append("\"\(name)\":{\"dtype\":\"F32\",\"shape\":\(shape),\"data_offsets\":[\(begin),\(data.count)]}")
        }
        return raw(header: "{" + entries.joined(separator: ",") + "}", data: data)
    }

    /// A well-formed file of raw tensors (name, dtype, shape, bytes), contiguous in the given order.
    static func tensors(_ tensors: [(String, String, [Int], [UInt8])]) -> [UInt8] {
        var entries: [String] = []
        var data = [UInt8]()
        for (name, dtype, shape, bytes) in tensors {
            entries.append("\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":\(shape),\"data_offsets\":[\(data.count),\(data.count + bytes.count)]}")
            data += bytes
        }
        return raw(header: "{" + entries.joined(separator: ",") + "}", data: data)
    }

    /// Rewrites a safetensors file keeping every tensor's bytes, with names mapped (nil drops) and extra tensors.
    static func rewrite(_ path: String, rename: (String) -> String? = { $0 }, adding extra: [(String, String, [Int], [UInt8])] = []) throws {
        let f = try SafetensorsFile(path: path)
        var list: [(String, String, [Int], [UInt8])] = []
        for (name, e) in f.entries.sorted(by: { $0.value.begin < $1.value.begin }) {
            guard let n = rename(name) else { continue }
            let t = e.dtype == "I64" ? nil : try f.tensor(name)
            list.append((n, e.dtype, e.shape, t?.bytes ?? [UInt8](repeating: 0, count: e.end - e.begin)))
        }
        let bytes = tensors(list + extra)
        try FileManager.default.removeItem(atPath: path)
        try write(bytes, to: path)
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}

/// A deterministic normal-ish generator (sum of uniforms), for synthetic weights.
struct TestRandom {
    var state: UInt64
    mutating func next() -> UInt64 {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return state
    }
    mutating func normal() -> Float {
        var s: Float = 0
        for _ in 0 ..< 4 { s += Float(next() >> 40) / Float(1 << 24) }
        return (s - 2) * 1.7320508
    }
}
