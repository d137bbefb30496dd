import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `Decoder`:
//   conv_in (3×3) [+ latent channels repeated (in_shortcut)]
//   up_blocks[n−1] … up_blocks[0]: each [DCUpBlock2d (if not the last stage and the stage has layers)] + layers
//   norm_out (RMSNorm over channels, eps 1e-5, weight + bias) → conv_act → conv_out (3×3 conv, or a pixel-shuffle /
//   interpolate DCUpBlock2d without shortcut when stage 0 has no layers).
// The decoder is kept as a flat list of steps (an EfficientViTBlock is two: its attention, its GLUMBConv), the unit
// that tiled decoding (AutoencoderDC+Tiling.swift) schedules; `DCAEDecoder.layout` describes the list from the config
// alone, so the loader, the memory estimate and the tile planner share one description.

/// Shape of one decoder step: what it is, where its weights live, its channels.
struct DCAEOpShape: Sendable {
    enum Kind: Sendable, Equatable {
        case convIn(shortcutRepeats: Int?)
        case res
        case up(interpolate: Bool, shortcut: Bool)   // DCUpBlock2d: up blocks, and conv_out when stage 0 is empty
        case attention(kernels: [Int], headDim: Int)
        case feedForward
        case normOut
        case convOut
    }
    let kind: Kind
    let prefix: String      // state-dict prefix: "decoder.up_blocks.3.1", …
    let inChannels: Int
    let outChannels: Int
    let stage: AutoencoderDCConfig.Stage?

    var upsamples: Bool { if case .up = kind { return true } else { return false } }
    var isAttention: Bool { if case .attention = kind { return true } else { return false } }

    /// How many pixels of margin (on the step's input grid) make its output exact `m` pixels (output grid) beyond
    /// a region: the radius of its convolutions. A ×2 step (nearest or pixel-shuffle up, then or before a 3×3 conv)
    /// needs ⌈m/2⌉ + 1. The attention's own global part comes from whole-frame statistics, not from the margin.
    func inputMargin(_ m: Int) -> Int {
        switch kind {
        case .convIn, .convOut, .feedForward: return m + 1
        case .res: return m + 2
        case .up: return (m + 1) / 2 + 1
        case let .attention(kernels, _): return m + (kernels.max() ?? 1) / 2
        case .normOut: return m
        }
    }

    /// Approximate multiply-adds per input pixel (the tile planner's cost model).
    var macsPerPixel: Int {
        let (ci, co) = (inChannels, outChannels)
        switch kind {
        case .convIn, .convOut: return 9 * ci * co
        case .res: return 18 * ci * ci
        case let .up(interpolate, _): return interpolate ? 36 * ci * co : 36 * ci * co
        case let .attention(kernels, d):
            let s = 1 + kernels.count
            return 3 * ci * ci + kernels.reduce(0) { $0 + 3 * ci * ($1 * $1 + d) } + 2 * s * ci * d + s * ci * co
        case .feedForward: return 8 * ci * ci + 72 * ci + 4 * ci * co
        case .normOut: return 2 * ci
        }
    }

    /// Approximate multiply-adds per input pixel of the statistics part of an attention step.
    var statisticsMacsPerPixel: Int {
        guard case let .attention(kernels, d) = kind else { return 0 }
        return 3 * inChannels * inChannels + kernels.reduce(0) { $0 + 3 * inChannels * ($1 * $1 + d) } + (1 + kernels.count) * inChannels * d
    }

    /// Approximate largest set of live floats while the step runs on `pixels` input pixels (B·h·w): its input,
    /// its output and its band temporaries (conv im2col bands, DCAEBands), following the code's allocations.
    func liveFloats(pixels p: Int) -> Int {
        let (ci, co) = (inChannels, outChannels)
        /// im2col band and its product for a 3×3 conv with `outPixels` outputs.
        func convBand(_ outPixels: Int, _ cin: Int, _ cout: Int) -> Int {
            let cols = min(Tensor.im2colBandFloats, outPixels * cin * 9)
            return cols + cols / (cin * 9) * cout
        }
        let band = 2 * DCAEBands.bandFloats
        switch kind {
        case .convIn, .convOut: return p * (ci + co) + convBand(p, ci, co)
        case .res: return 3 * p * ci + convBand(p, ci, ci)
        case let .up(interpolate, _):
            return interpolate ? p * ci + 4 * p * co + convBand(4 * p, ci, co)
                               : p * ci + 8 * p * co + convBand(p, ci, 4 * co)
        case let .attention(kernels, _):
            return 2 * p * ci + min(p * (9 * ci + ci * (1 + kernels.count) + co), band)
        case .feedForward: return 2 * p * ci + min(p * (20 * ci + co), band)
        case .normOut: return p * ci
        }
    }
}

