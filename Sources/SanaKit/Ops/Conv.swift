import CSanaKernels

extension Tensor {
    /// 2-D convolution of a channels-last feature map [B, H, W, Cin] with a Linear whose weight has the reference
    /// shape [Cout, Cin, kh, kw] (matrix [Cout, Cin·kh·kw]), stride `stride`, zero padding `padding`.
    /// `upsample` > 1 convolves the nearest-neighbour upsampled input (F.interpolate(mode="nearest")) without
    /// building it: the gather reads upsampled pixel (y, x) from (y / upsample, x / upsample).
    /// Weights on the C kernels (int8, int4, bf16 where the CPU has it): sana_conv2d gathers each output pixel's
    /// patch straight into the kernels' quantized / bf16 activation panels, so the f32 patch matrix (Cin·k² times
    /// the input) never exists. Float weights on OpenBLAS: a band of output rows at a time is im2col'ed (threaded
    /// C, sana_im2col_rows, at most `im2colBandFloats` values) and multiplied.
    public func conv2d(_ conv: Linear, kernel: Int, padding: Int, stride: Int = 1, upsample: Int = 1) -> Tensor {
        precondition(rank == 4, "conv2d: input must be [B, H, W, C], got \(shape)")
        let (b, cin) = (shape[0], shape[3])
        if kernel == 1 && padding == 0 && stride == 1 && upsample == 1 { return conv.apply(self) }
        precondition(conv.inFeatures == cin * kernel * kernel, "conv2d \(conv.weight.name): weight K \(conv.inFeatures) ≠ \(cin)·\(kernel)²")
        var geometry = sana_conv_shape(b: Int64(b), h: Int64(shape[1]), w: Int64(shape[2]), c: Int64(cin), kernel: Int32(kernel),
                                       stride: Int32(stride), pad: Int32(padding), upsample: Int32(upsample))
        let oh = Int(sana_conv_out_height(&geometry)), ow = Int(sana_conv_out_width(&geometry))
        precondition(oh > 0 && ow > 0, "conv2d: empty output for input \(shape), kernel \(kernel), stride \(stride)")
        let kk = cin * kernel * kernel, cout = conv.outFeatures
        // Patch columns in the weight's stored order (tap-major weights: see TensorLayout).
        let order = Int32(conv.weight.layout == .tapMajor ? SANA_CONV_TAP_MAJOR.rawValue : SANA_CONV_REFERENCE.rawValue)
        // out [B, oh, ow, Cout]: every element is written below, so it is not zero-filled first. Its storage comes
        // from the BufferPool in effect (a recycled activation of the same size: no page faults, no zeroing by the
        // kernel), else fresh (the first touch of a 0.5 GB map then happens in the kernels' threads).
        var out = BufferPool.uninitialized(count: b * oh * ow * cout)
        out.withUnsafeMutableBufferPointer { o in
            data.withUnsafeBufferPointer { src in
                if !conv.runsOnKernels && conv.weight.type == .f32 && cout <= Tensor.directConvMaxOutputs {
                    conv.weight.bytes.withUnsafeBytes { wp in
                        conv.bias.withUnsafeBufferPointerOrNil { bp in
                            let ok = sana_conv2d_f32_direct(src.baseAddress, &geometry, order, wp.baseAddress?.assumingMemoryBound(to: Float.self),
                                                            Int64(cout), bp, o.baseAddress)
                            precondition(ok != 0, "conv2d \(conv.weight.name): no memory for the transposed weight")
                        }
                    }
                } else if conv.runsOnKernels {
                    conv.weight.bytes.withUnsafeBytes { wp in
                        conv.bias.withUnsafeBufferPointerOrNil { bp in
                            sana_conv2d_ordered(src.baseAddress, &geometry, conv.weight.type.rawValue, wp.baseAddress, order, Int64(cout), bp, o.baseAddress)
                        }
                    }
                } else {
                    // Bands of output rows (row index n·oh + oy): cols [rows·ow, Cin·k²] → y [rows·ow, Cout].
                    let bandRows = Swift.max(1, Swift.min(b * oh, Tensor.im2colBandFloats / Swift.max(ow * kk, 1)))
                    var cols = [Float](repeating: 0, count: bandRows * ow * kk)
                    for r0 in Swift.stride(from: 0, to: b * oh, by: bandRows) {
                        let rows = Swift.min(bandRows, b * oh - r0)
                        cols.withUnsafeMutableBufferPointer { c in
                            sana_im2col_rows_ordered(src.baseAddress, &geometry, order, Int64(r0), Int64(rows), c.baseAddress)
                        }
                        let band = rows == bandRows ? cols : Array(cols[0 ..< rows * ow * kk])
                        let y = conv.apply(Tensor(shape: [rows * ow, kk], data: band))
                        y.data.withUnsafeBufferPointer { s in
                            if let to = o.baseAddress, let from = s.baseAddress { (to + r0 * ow * cout).update(from: from, count: s.count) }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [b, oh, ow, cout], data: out)
    }

    /// f32 convolutions with at most this many outputs run direct (sana_conv2d_f32_direct), not im2col + sgemm: the
    /// patch matrix would be c·k²/cout times the output (the DC-AE's conv_out: 128·9 / 3 = 384×).
    public static let directConvMaxOutputs = 8

    /// Upper bound on the im2col patch matrix of one band in conv2d's float path (floats): 8 M = 32 MB.
    public static let im2colBandFloats = 8 << 20

    /// Depthwise k×k convolution (groups = channels) of [B, H, W, C] with weight [C, 1, k, k] and bias [C],
    /// stride 1, zero padding k/2.
    public func depthwiseConv2d(weight: [Float], bias: [Float]?, kernel: Int) -> Tensor {
        precondition(rank == 4, "depthwiseConv2d: input must be [B, H, W, C], got \(shape)")
        let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        precondition(weight.count == c * kernel * kernel, "depthwiseConv2d: weight has \(weight.count) values")
        precondition(bias.map { $0.count == c } ?? true, "depthwiseConv2d: bias size ≠ \(c)")
        // out [B, H, W, C] (sana_depthwise_conv2d, padding kernel/2; it writes every element: no zero fill)
        var out = BufferPool.uninitialized(count: count)
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
