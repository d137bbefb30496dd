// DPMSolverMultistepScheduler with flow sigmas: Sana's "Flow-DPM-Solver".
// Follows diffusers/schedulers/scheduling_dpmsolver_multistep.py (set_timesteps, convert_model_output,
// dpm_solver_first_order_update, multistep_dpm_solver_second_order_update, step), only the branches Sana's configs
// use: algorithm_type dpmsolver++, use_flow_sigmas, prediction_type flow_prediction, solver_order 1 or 2.
// Tables are computed in float64 like NumPy and stored as float32 like torch; the step runs in float32 scalars and
// elementwise float32 operations in diffusers' order. Measured agreement: docs/NUMERICS.md, "Schedulers and noise".
import Foundation

public struct DPMSolverMultistepScheduler: Scheduler {
    /// scheduler_config.json. Defaults are diffusers'; keys that cannot change the result under flow sigmas
    /// (betas, timestep_spacing, steps_offset, lambda_min_clipped, dynamic shifting…) are read and ignored.
    public struct Config: Decodable, Sendable {
        public var numTrainTimesteps = 1000
        public var solverOrder = 2
        public var predictionType = "epsilon"
        public var thresholding = false
        public var algorithmType = "dpmsolver++"
        public var solverType = "midpoint"
        public var lowerOrderFinal = true
        public var eulerAtFinal = false
        public var useKarrasSigmas = false
        public var useExponentialSigmas = false
        public var useBetaSigmas = false
        public var useLuLambdas = false
        public var useFlowSigmas = false
        public var flowShift = 1.0
        public var finalSigmasType = "zero"
        public var varianceType: String? = nil
        public var betaSchedule = "linear"
        public var timestepSpacing = "linspace"

        enum CodingKeys: String, CodingKey {
            case numTrainTimesteps = "num_train_timesteps", solverOrder = "solver_order"
            case predictionType = "prediction_type", thresholding, algorithmType = "algorithm_type"
            case solverType = "solver_type", lowerOrderFinal = "lower_order_final", eulerAtFinal = "euler_at_final"
            case useKarrasSigmas = "use_karras_sigmas", useExponentialSigmas = "use_exponential_sigmas"
            case useBetaSigmas = "use_beta_sigmas", useLuLambdas = "use_lu_lambdas", useFlowSigmas = "use_flow_sigmas"
            case flowShift = "flow_shift", finalSigmasType = "final_sigmas_type", varianceType = "variance_type"
            case betaSchedule = "beta_schedule", timestepSpacing = "timestep_spacing"
        }

        /// Sana's configuration with the given training length and shift.
        public init(numTrainTimesteps: Int = 1000, flowShift: Double) {
            self.numTrainTimesteps = numTrainTimesteps
            self.flowShift = flowShift
            predictionType = "flow_prediction"
            useFlowSigmas = true
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            func get<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T { try c.decodeIfPresent(T.self, forKey: key) ?? fallback }
            numTrainTimesteps = try get(.numTrainTimesteps, numTrainTimesteps)
            solverOrder = try get(.solverOrder, solverOrder)
            predictionType = try get(.predictionType, predictionType)
            thresholding = try get(.thresholding, thresholding)
            algorithmType = try get(.algorithmType, algorithmType)
            solverType = try get(.solverType, solverType)
            lowerOrderFinal = try get(.lowerOrderFinal, lowerOrderFinal)
            eulerAtFinal = try get(.eulerAtFinal, eulerAtFinal)
            useKarrasSigmas = try get(.useKarrasSigmas, useKarrasSigmas)
            useExponentialSigmas = try get(.useExponentialSigmas, useExponentialSigmas)
            useBetaSigmas = try get(.useBetaSigmas, useBetaSigmas)
            useLuLambdas = try get(.useLuLambdas, useLuLambdas)
            useFlowSigmas = try get(.useFlowSigmas, useFlowSigmas)
            flowShift = try get(.flowShift, flowShift)
            finalSigmasType = try get(.finalSigmasType, finalSigmasType)
            varianceType = try c.decodeIfPresent(String.self, forKey: .varianceType)
            betaSchedule = try get(.betaSchedule, betaSchedule)
            timestepSpacing = try get(.timestepSpacing, timestepSpacing)
        }

