import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `Encoder`:
//   conv_in (3×3 conv, or a DCDownBlock2d without shortcut when stage 0 has no layers)
//   down_blocks[0] … down_blocks[n−1]: each layers + [DCDownBlock2d with shortcut (if not last and has layers)]
//   conv_out (3×3) [+ channel-group average of its input (out_shortcut)].
// The encoder's blocks always use RMSNorm and SiLU.

struct DCAEEncoder: Sendable {
    let convIn: DCAEBlock?          // encoder.conv_in.conv.* (DCDownBlock2d) when stage 0 is empty …
    let convInConv: DCAEConv2d?     // … else encoder.conv_in: [C0, in, 3, 3] + bias
    let stages: [[DCAEBlock]]       // encoder.down_blocks.{i}.{j}
    let convOut: DCAEConv2d         // encoder.conv_out: [latent, C_last, 3, 3] + bias
    let outShortcutGroup: Int?      // C_last / latent when encoder_out_shortcut

    init(_ source: WeightSource, config: AutoencoderDCConfig) throws {
        let st = try config.encoderStages()
        let n = st.count
        let unshuffle = config.downsamplePixelUnshuffle
        if st[0].layers > 0 {
            convInConv = try DCAEConv2d(source, "encoder.conv_in", in: config.inChannels, out: st[0].channels, kernel: 3)
            convIn = nil
        } else {
            convIn = .down(try DCDownBlock2d(source, "encoder.conv_in", in: config.inChannels, out: st[1].channels,
                                             pixelUnshuffle: unshuffle, shortcut: false))
            convInConv = nil
        }
        stages = try (0 ..< n).map { i in
            var blocks: [DCAEBlock] = []
            let prefix = "encoder.down_blocks.\(i)"
            for j in 0 ..< st[i].layers {
                blocks.append(try DCAEBlock(source, prefix + ".\(j)", stage: st[i], headDim: config.attentionHeadDim))
            }
            if i < n - 1 && st[i].layers > 0 {
                blocks.append(.down(try DCDownBlock2d(source, prefix + ".\(st[i].layers)", in: st[i].channels,
                                                      out: st[i + 1].channels, pixelUnshuffle: unshuffle,
                                                      shortcut: true)))
            }
            return blocks
        }
        let last = st[n - 1].channels
        convOut = try DCAEConv2d(source, "encoder.conv_out", in: last, out: config.latentChannels, kernel: 3)
        outShortcutGroup = config.encoderOutShortcut ? last / config.latentChannels : nil
    }

    /// x: [B, H, W, 3] (H, W multiples of the compression ratio) → latent [B, H/f, W/f, latent].
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = convInConv.map { $0(x) } ?? convIn.map { $0(x) } ?? x
        for stage in stages {
            for block in stage { h = block(h) }
        }
        var out = convOut(h)
        if let g = outShortcutGroup { out.addInPlace(h.channelGroupMean(g)) }
        return out
    }
}