enum DCAEDecoderOp: Sendable {
    case convIn(DCAEConv2d, shortcutRepeats: Int?)   // decoder.conv_in: [C_last, latent, 3, 3] + bias
    case block(DCAEBlock)                            // ResBlock or DCUpBlock2d
    case attention(SanaMultiscaleLinearAttention)    // decoder.up_blocks.{i}.{j}.attn
    case feedForward(GLUMBConv)                      // decoder.up_blocks.{i}.{j}.conv_out
    case normOut(weight: [Float], bias: [Float], act: Activation)  // decoder.norm_out.weight/.bias [C0], conv_act
    case convOut(DCAEConv2d)                         // decoder.conv_out: [3, C0, 3, 3] + bias

    /// Runs the step on a whole frame [B, H, W, C] (attention statistics from that frame).
    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case let .convIn(conv, repeats):
            var h = conv(x)
            if let repeats {
                // repeat_interleave over channels: channel c reads latent channel c / repeats.
                let c = h.lastDim, cz = x.lastDim
                h.data.withUnsafeMutableBufferPointer { o in
                    x.data.withUnsafeBufferPointer { s in
                        for r in 0 ..< s.count / cz { for j in 0 ..< c { o[r * c + j] += s[r * cz + j / repeats] } }
                    }
                }
            }
            return h
        case let .block(b): return b(x)
        case let .attention(a): return a(x)
        case let .feedForward(f): return f.appliedInBands(x)
        case let .normOut(weight, bias, act):
            var h = x
            h.rmsNormInPlace(weight: weight, bias: bias, eps: 1e-5)
            h.applyInPlace(act)
            return h
        case let .convOut(conv): return conv(x)
        }
    }

    /// Runs the step on `h` in place: its output replaces h, and h's storage goes back to the BufferPool in effect
    /// (the next step of the same size takes it instead of a fresh, kernel-zeroed map). `statistics`: an attention
    /// step's whole-frame statistics (tiled decoding); nil takes them from h.
    /// Memory: the convolution steps and banded attention take their output from the pool before anything else;
    /// every other step allocates outside it, so it runs with the pool drained — pooled buffers then never add to
    /// a step's live set, and `DCAEOpShape.liveFloats` (the planner's figure) still holds.
    func step(_ h: inout Tensor, statistics: LinearAttentionStatistics? = nil) {
        let pool = BufferPool.current
        var y: Tensor
        switch self {
        case let .normOut(weight, bias, act):
            pool?.drain()
            h.rmsNormInPlace(weight: weight, bias: bias, eps: 1e-5)  // in place: no second full-resolution map
            h.applyInPlace(act)
            return
        case let .feedForward(f):
            pool?.drain()  // GLUMBConv's bands and output are not pooled
            y = f.appliedInBands(h)
        case let .attention(a):
            if let statistics {
                y = a.apply(h, statistics: statistics)
            } else {
                if !a.runsInBands(h) { pool?.drain() }  // the one-band form's output is a Linear's, not pooled
                y = a(h)
            }
        default:
            y = self(h)
        }
        swap(&h, &y)
        pool?.recycle(&y.data)  // the step's input, consumed
    }
}

struct DCAEDecoder: Sendable {
    let ops: [DCAEDecoderOp]
    let shapes: [DCAEOpShape]

