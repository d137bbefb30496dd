// The rows of Gemma-2's token embedding (embed_tokens.weight, [vocab, hidden]) for the ids of a prompt, read without
// materializing the 256k-row table: safetensors sources are read row by row from the file; other sources (in-memory,
// and bundles until they offer row-chunk reads) go through `EmbeddingRowReader`, the one place to switch.
import Foundation
import SanaFormat

/// Reads selected rows of a [rows, cols] tensor as float32.
public protocol EmbeddingRowReader: Sendable {
    /// Rows `indices` (each in 0..<rows) as [indices.count, cols], in the given order, and the storage type they
    /// were read from (the embedding scale is rounded to it).
    func rows(_ indices: [Int]) throws -> (values: [Float], storage: StorageType)
}

/// Any WeightSource: loads the tensor and unpacks only the requested rows (the whole tensor is resident meanwhile).
struct WholeTensorRowReader: EmbeddingRowReader {
    let source: WeightSource
    let name: String
    let shape: [Int]

    func rows(_ indices: [Int]) throws -> (values: [Float], storage: StorageType) {
        let t = try source.checkedTensor(name, shape: shape)
        var out: [Float] = []
        out.reserveCapacity(indices.count * t.cols)
        for i in indices { out += t.unpackRows(i, 1) }
        return (out, t.type)
    }
}

/// A float tensor in a safetensors file: each row is read at its offset, so memory stays at the rows asked for.
struct SafetensorsRowReader: EmbeddingRowReader {
    let path: String
    let entry: SafetensorsFile.Entry
    let name: String

    func rows(_ indices: [Int]) throws -> (values: [Float], storage: StorageType) {
        let cols = entry.shape.dropFirst().reduce(1, *)
        let type: StorageType
        switch entry.dtype {
        case "F32": type = .f32
        case "F16": type = .f16
        case "BF16": type = .bf16
        default: throw ModelError.badInput("tensor '\(name)': dtype \(entry.dtype) cannot be read by rows")
        }
        let rowBytes = (entry.end - entry.begin) / max(entry.shape[0], 1)
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ModelError.badInput("\(path): cannot open") }
        defer { try? handle.close() }
        var out: [Float] = []
        out.reserveCapacity(indices.count * cols)
        for i in indices {
            try handle.seek(toOffset: UInt64(entry.begin + i * rowBytes))
            guard let data = try handle.read(upToCount: rowBytes), data.count == rowBytes else {
                throw ModelError.badInput("tensor '\(name)': row \(i) is truncated in \(path)")
            }
            out += StoredTensor(name: name, shape: [1, cols], type: type, bytes: [UInt8](data)).floats()
        }
        return (out, type)
    }
}

extension Gemma2Model {
    /// The row reader for embed_tokens.weight of `source` ([vocab, hidden], checked here).
    public static func embeddingReader(_ source: WeightSource, name: String, shape: [Int]) throws -> EmbeddingRowReader {
        var file: SafetensorsFile?
        if let f = source as? SafetensorsFile { file = f }
        if let dir = source as? SafetensorsDirectory { file = dir.files.first { $0.entries[name] != nil } }
        if let file, let entry = file.entries[name], ["F32", "F16", "BF16"].contains(entry.dtype) {
            guard entry.shape == shape else { throw ModelError.shapeMismatch(tensor: name, expected: shape, actual: entry.shape) }
            return SafetensorsRowReader(path: file.path, entry: entry, name: name)
        }
        return WholeTensorRowReader(source: source, name: name, shape: shape)
    }
}
