import Foundation
import SanaFormat

// Follows diffusers/models/embeddings.py `PatchEmbed` (flatten=True, no layer norm, bias=True) and
// `get_2d_sincos_pos_embed` / `get_1d_sincos_pos_embed_from_grid`, as SanaTransformer2DModel builds it:
// pos_embed_type "sincos" when interpolation_scale is set, none otherwise; no pos_embed_max_size.

/// p×p stride-p convolution of the NCHW latent into channels-last tokens [B, H/p · W/p, C], plus the sin-cos
/// position embedding when configured.
public struct PatchEmbed: Sendable {
    public let proj: Linear  // patch_embed.proj: [C, in_channels, p, p] + bias (matrix [C, in·p·p])
    public let patchSize: Int
    /// sample_size / patch_size: the grid the position embedding is defined on.
    public let baseSize: Int
    public let interpolationScale: Double?

    public init(_ source: WeightSource, _ prefix: String, config: SanaTransformerConfig) throws {
        let p = config.patchSize
        proj = try Linear(source, prefix + ".proj", shape: [config.innerDim, config.inChannels, p, p])
        patchSize = p
        baseSize = config.sampleSize / p
        interpolationScale = config.interpolationScale
    }

    static func tensorShapes(_ prefix: String, config c: SanaTransformerConfig) -> [TensorShape] {
        linearShapes(prefix + ".proj", [c.innerDim, c.inChannels, c.patchSize, c.patchSize])
    }

    /// latent [B, Cin, H, W] (reference NCHW) → tokens [B, H/p · W/p, C], row-major over (h, w) like flatten(2).
    public func callAsFunction(_ latent: Tensor) -> Tensor {
        let (b, cin, h, w) = (latent.shape[0], latent.shape[1], latent.shape[2], latent.shape[3])
        let p = patchSize, hp = h / p, wp = w / p
        // [B, Cin, H', p, W', p] → permute (0, 2, 4, 1, 3, 5) → [B, H', W', Cin, p, p]: each token's patch in the
        // conv weight's (cin, ky, kx) order, so the stride-p conv is one matrix product. This is also the one
        // NCHW → channels-last permute at the model boundary.
        let patches = latent.reshaped([b, cin, hp, p, wp, p]).permuted([0, 2, 4, 1, 3, 5])
            .reshaped([b, hp * wp, cin * p * p])
        var tokens = proj.apply(patches)  // [B, H'·W', C]
        if let interpolationScale {
            let pos = sincosPositionEmbedding(dim: tokens.lastDim, height: hp, width: wp, baseSize: baseSize,
                                              interpolationScale: interpolationScale)  // [H'·W', C]
            let n = hp * wp * tokens.lastDim
            tokens.data.withUnsafeMutableBufferPointer { t in
                for bi in 0 ..< b { for i in 0 ..< n { t[bi * n + i] += pos[i] } }
            }
        }
        return tokens
    }
}

/// `get_2d_sincos_pos_embed(dim, (height, width), base_size, interpolation_scale)` flattened to [height·width, dim].
/// Token t = i·width + j (row i, column j). The reference's meshgrid("xy") puts the column coordinate in the first
/// half of the channels and the row coordinate in the second; each half is [sin | cos] of pos·ω_k,
/// ω_k = 10000^(−k/(dim/4)), computed in float64 (grid positions in float32) as the reference does.
func sincosPositionEmbedding(dim: Int, height: Int, width: Int, baseSize: Int, interpolationScale: Double) -> [Float] {
    let quarter = dim / 4
    let omega = (0 ..< quarter).map { 1 / pow(10000.0, Double($0) / (Double(dim) / 4)) }
    // grid positions: arange(n) / (n / base_size) / interpolation_scale, in float32.
    func grid(_ n: Int) -> [Double] {
        (0 ..< n).map { Double(Float(Float($0) / Float(Double(n) / Double(baseSize))) / Float(interpolationScale)) }
    }
    let rows = grid(height), cols = grid(width)
    var out = [Float](repeating: 0, count: height * width * dim)
    for i in 0 ..< height {
        for j in 0 ..< width {
            let o = (i * width + j) * dim
            for k in 0 ..< quarter {
                let a = cols[j] * omega[k], r = rows[i] * omega[k]
                out[o + k] = Float(sin(a))
                out[o + quarter + k] = Float(cos(a))
                out[o + 2 * quarter + k] = Float(sin(r))
                out[o + 3 * quarter + k] = Float(cos(r))
            }
        }
    }
    return out
}