    /// The decoder's steps in execution order, from a validated config.
    static func layout(_ config: AutoencoderDCConfig) throws -> [DCAEOpShape] {
        let st = try config.decoderStages()
        let n = st.count, last = st[n - 1].channels
        var shapes = [DCAEOpShape(kind: .convIn(shortcutRepeats: config.decoderInShortcut ? last / config.latentChannels : nil),
                                  prefix: "decoder.conv_in", inChannels: config.latentChannels, outChannels: last, stage: nil)]
        let interpolate = config.upsampleInterpolate
        for i in stride(from: n - 1, through: 0, by: -1) {
            var j = 0
            let prefix = "decoder.up_blocks.\(i)"
            let c = st[i].channels
            if i < n - 1 && st[i].layers > 0 {
                shapes.append(DCAEOpShape(kind: .up(interpolate: interpolate, shortcut: true), prefix: prefix + ".0",
                                          inChannels: st[i + 1].channels, outChannels: c, stage: nil))
                j = 1
            }
            for _ in 0 ..< st[i].layers {
                let p = prefix + ".\(j)"
                switch st[i].blockType {
                case .resBlock:
                    shapes.append(DCAEOpShape(kind: .res, prefix: p, inChannels: c, outChannels: c, stage: st[i]))
                case .efficientViT:
                    shapes.append(DCAEOpShape(kind: .attention(kernels: st[i].qkvMultiscales, headDim: config.attentionHeadDim),
                                              prefix: p + ".attn", inChannels: c, outChannels: c, stage: st[i]))
                    shapes.append(DCAEOpShape(kind: .feedForward, prefix: p + ".conv_out", inChannels: c, outChannels: c,
                                              stage: st[i]))
                }
                j += 1
            }
        }
        let c0 = st[0].layers > 0 ? st[0].channels : st[1].channels
        shapes.append(DCAEOpShape(kind: .normOut, prefix: "decoder.norm_out", inChannels: c0, outChannels: c0, stage: nil))
        shapes.append(st[0].layers > 0
            ? DCAEOpShape(kind: .convOut, prefix: "decoder.conv_out", inChannels: c0, outChannels: config.inChannels, stage: nil)
            : DCAEOpShape(kind: .up(interpolate: interpolate, shortcut: false), prefix: "decoder.conv_out",
                          inChannels: c0, outChannels: config.inChannels, stage: nil))
        return shapes
    }

    init(_ source: WeightSource, config: AutoencoderDCConfig) throws {
        shapes = try Self.layout(config)
        let act = Activation(referenceName: config.decoderConvActFn) ?? .relu  // validated by the config
        ops = try shapes.map { s in
            switch s.kind {
            case let .convIn(repeats):
                return .convIn(try DCAEConv2d(source, s.prefix, in: s.inChannels, out: s.outChannels, kernel: 3),
                               shortcutRepeats: repeats)
            case .res:
                guard let st = s.stage else { preconditionFailure("layout: ResBlock without a stage") }
                return .block(.res(try ResBlock(source, s.prefix, channels: s.inChannels, norm: st.normType,
                                                activation: st.activation)))
            case let .up(interpolate, shortcut):
                return .block(.up(try DCUpBlock2d(source, s.prefix, in: s.inChannels, out: s.outChannels,
                                                  interpolate: interpolate, shortcut: shortcut)))
            case let .attention(kernels, headDim):
                guard let st = s.stage else { preconditionFailure("layout: attention without a stage") }
                return .attention(try SanaMultiscaleLinearAttention(source, s.prefix, channels: s.inChannels,
                                                                    headDim: headDim, kernelSizes: kernels,
                                                                    norm: st.normType))
            case .feedForward:
                return .feedForward(try GLUMBConv(source, s.prefix, inChannels: s.inChannels, outChannels: s.outChannels,
                                                  expandRatio: 4, rmsNorm: true, residualConnection: true))
            case .normOut:
                return .normOut(weight: try source.floats(s.prefix + ".weight", shape: [s.inChannels]),
                                bias: try source.floats(s.prefix + ".bias", shape: [s.inChannels]), act: act)
            case .convOut:
                return .convOut(try DCAEConv2d(source, s.prefix, in: s.inChannels, out: s.outChannels, kernel: 3))
            }
        }
    }

    /// z: [B, h, w, latent] → image [B, h·f, w·f, 3].
    func callAsFunction(_ z: Tensor) -> Tensor { run(z, ops.indices) }

    /// Runs the steps `range` on a whole frame (or a window of it: then `statistics` gives the attention steps'
    /// whole-frame statistics by step index). Activations are recycled through the BufferPool in effect, which is
    /// left empty at the end (the caller's next allocations are not pooled).
    func run(_ x: Tensor, _ range: Range<Int>, statistics: [Int: LinearAttentionStatistics] = [:]) -> Tensor {
        var h = x
        for i in range { ops[i].step(&h, statistics: statistics[i]) }
        BufferPool.current?.drain()
        return h
    }
}
