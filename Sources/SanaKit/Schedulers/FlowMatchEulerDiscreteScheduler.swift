// FlowMatchEulerDiscreteScheduler with a static shift.
// Follows diffusers/schedulers/scheduling_flow_match_euler_discrete.py (__init__, set_timesteps, step) for the
// branches SanaPipeline can use: no dynamic shifting (it passes no `mu`), no inverted or terminal-stretched sigmas,
// no Karras / exponential / beta sigmas, deterministic sampling. Note that diffusers applies the shift twice: once to
// the training sigmas in __init__ (whose extremes bound the schedule) and again in set_timesteps; reproduced here.
import Foundation

public struct FlowMatchEulerDiscreteScheduler: Scheduler {
    /// scheduler_config.json. Defaults are diffusers'; keys that only matter for rejected branches are not read.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var shift = 1.0
        public var useDynamicShifting = false
        public var invertSigmas = false
        public var shiftTerminal: Double? = nil
        public var useKarrasSigmas = false
        public var useExponentialSigmas = false
        public var useBetaSigmas = false
        public var stochasticSampling = false

        enum CodingKeys: String, CodingKey {
            case numTrainTimesteps = "num_train_timesteps", shift, useDynamicShifting = "use_dynamic_shifting"
            case invertSigmas = "invert_sigmas", shiftTerminal = "shift_terminal", useKarrasSigmas = "use_karras_sigmas"
            case useExponentialSigmas = "use_exponential_sigmas", useBetaSigmas = "use_beta_sigmas"
            case stochasticSampling = "stochastic_sampling"
        }

        public init(numTrainTimesteps: Int = 1000, shift: Double) {
            self.numTrainTimesteps = numTrainTimesteps
            self.shift = shift
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
            numTrainTimesteps = try get(.numTrainTimesteps, numTrainTimesteps)
            shift = try get(.shift, shift)
            useDynamicShifting = try get(.useDynamicShifting, useDynamicShifting)
            invertSigmas = try get(.invertSigmas, invertSigmas)
            shiftTerminal = try c.decodeIfPresent(Double.self, forKey: .shiftTerminal)
            useKarrasSigmas = try get(.useKarrasSigmas, useKarrasSigmas)
            useExponentialSigmas = try get(.useExponentialSigmas, useExponentialSigmas)
            useBetaSigmas = try get(.useBetaSigmas, useBetaSigmas)
            stochasticSampling = try get(.stochasticSampling, stochasticSampling)
        }

        func validate() throws {
            let s = "FlowMatchEulerDiscreteScheduler"
            try requireConfig(numTrainTimesteps >= 1, s, "num_train_timesteps", numTrainTimesteps, supported: ">= 1")
            try requireConfig(shift.isFinite && shift > 0, s, "shift", shift, supported: "a positive number")
            for (key, on) in [("use_dynamic_shifting", useDynamicShifting), ("invert_sigmas", invertSigmas),
                              ("use_karras_sigmas", useKarrasSigmas), ("use_exponential_sigmas", useExponentialSigmas),
                              ("use_beta_sigmas", useBetaSigmas), ("stochastic_sampling", stochasticSampling)] {
                try requireConfig(!on, s, key, on, supported: "false")
            }
            // diffusers tests `if shift_terminal:`, so 0 counts as off.
            try requireConfig(shiftTerminal == nil || shiftTerminal == 0, s, "shift_terminal", shiftTerminal ?? 0, supported: "null")
        }
    }

    public let config: Config
    public var name: String { SchedulerKind.euler.rawValue }
    public private(set) var timesteps: [Float] = []
    public private(set) var sigmas: [Float] = []
    public var initNoiseSigma: Float { 1 }
    private var stepIndex = 0
    /// The shifted training sigmas' extremes (diffusers' sigma_max, sigma_min), float32 values.
    private let sigmaMax: Float, sigmaMin: Float

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        // __init__: timesteps T…1 (exact in float32), σ = t/T and σ ← s·σ/(1 + (s − 1)·σ), each a float32 torch op.
        let t = Float(config.numTrainTimesteps), s = Float(config.shift), sm1 = Float(config.shift - 1)
        func trainSigma(_ step: Float) -> Float {
            let sigma = step / t
            return s * sigma / (1 + sm1 * sigma)
        }
        sigmaMax = trainSigma(t)
        sigmaMin = trainSigma(1)
    }

    public mutating func setTimesteps(_ steps: Int) throws {
        guard steps >= 1 else { throw SchedulerError.invalidSteps(steps) }
        // float64 (NumPy): linspace(σmax·T, σmin·T, n) / T, shifted again; then float32 (torch).
        let t = Double(config.numTrainTimesteps), shift = config.shift
        let ts = numpyLinspace(Double(sigmaMax) * t, Double(sigmaMin) * t, steps)
        let sigmas32 = ts.map { step -> Float in
            let sigma = step / t
            return Float(shift * sigma / (1 + (shift - 1) * sigma))
        }
        // timesteps = sigmas · T as a float32 product.
        timesteps = sigmas32.map { $0 * Float(config.numTrainTimesteps) }
        sigmas = sigmas32 + [0]
        if timesteps.count > 1, timesteps[1] == timesteps[0] { throw SchedulerError.duplicateFirstTimestep(steps: steps) }
        stepIndex = 0
    }

    public mutating func step(modelOutput: Tensor, index: Int, sample: Tensor) throws -> Tensor {
        try checkStep(index: index, expected: stepIndex, modelOutput: modelOutput, sample: sample)
        // prev = sample + (σ_next − σ)·v
        let dt = sigmas[index + 1] - sigmas[index]
        stepIndex += 1
        return Tensor(shape: sample.shape, data: zip(sample.data, modelOutput.data).map { x, v in x + dt * v })
    }
}
