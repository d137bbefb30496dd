// The scheduler protocol shared by the sampling loop and its two implementations (diffusers'
// DPMSolverMultistepScheduler with flow sigmas, i.e. Sana's "Flow-DPM-Solver", and FlowMatchEulerDiscreteScheduler).
import Foundation

/// A diffusion sampler: a fixed schedule of timesteps and a rule that moves the sample from one step to the next.
/// Implementations reproduce diffusers' tables (computed in float64 like NumPy, stored as float32 like torch) and
/// its float32 step arithmetic, operation by operation.
public protocol Scheduler: Sendable {
    /// The name used on the command line and in PNG metadata ("dpm-solver", "euler").
    var name: String { get }
    /// The timestep of each step, as the model receives it before `timestep_scale` (diffusers' `scheduler.timesteps`;
    /// integers for the DPM-Solver, fractional for Euler). Empty until `setTimesteps`.
    var timesteps: [Float] { get }
    /// The noise level of each step plus the final one (count + 1 values; diffusers' `scheduler.sigmas`).
    var sigmas: [Float] { get }
    /// Standard deviation of the initial noise (1 for flow models, which SanaPipeline does not rescale).
    var initNoiseSigma: Float { get }
    /// Prepares the schedule for `steps` steps and resets the multistep history.
    mutating func setTimesteps(_ steps: Int) throws
    /// One step: from `sample` at step `index` (0-based, called in order) and the model's output there, the sample at
    /// step `index + 1`. Shapes must agree; the result has the sample's shape.
    mutating func step(modelOutput: Tensor, index: Int, sample: Tensor) throws -> Tensor
}

extension Scheduler {
    /// diffusers' `scale_model_input` is the identity for both flow schedulers.
    public func scaleModelInput(_ sample: Tensor, index: Int) -> Tensor { sample }

    /// Steps must follow the schedule in order (the multistep history depends on it), on same-shaped tensors.
    func checkStep(index: Int, expected: Int, modelOutput: Tensor, sample: Tensor) throws {
        guard !timesteps.isEmpty, index == expected, index < timesteps.count else {
            throw SchedulerError.outOfOrder(expected: expected, got: index)
        }
        guard modelOutput.shape == sample.shape else {
            throw SchedulerError.shapeMismatch(modelOutput: modelOutput.shape, sample: sample.shape)
        }
    }
}

/// Errors from scheduler configuration and use; every case says what was wrong.
public enum SchedulerError: Error, CustomStringConvertible, Equatable {
    case unknownScheduler(String)
    case unsupportedConfig(scheduler: String, key: String, value: String, supported: String)
    case badConfig(String)
    case invalidSteps(Int)
    case duplicateFirstTimestep(steps: Int)
    case outOfOrder(expected: Int, got: Int)
    case shapeMismatch(modelOutput: [Int], sample: [Int])

    public var description: String {
        switch self {
        case let .unknownScheduler(n):
            return "unknown scheduler '\(n)' (known: \(SchedulerKind.allCases.map(\.rawValue).joined(separator: ", ")))"
        case let .unsupportedConfig(s, k, v, sup): return "\(s): unsupported \(k) = \(v) (supported: \(sup))"
        case let .badConfig(r): return "scheduler config: \(r)"
        case let .invalidSteps(n): return "number of steps must be at least 1, got \(n)"
        case let .duplicateFirstTimestep(n):
            return "\(n) steps give a repeated first timestep; diffusers cannot run this schedule either (use fewer steps)"
        case let .outOfOrder(e, g): return "scheduler steps must be taken in order: expected step \(e), got \(g)"
        case let .shapeMismatch(m, s): return "scheduler step: model output shape \(m) differs from sample shape \(s)"
        }
    }
}

/// The schedulers this runtime implements, by command-line name.
public enum SchedulerKind: String, CaseIterable, Sendable {
    /// DPMSolverMultistepScheduler with flow sigmas (Sana's "Flow-DPM-Solver").
    case dpmSolver = "dpm-solver"
    /// FlowMatchEulerDiscreteScheduler.
    case euler = "euler"

    /// Parses a command-line name or a diffusers class name (case-insensitive).
    public init(name: String) throws {
        switch name.lowercased() {
        case "dpm-solver", "flow-dpm-solver", "dpm", "dpmsolvermultistepscheduler": self = .dpmSolver
        case "euler", "flow-euler", "flowmatcheulerdiscretescheduler": self = .euler
        default: throw SchedulerError.unknownScheduler(name)
        }
    }