        /// Rejects every value whose diffusers branch is not implemented here.
        func validate() throws {
            let s = "DPMSolverMultistepScheduler"
            try requireConfig(numTrainTimesteps >= 1, s, "num_train_timesteps", numTrainTimesteps, supported: ">= 1")
            try requireConfig([1, 2].contains(solverOrder), s, "solver_order", solverOrder, supported: "1, 2")
            try requireConfig(predictionType == "flow_prediction", s, "prediction_type", predictionType, supported: "flow_prediction")
            try requireConfig(!thresholding, s, "thresholding", thresholding, supported: "false")
            try requireConfig(algorithmType == "dpmsolver++", s, "algorithm_type", algorithmType, supported: "dpmsolver++")
            // diffusers maps the UniPC / DEIS solver names to midpoint.
            try requireConfig(["midpoint", "heun", "logrho", "bh1", "bh2"].contains(solverType), s, "solver_type", solverType,
                              supported: "midpoint, heun")
            for (key, on) in [("use_karras_sigmas", useKarrasSigmas), ("use_exponential_sigmas", useExponentialSigmas),
                              ("use_beta_sigmas", useBetaSigmas), ("use_lu_lambdas", useLuLambdas)] {
                try requireConfig(!on, s, key, on, supported: "false")
            }
            try requireConfig(useFlowSigmas, s, "use_flow_sigmas", useFlowSigmas, supported: "true")
            try requireConfig(flowShift.isFinite && flowShift > 0, s, "flow_shift", flowShift, supported: "a positive number")
            try requireConfig(finalSigmasType == "zero", s, "final_sigmas_type", finalSigmasType, supported: "zero")
            try requireConfig(varianceType == nil, s, "variance_type", varianceType ?? "null", supported: "null")
            try requireConfig(["linear", "scaled_linear", "squaredcos_cap_v2"].contains(betaSchedule), s, "beta_schedule",
                              betaSchedule, supported: "linear, scaled_linear, squaredcos_cap_v2")
            try requireConfig(["linspace", "leading", "trailing"].contains(timestepSpacing), s, "timestep_spacing",
                              timestepSpacing, supported: "linspace, leading, trailing")
        }
    }

    public let config: Config
    public var name: String { SchedulerKind.dpmSolver.rawValue }
    public private(set) var timesteps: [Float] = []
    public private(set) var sigmas: [Float] = []
    public var initNoiseSigma: Float { 1 }
    private var useHeun: Bool { config.solverType == "heun" }
    /// The data predictions (x0) of the last `solver_order` steps, oldest first (diffusers' model_outputs).
    private var modelOutputs: [Tensor?]
    private var lowerOrderNums = 0
    private var stepIndex = 0

    public init(config: Config) throws {
        try config.validate()
        self.config = config
        modelOutputs = Array(repeating: nil, count: config.solverOrder)
    }

    public mutating func setTimesteps(_ steps: Int) throws {
        guard steps >= 1 else { throw SchedulerError.invalidSteps(steps) }
        // use_flow_sigmas: alphas = linspace(1, 1/T, n + 1), sigma = 1 − alpha, shifted by s·σ/(1 + (s − 1)·σ),
        // reversed, dropping the last (σ = 0); all float64 (NumPy).
        let t = Double(config.numTrainTimesteps), shift = config.flowShift
        let alphas = numpyLinspace(1, 1 / t, steps + 1)
        let shifted = alphas.map { a -> Double in
            let s = 1.0 - a
            return shift * s / (1 + (shift - 1) * s)
        }
        let sigmas64 = Array(shifted.reversed().dropLast())
        // timesteps = σ·T as float64, then torch's .to(int64) truncates toward zero.
        timesteps = sigmas64.map { Float(Int64(($0 * t).rounded(.towardZero))) }
        // final_sigmas_type "zero"; the table is stored as float32.
        sigmas = (sigmas64 + [0]).map { Float($0) }
        // diffusers starts at the second occurrence of a repeated first timestep and then runs off its tables.
        if timesteps.count > 1, timesteps[1] == timesteps[0] { throw SchedulerError.duplicateFirstTimestep(steps: steps) }
        modelOutputs = Array(repeating: nil, count: config.solverOrder)
        lowerOrderNums = 0
        stepIndex = 0
    }

