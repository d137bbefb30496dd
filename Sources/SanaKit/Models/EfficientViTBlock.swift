import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `EfficientViTBlock`: multi-scale linear attention with
// residual, then GLUMBConv (expand ratio 4, RMSNorm, residual) from diffusers/models/transformers/sana_transformer.py.

struct EfficientViTBlock: Sendable {
    let attn: SanaMultiscaleLinearAttention  // attn.*
    let convOut: GLUMBConv                   // conv_out.*

    init(_ source: WeightSource, _ prefix: String, channels c: Int, headDim: Int, qkvMultiscales: [Int],
         norm: AutoencoderDCConfig.NormType) throws {
        attn = try SanaMultiscaleLinearAttention(source, prefix + ".attn", channels: c, headDim: headDim,
                                                 kernelSizes: qkvMultiscales, norm: norm)
        convOut = try GLUMBConv(source, prefix + ".conv_out", inChannels: c, outChannels: c, expandRatio: 4,
                                rmsNorm: true, residualConnection: true)
    }

    /// x: [B, H, W, C] → [B, H, W, C].
    func callAsFunction(_ x: Tensor) -> Tensor { convOut.appliedInBands(attn(x)) }
}
