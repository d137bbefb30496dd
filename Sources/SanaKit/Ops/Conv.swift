import CSanaKernels

extension Tensor {
    /// 2-D convolution of a channels-last feature map [B, H, W, Cin] with a Linear whose weight has the reference
    /// shape [Cout, Cin, kh, kw] (matrix [Cout, Cin·kh·kw]), stride `stride`, zero padding `padding`.
    /// im2col gathers each output pixel's patch in the weight's (cin, ky, kx) order, then one matrix product per
    /// band of output rows: the patch matrix is Cin·k² times larger than the input, so it is built for at most
    /// `im2colBandFloats` values at a time (at 1024² × 128 channels the full matrix would be 4.7 GB).
    /// `upsample` > 1 convolves the nearest-neighbour upsampled input (F.interpolate(mode="nearest")) without
    /// building it: the gather reads upsampled pixel (y, x) from (y / upsample, x / upsample).
    public func conv2d(_ conv: Linear, kernel: Int, padding: Int, stride: Int = 1, upsample: Int = 1) -> Tensor {
        precondition(rank == 4, "conv2d: input must be [B, H, W, C], got \(shape)")
        let (b, sh, sw, cin) = (shape[0], shape[1], shape[2], shape[3])
        let (h, w) = (sh * upsample, sw * upsample)  // the (virtual) input grid
        if kernel == 1 && padding == 0 && stride == 1 && upsample == 1 { return conv.apply(self) }
        precondition(conv.inFeatures == cin * kernel * kernel, "conv2d \(conv.weight.name): weight K \(conv.inFeatures) ≠ \(cin)·\(kernel)²")
        let oh = (h + 2 * padding - kernel) / stride + 1, ow = (w + 2 * padding - kernel) / stride + 1
        let kk = cin * kernel * kernel, cout = conv.outFeatures
        let bandRows = Swift.max(1, Swift.min(oh, Tensor.im2colBandFloats / Swift.max(ow * kk, 1)))
        var out = [Float](repeating: 0, count: b * oh * ow * cout)
        for n in 0 ..< b {
            for y0 in Swift.stride(from: 0, to: oh, by: bandRows) {
                let rowsHere = Swift.min(bandRows, oh - y0)
                // cols: [rowsHere, ow, Cin·kh·kw] for output rows y0 ..< y0 + rowsHere of image n
                var cols = [Float](repeating: 0, count: rowsHere * ow * kk)
                data.withUnsafeBufferPointer { src in
                    cols.withUnsafeMutableBufferPointer { dst in
                        for r in 0 ..< rowsHere {
                            let oy = y0 + r
                            for ox in 0 ..< ow {
                                let base = (r * ow + ox) * kk
                                for ky in 0 ..< kernel {
                                    let iy = oy * stride + ky - padding
                                    if iy < 0 || iy >= h { continue }
                                    for kx in 0 ..< kernel {
                                        let ix = ox * stride + kx - padding
                                        if ix < 0 || ix >= w { continue }
                                        let s = ((n * sh + iy / upsample) * sw + ix / upsample) * cin
                                        let t = base + ky * kernel + kx
                                        for c in 0 ..< cin { dst[t + c * kernel * kernel] = src[s + c] }
                                    }
                                }
                            }
                        }
                    }
                }
                let y = conv.apply(Tensor(shape: [rowsHere * ow, kk], data: cols))
                cols = []
                let offset = (n * oh + y0) * ow * cout
                out.withUnsafeMutableBufferPointer { o in
                    y.data.withUnsafeBufferPointer { s in
                        for i in 0 ..< s.count { o[offset + i] = s[i] }
                    }
                }
            }
        }
        return Tensor(shape: [b, oh, ow, cout], data: out)
    }

    /// Upper bound on the im2col patch matrix of one band in conv2d (floats): 8 M = 32 MB.
    public static let im2colBandFloats = 8 << 20

    /// Depthwise k×k convolution (groups = channels) of [B, H, W, C] with weight [C, 1, k, k] and bias [C],
    /// stride 1, zero padding k/2.
    public func depthwiseConv2d(weight: [Float], bias: [Float]?, kernel: Int) -> Tensor {
        precondition(rank == 4, "depthwiseConv2d: input must be [B, H, W, C], got \(shape)")
        let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        precondition(weight.count == c * kernel * kernel, "depthwiseConv2d: weight has \(weight.count) values")
        precondition(bias.map { $0.count == c } ?? true, "depthwiseConv2d: bias size ≠ \(c)")
        // out [B, H, W, C] (sana_depthwise_conv2d, padding kernel/2)
        var out = [Float](repeating: 0, count: count)
        data.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                bias.withUnsafeBufferPointerOrNil { bp in
                    sana_depthwise_conv2d(src.baseAddress, Int64(b), Int64(h), Int64(w), Int64(c), weight, bp, Int32(kernel), dst.baseAddress)
                }
            }
        }
        return Tensor(shape: shape, data: out)
    }
}
