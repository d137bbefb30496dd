import CSanaKernels
import SanaFormat

// Building pieces shared by the DC-AE modules (diffusers/models/autoencoders/autoencoder_dc.py):
// torch.nn.Conv2d (dense k×k, stride 1 or 2) and `get_normalization` from diffusers/models/normalization.py
// (RMSNorm over channels, or eval-mode BatchNorm2d), plus in-place pointwise helpers that keep one copy of an
// activation alive instead of two.

/// A dense torch.nn.Conv2d: weight [out, in, k, k] ("<prefix>.weight"), optional bias [out] ("<prefix>.bias").
struct DCAEConv2d: Sendable {
    let linear: Linear
    let kernel: Int
    let stride: Int

    init(_ source: WeightSource, _ prefix: String, in cin: Int, out cout: Int, kernel: Int, stride: Int = 1,
         bias: Bool = true) throws {
        linear = try Linear(source, prefix, shape: [cout, cin, kernel, kernel], bias: bias)
        self.kernel = kernel
        self.stride = stride
    }

    /// [B, H, W, in] → [B, H', W', out], zero padding k/2 (as every DC-AE conv).
    func callAsFunction(_ x: Tensor) -> Tensor {
        x.conv2d(linear, kernel: kernel, padding: kernel / 2, stride: stride)
    }
}

/// `get_normalization(norm_type, C)` applied over channels: RMSNorm(C, eps 1e-5, affine, bias) or BatchNorm2d(C,
/// eps 1e-5) in eval mode, which is a per-channel scale and shift from its running statistics.
enum DCAENorm: Sendable {
    case rms(weight: [Float], bias: [Float])
    case batch(scale: [Float], shift: [Float])

    /// Loads "<prefix>.weight", "<prefix>.bias" and for batch_norm "<prefix>.running_mean", "<prefix>.running_var"
    /// ("<prefix>.num_batches_tracked" is training bookkeeping and is not read).
    init(_ source: WeightSource, _ prefix: String, type: AutoencoderDCConfig.NormType, channels c: Int) throws {
        let weight = try source.floats(prefix + ".weight", shape: [c])
        let bias = try source.floats(prefix + ".bias", shape: [c])
        switch type {
        case .rmsNorm:
            self = .rms(weight: weight, bias: bias)
        case .batchNorm:
            let mean = try source.floats(prefix + ".running_mean", shape: [c])
            let variance = try source.floats(prefix + ".running_var", shape: [c])
            // y = (x − mean) / sqrt(var + eps) · weight + bias = x · scale + shift
            let scale = (0 ..< c).map { weight[$0] / (variance[$0] + 1e-5).squareRoot() }
            self = .batch(scale: scale, shift: (0 ..< c).map { bias[$0] - mean[$0] * scale[$0] })
        }
    }

    /// x: [..., C] → [..., C], overwriting x.
    func apply(_ x: inout Tensor) {
        switch self {
        case let .rms(weight, bias):
            x.rmsNormInPlace(weight: weight, bias: bias, eps: 1e-5)
        case let .batch(scale, shift):
            let c = scale.count
            x.data.withUnsafeMutableBufferPointer { p in
                for r in 0 ..< p.count / c { for j in 0 ..< c { p[r * c + j] = p[r * c + j] * scale[j] + shift[j] } }
            }
        }
    }
}

/// One entry of an encoder/decoder stage (an nn.Sequential element in the reference).
enum DCAEBlock: Sendable {
    case res(ResBlock)
    case efficientViT(EfficientViTBlock)
    case up(DCUpBlock2d)
    case down(DCDownBlock2d)

    /// Loads the stage block `prefix` ("decoder.up_blocks.3.1") of the given stage type.
    init(_ source: WeightSource, _ prefix: String, stage: AutoencoderDCConfig.Stage, headDim: Int) throws {
        switch stage.blockType {
        case .resBlock:
            self = .res(try ResBlock(source, prefix, channels: stage.channels, norm: stage.normType,
                                     activation: stage.activation))
        case .efficientViT:
            self = .efficientViT(try EfficientViTBlock(source, prefix, channels: stage.channels, headDim: headDim,
                                                       qkvMultiscales: stage.qkvMultiscales, norm: stage.normType))
        }
    }

    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case let .res(b): return b(x)
        case let .efficientViT(b): return b(x)
        case let .up(b): return b(x)
        case let .down(b): return b(x)
        }
    }
}

