import CSanaKernels

extension Tensor {
    /// 2-D convolution of a channels-last feature map [B, H, W, Cin] with a Linear whose weight has the reference
    /// shape [Cout, Cin, kh, kw] (matrix [Cout, Cin·kh·kw]), stride 1, zero padding `padding`.
    /// im2col gathers each output pixel's patch in the weight's (cin, ky, kx) order, then one matrix product.
    public func conv2d(_ conv: Linear, kernel: Int, padding: Int) -> Tensor {
        precondition(rank == 4, "conv2d: input must be [B, H, W, C], got \(shape)")
        let (b, h, w, cin) = (shape[0], shape[1], shape[2], shape[3])
        if kernel == 1 && padding == 0 { return conv.apply(self) }
        precondition(conv.inFeatures == cin * kernel * kernel, "conv2d \(conv.weight.name): weight K \(conv.inFeatures) ≠ \(cin)·\(kernel)²")
        let oh = h + 2 * padding - kernel + 1, ow = w + 2 * padding - kernel + 1
        let kk = cin * kernel * kernel
        // cols: [B, oh, ow, Cin·kh·kw] (sana_im2col, rows in parallel)
        var cols = [Float](repeating: 0, count: b * oh * ow * kk)
        data.withUnsafeBufferPointer { src in
            cols.withUnsafeMutableBufferPointer { dst in
                sana_im2col(src.baseAddress, Int64(b), Int64(h), Int64(w), Int64(cin), Int32(kernel), Int32(padding), dst.baseAddress)
            }
        }
        return conv.apply(Tensor(shape: [b, oh, ow, kk], data: cols))
    }

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
