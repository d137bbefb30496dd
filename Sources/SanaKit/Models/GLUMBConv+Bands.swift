import CSanaKernels

// GLUMBConv (Layers/GLUMBConv.swift, diffusers sana_transformer.py `GLUMBConv`) run over a feature map a band of
// rows at a time. The layer widens C channels to 2·hidden = 8·C for the DC-AE, so the whole-frame version holds
// several 8·C maps at once; here only one band's are live, plus the input and the output. Same arithmetic per
// position: the depthwise 3×3 conv reads one row of neighbours above and below, so each band is computed from its
// rows widened by one (zero padding only at the frame's own edges, as in the whole-frame version).

extension GLUMBConv {
    /// x: [B, H, W, in] → [B, H, W, out], equal to `callAsFunction(x)`; bands of about `budget` floats.
    func appliedInBands(_ x: Tensor, budget: Int = DCAEBands.bandFloats) -> Tensor {
        let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
        let wide = convInverted.outFeatures, hidden = wide / 2
        var out = Tensor(zeros: [b, h, w, convPoint.outFeatures])
        // per row: the widened map and its depthwise output (2 × wide), the gated half and the output
        for band in DCAEBands.split(height: h, rowFloats: b * w * (2 * wide + hidden + convPoint.outFeatures),
                                          budget: budget) {
            let lo = max(band.lowerBound - 1, 0), hi = min(band.upperBound + 1, h)
            var t = convInverted.apply(x.window(rows: lo ..< hi))  // [B, hi − lo, W, 2·hidden]
            t.applyInPlace(.silu)
            t = t.depthwiseConv2d(weight: convDepthWeight, bias: convDepthBias, kernel: 3)
                .window(rows: (band.lowerBound - lo) ..< (band.upperBound - lo))
            // GLU: torch.chunk(2, dim=1) on NCHW → first half · silu(second half), channels-last [rows, hidden]
            var gated = BufferPool.uninitialized(count: t.rows * hidden)  // sana_glu_silu writes every element
            t.data.withUnsafeBufferPointer { s in
                gated.withUnsafeMutableBufferPointer { g in sana_glu_silu(s.baseAddress, Int64(t.rows), Int64(hidden), g.baseAddress) }
            }
            t = Tensor(zeros: [0])
            var y = convPoint.apply(Tensor(shape: [b, band.count, w, hidden], data: gated))
            if let normWeight { y.rmsNormInPlace(weight: normWeight, bias: normBias, eps: 1e-5) }
            if residualConnection { y.addInPlace(x.window(rows: band)) }
            out.paste(y, row: band.lowerBound)
        }
        return out
    }
}