    /// The diffusers class name.
    public var className: String {
        switch self {
        case .dpmSolver: return "DPMSolverMultistepScheduler"
        case .euler: return "FlowMatchEulerDiscreteScheduler"
        }
    }
}

public enum SchedulerFactory {
    /// A scheduler from the content of diffusers' scheduler_config.json. With `override`, the named scheduler is
    /// built instead, carrying over the training length and the flow shift of the stored configuration.
    public static func make(configJSON: Data, override: SchedulerKind? = nil) throws -> any Scheduler {
        guard let object = try? JSONSerialization.jsonObject(with: sanitizedJSON(configJSON)) as? [String: Any],
              let className = object["_class_name"] as? String
        else { throw SchedulerError.badConfig("not a JSON object with a \"_class_name\"") }
        let stored = try SchedulerKind(name: className)
        let decoder = JSONDecoder()
        let json = sanitizedJSON(configJSON)
        switch (stored, override ?? stored) {
        case (.dpmSolver, .dpmSolver):
            return try DPMSolverMultistepScheduler(config: decode(DPMSolverMultistepScheduler.Config.self, json, decoder))
        case (.euler, .euler):
            return try FlowMatchEulerDiscreteScheduler(config: decode(FlowMatchEulerDiscreteScheduler.Config.self, json, decoder))
        case (.dpmSolver, .euler):
            let dpm = try decode(DPMSolverMultistepScheduler.Config.self, json, decoder)
            return try FlowMatchEulerDiscreteScheduler(config: .init(numTrainTimesteps: dpm.numTrainTimesteps, shift: dpm.flowShift))
        case (.euler, .dpmSolver):
            let euler = try decode(FlowMatchEulerDiscreteScheduler.Config.self, json, decoder)
            return try DPMSolverMultistepScheduler(config: .init(numTrainTimesteps: euler.numTrainTimesteps, flowShift: euler.shift))
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ json: Data, _ decoder: JSONDecoder) throws -> T {
        do { return try decoder.decode(type, from: json) } catch let e as SchedulerError { throw e } catch {
            throw SchedulerError.badConfig("\(error)")
        }
    }

    /// Python's json writes the non-standard tokens Infinity, -Infinity and NaN (diffusers' DPM-Solver config has
    /// "lambda_min_clipped": -Infinity). Outside strings they become null: only fields this runtime ignores hold them.
    static func sanitizedJSON(_ data: Data) -> Data {
        let bytes = [UInt8](data)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0, inString = false
        func matches(_ word: String, at k: Int) -> Bool {
            let w = Array(word.utf8)
            return k + w.count <= bytes.count && Array(bytes[k ..< k + w.count]) == w
        }
        while i < bytes.count {
            let b = bytes[i]
            if inString {
                out.append(b)
                if b == UInt8(ascii: "\\"), i + 1 < bytes.count { out.append(bytes[i + 1]); i += 2; continue }
                if b == UInt8(ascii: "\"") { inString = false }
                i += 1
            } else if b == UInt8(ascii: "\"") {
                inString = true
                out.append(b)
                i += 1
            } else if let word = ["-Infinity", "Infinity", "NaN"].first(where: { matches($0, at: i) }) {
                out += Array("null".utf8)
                i += word.utf8.count
            } else {
                out.append(b)
                i += 1
            }
        }
        return Data(out)
    }
}

/// numpy.linspace(start, stop, num) in float64, operation for operation: i·step + start with
/// step = (stop − start)/(num − 1), and the last value set to `stop` exactly.
func numpyLinspace(_ start: Double, _ stop: Double, _ num: Int) -> [Double] {
    precondition(num >= 0, "numpyLinspace: negative count")
    let delta = stop - start
    let div = num - 1
    if div <= 0 { return (0 ..< num).map { Double($0) * delta + start } }
    let step = delta / Double(div)
    var y: [Double]
    if step == 0 {
        y = (0 ..< num).map { Double($0) / Double(div) * delta + start }
    } else {
        y = (0 ..< num).map { Double($0) * step + start }
    }
    y[num - 1] = stop
    return y
}

/// Throws `unsupportedConfig` unless `ok`.
func requireConfig(_ ok: Bool, _ scheduler: String, _ key: String, _ value: Any, supported: String) throws {
    if !ok { throw SchedulerError.unsupportedConfig(scheduler: scheduler, key: key, value: "\(value)", supported: supported) }
}
