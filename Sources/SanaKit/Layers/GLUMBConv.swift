import SanaFormat

// Follows diffusers/models/transformers/sana_transformer.py `GLUMBConv` (shared by the Sana DiT feed-forward and
// the DC-AE EfficientViT blocks): 1×1 conv → SiLU → 3×3 depthwise conv → GLU gate → 1×1 conv (no bias)
// → optional channel RMSNorm → optional residual.

/// GLUMBConv on a channels-last feature map [B, H, W, C].
public struct GLUMBConv: Sendable {
    public let convInverted: Linear      // conv_inverted: [2·hidden, in, 1, 1] + bias
    public let convDepthWeight: [Float]  // conv_depth.weight: [2·hidden, 1, 3, 3]
    public let convDepthBias: [Float]    // conv_depth.bias: [2·hidden]
    public let convPoint: Linear         // conv_point: [out, hidden, 1, 1], no bias
    public let normWeight: [Float]?      // norm.weight [out] (norm_type "rms_norm")
    public let normBias: [Float]?        // norm.bias [out]
    public let residualConnection: Bool

    /// Loads the weights under `prefix` ("transformer_blocks.3.ff", "decoder.up_blocks.0.1.conv_out", …).
    public init(_ source: WeightSource, _ prefix: String, inChannels: Int, outChannels: Int, expandRatio: Double,
                rmsNorm: Bool, residualConnection: Bool) throws {
        let hidden = Int(expandRatio * Double(inChannels))
        convInverted = try Linear(source, prefix + ".conv_inverted", shape: [hidden * 2, inChannels, 1, 1])
        convDepthWeight = try source.floats(prefix + ".conv_depth.weight", shape: [hidden * 2, 1, 3, 3])
        convDepthBias = try source.floats(prefix + ".conv_depth.bias", shape: [hidden * 2])
        convPoint = try Linear(source, prefix + ".conv_point", shape: [outChannels, hidden, 1, 1], bias: false)
        if rmsNorm {
            normWeight = try source.floats(prefix + ".norm.weight", shape: [outChannels])
            normBias = try source.floats(prefix + ".norm.bias", shape: [outChannels])
        } else {
            normWeight = nil
            normBias = nil
        }
        self.residualConnection = residualConnection
    }

    /// x: [B, H, W, in] → [B, H, W, out].
    public func callAsFunction(_ x: Tensor) -> Tensor {
        var h = Activation.silu.apply(convInverted.apply(x))
        h = h.depthwiseConv2d(weight: convDepthWeight, bias: convDepthBias, kernel: 3)
        let parts = h.chunkedLast(2)  // torch.chunk(2, dim=1) on NCHW = last-dim chunk on NHWC
        h = convPoint.apply(parts[0] * Activation.silu.apply(parts[1]))
        if let normWeight { h = h.rmsNorm(weight: normWeight, bias: normBias, eps: 1e-5) }
        return residualConnection ? h + x : h
    }
}
