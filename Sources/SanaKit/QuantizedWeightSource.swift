import SanaFormat

/// A weight source that re-packs another source's matrix weights in a quantized (or other) storage type on read:
/// the in-memory stand-in for a quantized bundle in tests and quick experiments. Which tensors are re-packed is a
/// predicate; the default takes the weights of linear layers and dense convolutions (names ending in ".weight",
/// rank ≥ 2) and leaves depthwise kernels ([C, 1, k, k], k > 1), norms, biases and tables in their stored type,
/// mirroring the converter's policy of quantizing only the large matrix products; k×k convolution weights get the
/// converter's layout (QuantizationPolicy.layout: tap-major when the input channels fill whole groups).
public struct QuantizedWeightSource: WeightSource {
    public let base: WeightSource
    public let type: StorageType
    public let shouldRepack: @Sendable (String, [Int]) -> Bool

    public init(_ base: WeightSource, as type: StorageType,
                where shouldRepack: @escaping @Sendable (String, [Int]) -> Bool = QuantizedWeightSource.matrixWeights) {
        self.base = base
        self.type = type
        self.shouldRepack = shouldRepack
    }

    /// The default policy: linear and dense-conv weights.
    public static let matrixWeights: @Sendable (String, [Int]) -> Bool = { name, shape in
        let depthwise = shape.count == 4 && shape[1] == 1 && shape[2] * shape[3] > 1
        return name.hasSuffix(".weight") && shape.count >= 2 && !depthwise
    }

    public var tensorNames: Set<String> { base.tensorNames }

    public func tensor(_ name: String) throws -> StoredTensor {
        let t = try base.tensor(name)
        guard shouldRepack(name, t.shape), t.type != type else { return t }
        return StoredTensor.pack(name: name, shape: t.shape, values: t.floats(), as: type,
                                 layout: QuantizationPolicy.layout(shape: t.shape, type: type))
    }
}

extension QuantizedWeightSource: TensorShapeLookup {
    public func shape(of name: String) -> [Int]? { (base as? TensorShapeLookup)?.shape(of: name) }
}

/// A weight source holding what `sana convert` would store for one component: each tensor re-packed in the type
/// and layout the quantization policy gives it (the in-memory stand-in for a converted bundle, e.g. for benchmarks
/// from a diffusers folder).
public struct PolicyWeightSource: WeightSource {
    public let base: WeightSource
    public let component: String
    public let policy: QuantizationPolicy

    public init(_ base: WeightSource, component: String, policy: QuantizationPolicy) {
        self.base = base
        self.component = component
        self.policy = policy
    }

    public var tensorNames: Set<String> { base.tensorNames }

    public func tensor(_ name: String) throws -> StoredTensor {
        let t = try base.tensor(name)
        let type = policy.decide(component: component, name: name, shape: t.shape).1
        let layout = QuantizationPolicy.layout(shape: t.shape, type: type)
        guard type != t.type || layout != t.layout else { return t }
        return StoredTensor.pack(name: name, shape: t.shape, values: t.floats(), as: type, layout: layout)
    }
}