    /// Flow sigmas: α_t = 1 − σ, σ_t = σ, and λ = log α − log σ (float32 scalars, as torch's 0-dim tensors).
    private func alphaSigmaLambda(_ i: Int) -> (alpha: Float, sigma: Float, lambda: Float) {
        let sigma = sigmas[i], alpha = 1 - sigma
        return (alpha, sigma, Foundation.log(alpha) - Foundation.log(sigma))
    }

    public mutating func step(modelOutput: Tensor, index: Int, sample: Tensor) throws -> Tensor {
        try checkStep(index: index, expected: stepIndex, modelOutput: modelOutput, sample: sample)
        let n = timesteps.count
        // final_sigmas_type "zero" always makes the last step first order.
        let lowerOrderFinal = index == n - 1
        // convert_model_output, flow_prediction: x0 = sample − σ_s · v.
        let sigmaS = sigmas[index]
        let x0 = Tensor(shape: sample.shape, data: zip(sample.data, modelOutput.data).map { s, v in s - sigmaS * v })
        for k in 0 ..< config.solverOrder - 1 { modelOutputs[k] = modelOutputs[k + 1] }
        modelOutputs[config.solverOrder - 1] = x0

        let (alphaT, sigmaT, lambdaT) = alphaSigmaLambda(index + 1)
        let (_, sigmaS0, lambdaS0) = alphaSigmaLambda(index)
        let h = lambdaT - lambdaS0
        let ratio = sigmaT / sigmaS0
        let c0 = alphaT * (Foundation.exp(-h) - 1)
        var out = [Float](repeating: 0, count: sample.count)
        if config.solverOrder == 1 || lowerOrderNums < 1 || lowerOrderFinal {
            // dpm_solver_first_order_update (dpmsolver++): (σ_t/σ_s)·x − α_t(e^−h − 1)·x0.
            for i in 0 ..< out.count { out[i] = ratio * sample.data[i] - c0 * x0.data[i] }
        } else {
            // multistep_dpm_solver_second_order_update with m0 = x0 (now), m1 = the previous x0.
            guard let m1 = modelOutputs[config.solverOrder - 2] else { preconditionFailure("DPM-Solver history is empty") }
            let (_, _, lambdaS1) = alphaSigmaLambda(index - 1)
            let h0 = lambdaS0 - lambdaS1
            let r0 = h0 / h
            let invR0 = 1 / r0
            // D1 = (1/r0)·(m0 − m1)
            if useHeun {
                let c1 = alphaT * ((Foundation.exp(-h) - 1) / h + 1)
                for i in 0 ..< out.count {
                    let d1 = invR0 * (x0.data[i] - m1.data[i])
                    out[i] = ratio * sample.data[i] - c0 * x0.data[i] + c1 * d1
                }
            } else {
                let c1 = 0.5 * c0
                for i in 0 ..< out.count {
                    let d1 = invR0 * (x0.data[i] - m1.data[i])
                    out[i] = ratio * sample.data[i] - c0 * x0.data[i] - c1 * d1
                }
            }
        }
        lowerOrderNums = min(lowerOrderNums + 1, config.solverOrder)
        stepIndex += 1
        return Tensor(shape: sample.shape, data: out)
    }
}
