import Foundation
import SanaFormat

// Follows diffusers/models/embeddings.py `get_timestep_embedding` / `Timesteps` (sinusoidal projection) and
// `TimestepEmbedding` (linear_1 → SiLU → linear_2), as the Sana DiT uses them: 256 channels, flip_sin_to_cos=True,
// downscale_freq_shift=0, max_period 10000.

/// `Timesteps(num_channels, flip_sin_to_cos: true, downscale_freq_shift: 0)`: t [B] → [B, channels] as [cos | sin].
/// Every step is float32 in the reference's order (exponent, exp, t·freq) so large t (up to 1000) rounds alike.
func sinusoidalTimestepEmbedding(_ t: [Float], channels: Int = 256, maxPeriod: Double = 10000) -> Tensor {
    let half = channels / 2
    let logPeriod = Float(-log(maxPeriod))
    let freqs = (0 ..< half).map { expf(logPeriod * Float($0) / Float(half)) }
    var out = [Float](repeating: 0, count: t.count * channels)  // [B, channels]; odd channels keep a zero pad
    for (b, tb) in t.enumerated() {
        for i in 0 ..< half {
            let arg = tb * freqs[i]
            out[b * channels + i] = cosf(arg)         // flip_sin_to_cos: cos first
            out[b * channels + half + i] = sinf(arg)
        }
    }
    return Tensor(shape: [t.count, channels], data: out)
}

/// `TimestepEmbedding(in_channels: 256, time_embed_dim: C)` with SiLU.
public struct TimestepEmbedding: Sendable {
    public let linear1: Linear  // <prefix>.linear_1: [C, 256] + bias
    public let linear2: Linear  // <prefix>.linear_2: [C, C] + bias

    public init(_ source: WeightSource, _ prefix: String, inChannels: Int = 256, dim: Int) throws {
        linear1 = try Linear(source, prefix + ".linear_1", shape: [dim, inChannels])
        linear2 = try Linear(source, prefix + ".linear_2", shape: [dim, dim])
    }

    static func tensorShapes(_ prefix: String, inChannels: Int = 256, dim: Int) -> [TensorShape] {
        linearShapes(prefix + ".linear_1", [dim, inChannels]) + linearShapes(prefix + ".linear_2", [dim, dim])
    }

    /// [B, 256] → [B, C].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        linear2.apply(Activation.silu.apply(linear1.apply(x)))
    }
}
