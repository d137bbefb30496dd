import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `Decoder`:
//   conv_in (3×3) [+ latent channels repeated (in_shortcut)]
//   up_blocks[n−1] … up_blocks[0]: each [DCUpBlock2d (if not the last stage and the stage has layers)] + layers
//   norm_out (RMSNorm over channels, eps 1e-5, weight + bias) → conv_act → conv_out (3×3 conv, or a pixel-shuffle /
//   interpolate DCUpBlock2d without shortcut when stage 0 has no layers).

struct DCAEDecoder: Sendable {
    let convIn: DCAEConv2d           // decoder.conv_in: [C_last, latent, 3, 3] + bias
    let inShortcutRepeats: Int?      // C_last / latent when decoder_in_shortcut
    let stages: [[DCAEBlock]]        // decoder.up_blocks.{i}.{j}, in execution order (i = n−1 first)
    let normOutWeight: [Float]       // decoder.norm_out.weight [C0]
    let normOutBias: [Float]         // decoder.norm_out.bias [C0]
    let convAct: Activation
    let convOut: DCAEBlock?          // decoder.conv_out.conv.* (DCUpBlock2d) when stage 0 is empty …
    let convOutConv: DCAEConv2d?     // … else decoder.conv_out: [3, C0, 3, 3] + bias

    init(_ source: WeightSource, config: AutoencoderDCConfig) throws {
        let st = try config.decoderStages()
        let n = st.count, last = st[n - 1].channels
        convIn = try DCAEConv2d(source, "decoder.conv_in", in: config.latentChannels, out: last, kernel: 3)
        inShortcutRepeats = config.decoderInShortcut ? last / config.latentChannels : nil
        var stages: [[DCAEBlock]] = []
        for i in stride(from: n - 1, through: 0, by: -1) {
            var blocks: [DCAEBlock] = []
            let prefix = "decoder.up_blocks.\(i)"
            if i < n - 1 && st[i].layers > 0 {
                blocks.append(.up(try DCUpBlock2d(source, prefix + ".0", in: st[i + 1].channels, out: st[i].channels,
                                                  interpolate: config.upsampleInterpolate, shortcut: true)))
            }
            for _ in 0 ..< st[i].layers {
                blocks.append(try DCAEBlock(source, prefix + ".\(blocks.count)", stage: st[i],
                                            headDim: config.attentionHeadDim))
            }
            stages.append(blocks)
        }
        self.stages = stages
        let c0 = st[0].layers > 0 ? st[0].channels : st[1].channels
        normOutWeight = try source.floats("decoder.norm_out.weight", shape: [c0])
        normOutBias = try source.floats("decoder.norm_out.bias", shape: [c0])
        convAct = Activation(referenceName: config.decoderConvActFn) ?? .relu  // validated by the config
        if st[0].layers > 0 {
            convOutConv = try DCAEConv2d(source, "decoder.conv_out", in: c0, out: config.inChannels, kernel: 3)
            convOut = nil
        } else {
            convOut = .up(try DCUpBlock2d(source, "decoder.conv_out", in: c0, out: config.inChannels,
                                          interpolate: config.upsampleInterpolate, shortcut: false))
            convOutConv = nil
        }
    }

    /// z: [B, h, w, latent] → image [B, h·f, w·f, 3].
    func callAsFunction(_ z: Tensor) -> Tensor {
        var h = convIn(z)
        if let repeats = inShortcutRepeats {
            // repeat_interleave over channels: channel c reads latent channel c / repeats.
            let c = h.lastDim, cz = z.lastDim
            h.data.withUnsafeMutableBufferPointer { o in
                z.data.withUnsafeBufferPointer { s in
                    for r in 0 ..< s.count / cz { for j in 0 ..< c { o[r * c + j] += s[r * cz + j / repeats] } }
                }
            }
        }
        for stage in stages {
            for block in stage { h = block(h) }
        }
        h.rmsNormInPlace(weight: normOutWeight, bias: normOutBias, eps: 1e-5)
        h.applyInPlace(convAct)
        if let convOutConv { return convOutConv(h) }
        return convOut.map { $0(h) } ?? h
    }
}
