/// Errors raised while building or running a model: every case names what was wrong.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(tensor: String, expected: [Int], actual: [Int])
    case missingTensors(component: String, names: [String])
    case unexpectedTensors(component: String, names: [String])
    case unsupportedConfig(component: String, reason: String)
    case badInput(String)

    public var description: String {
        switch self {
        case let .shapeMismatch(t, e, a): return "tensor '\(t)': expected shape \(e), found \(a)"
        case let .missingTensors(c, n): return "\(c): missing tensors: \(n.prefix(8).joined(separator: ", "))\(n.count > 8 ? " …" : "")"
        case let .unexpectedTensors(c, n): return "\(c): unexpected tensors: \(n.prefix(8).joined(separator: ", "))\(n.count > 8 ? " …" : "")"
        case let .unsupportedConfig(c, r): return "\(c): unsupported configuration: \(r)"
        case let .badInput(r): return r
        }
    }
}

extension ModelError {
    /// Strict loading: `present` must hold exactly `expected`. Throws `missingTensors` first (a truncated or foreign
    /// checkpoint), then `unexpectedTensors` (a different configuration), each naming the tensors, sorted.
    static func checkExactTensorNames(expected: Set<String>, present: Set<String>, component: String) throws {
        let missing = expected.subtracting(present), extra = present.subtracting(expected)
        guard missing.isEmpty else { throw ModelError.missingTensors(component: component, names: missing.sorted()) }
        guard extra.isEmpty else { throw ModelError.unexpectedTensors(component: component, names: extra.sorted()) }
    }
}