extension Tensor {
    /// Applies an activation in place (no second copy of a large feature map; threaded C, sana_activate).
    mutating func applyInPlace(_ act: Activation) {
        guard let kernel = act.kernel else { return }
        data.withUnsafeMutableBufferPointer { p in sana_activate(p.baseAddress, Int64(p.count), Int32(kernel.rawValue)) }
    }

    /// self += other (same shape), in place (threaded C, sana_add).
    mutating func addInPlace(_ other: Tensor) {
        precondition(shape == other.shape, "addInPlace: shapes \(shape) and \(other.shape) differ")
        data.withUnsafeMutableBufferPointer { o in
            other.data.withUnsafeBufferPointer { q in sana_add(o.baseAddress, q.baseAddress, Int64(o.count)) }
        }
    }
}

/// Row bands: the DC-AE's wide layers (GLUMBConv's 8× expansion, the attention's q/k/v and multi-scale sources) run
/// over a feature map a band of rows at a time, so their temporaries stay near `bandFloats` whatever the frame size.
enum DCAEBands {
    /// Target size of one band temporary (floats): 4 M = 16 MB.
    static let bandFloats = 4 << 20

    /// Splits `height` rows into bands of at most `budget / rowFloats` rows (at least 1), balanced.
    static func split(height: Int, rowFloats: Int, budget: Int = bandFloats) -> [Range<Int>] {
        let rows = max(1, budget / max(rowFloats, 1))
        let n = (height + rows - 1) / rows
        return (0 ..< n).map { k in (k * height / n) ..< ((k + 1) * height / n) }
    }
}

extension Tensor {
    /// The window rows × cols of a feature map: [B, H, W, C] → [B, rows.count, cols.count, C].
    func window(rows: Range<Int>, cols: Range<Int>) -> Tensor {
        let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        if rows == 0 ..< h && cols == 0 ..< w { return self }
        let (oh, ow) = (rows.count, cols.count)
        var out = BufferPool.freshUninitialized(b * oh * ow * c)  // every element is copied below
        data.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                guard let from = s.baseAddress, let to = o.baseAddress else { return }
                for n in 0 ..< b { for y in 0 ..< oh {
                    // one contiguous run of ow·C values per row
                    let src = ((n * h + rows.lowerBound + y) * w + cols.lowerBound) * c, dst = (n * oh + y) * ow * c
                    (to + dst).update(from: from + src, count: ow * c)
                } }
            }
        }
        return Tensor(shape: [b, oh, ow, c], data: out)
    }

    /// The rows `rows` of a feature map (all columns).
    func window(rows: Range<Int>) -> Tensor { window(rows: rows, cols: 0 ..< shape[2]) }

    /// Writes `src` [B, h, w, C] into this [B, H, W, C] map with its top-left corner at (row, col).
    mutating func paste(_ src: Tensor, row: Int, col: Int = 0) {
        let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        let (sh, sw) = (src.shape[1], src.shape[2])
        precondition(src.shape[0] == b && src.shape[3] == c && row + sh <= h && col + sw <= w, "paste: \(src.shape) into \(shape) at \(row), \(col)")
        data.withUnsafeMutableBufferPointer { o in
            src.data.withUnsafeBufferPointer { s in
                guard let to = o.baseAddress, let base = s.baseAddress else { return }
                for n in 0 ..< b { for y in 0 ..< sh {
                    // one contiguous run of sw·C values per row
                    let dst = ((n * h + row + y) * w + col) * c, from = (n * sh + y) * sw * c
                    (to + dst).update(from: base + from, count: sw * c)
                } }
            }
        }
    }
}
