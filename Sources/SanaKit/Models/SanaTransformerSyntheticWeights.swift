import SanaFormat

/// Random weights for a full-size model without holding it in memory: each tensor is synthesized when read, so
/// streaming benchmarks see the real shapes, storage types and per-block memory of a released configuration.
/// Weight values do not change speed or memory, so a matrix is 16 random rows (uniform, std 1/√fan_in) packed once
/// and tiled; 1-D tensors are norms (1) or biases (0), tables small random. Deterministic for a seed.
public struct SyntheticWeightSource: WeightSource {
    public let shapes: [String: [Int]]
    public let type: StorageType
    public let seed: UInt64

    /// `type` is used for the tensors `QuantizedWeightSource.matrixWeights` selects; the rest are f32.
    public init(_ tensors: [(name: String, shape: [Int])], type: StorageType, seed: UInt64 = 0) {
        shapes = Dictionary(tensors.map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        self.type = type
        self.seed = seed
    }

    public var tensorNames: Set<String> { Set(shapes.keys) }

    public func tensor(_ name: String) throws -> StoredTensor {
        guard let shape = shapes[name] else { throw ModelError.missingTensors(component: "SyntheticWeightSource", names: [name]) }
        let rows = shape.count >= 2 ? shape[0] : 1
        let cols = shape.count >= 2 ? shape.dropFirst().reduce(1, *) : max(shape.first ?? 1, 1)
        var rng = seed ^ name.utf8.reduce(5381) { ($0 &* 33) &+ UInt64($1) }  // djb2: stable across runs
        func uniform() -> Float {  // splitmix64 → [-1, 1)
            rng &+= 0x9E37_79B9_7F4A_7C15
            var z = rng
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 23) - 1
        }
        if shape.count < 2 {
            let v: Float = name.contains("norm") ? 1 : 0
            return .pack(name: name, shape: shape, values: [Float](repeating: v, count: cols), as: .f32)
        }
        let amplitude = name.contains("scale_shift_table") ? 0.1 : (3 / Float(cols)).squareRoot()
        let storage = QuantizedWeightSource.matrixWeights(name, shape) ? type : .f32
        // One packed block of rows (a single row for float types, `rowBlock` rows for integer types), repeated:
        // packed blocks are independent and equally sized (sana_kernels.h).
        let tile = min(rows, max(storage.rowBlock, 16))
        let packed = StoredTensor.pack(name: name, shape: [tile, cols], values: (0 ..< tile * cols).map { _ in amplitude * uniform() },
                                       as: storage)
        let blockRows = min(storage.rowBlock, tile)
        let blockBytes = packed.bytes.count / (tile / blockRows + (tile % blockRows == 0 ? 0 : 1))
        let total = storage.matrixBytes(rows: rows, cols: cols) ?? 0
        var bytes = [UInt8](repeating: 0, count: total)
        packed.bytes.withUnsafeBytes { src in
            bytes.withUnsafeMutableBytes { dst in
                guard let d = dst.baseAddress, let s = src.baseAddress else { return }
                let tileBlocks = packed.bytes.count / blockBytes
                for b in 0 ..< total / blockBytes {  // block b of the matrix is block (b mod tileBlocks) of the tile
                    (d + b * blockBytes).copyMemory(from: s + (b % tileBlocks) * blockBytes, byteCount: blockBytes)
                }
            }
        }
        return StoredTensor(name: name, shape: shape, type: storage, bytes: bytes)
    }
}
