import CSanaKernels
import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `DCUpBlock2d`: ×2 upsampling either by nearest
// interpolation then a 3×3 conv ("interpolate"; fused, conv2d(upsample: 2) never builds the 4× larger map), or by
// a 3×3 conv to 4× the channels then pixel_shuffle(2);
// with `shortcut`, plus the input with each channel repeated (repeat_interleave) then pixel-shuffled.

struct DCUpBlock2d: Sendable {
    let conv: DCAEConv2d  // conv: [out (interpolate) or 4·out (pixel shuffle), in, 3, 3] + bias
    let interpolate: Bool
    let shortcut: Bool
    let inChannels: Int
    let outChannels: Int

    init(_ source: WeightSource, _ prefix: String, in cin: Int, out cout: Int, interpolate: Bool, shortcut: Bool) throws {
        conv = try DCAEConv2d(source, prefix + ".conv", in: cin, out: interpolate ? cout : cout * 4, kernel: 3)
        self.interpolate = interpolate
        self.shortcut = shortcut
        inChannels = cin
        outChannels = cout
    }

    /// x: [B, H, W, in] → [B, 2H, 2W, out].
    func callAsFunction(_ x: Tensor) -> Tensor {
        var out = interpolate ? x.conv2d(conv.linear, kernel: conv.kernel, padding: conv.kernel / 2, upsample: 2) : conv(x).pixelShuffled2x()
        if shortcut {
            // repeat_interleave(4·out / in) then pixel_shuffle(2), added to the conv output (threaded C).
            let (b, h, w) = (x.shape[0], x.shape[1], x.shape[2])
            out.data.withUnsafeMutableBufferPointer { o in
                x.data.withUnsafeBufferPointer { s in
                    sana_add_shuffled_repeat(o.baseAddress, s.baseAddress, Int64(b), Int64(h), Int64(w),
                                             Int64(inChannels), Int64(outChannels))
                }
            }
        }
        return out
    }
}

extension Tensor {
    /// F.interpolate(scale_factor=2, mode="nearest") (the test oracle of conv2d(upsample: 2)) on [B, H, W, C] → [B, 2H, 2W, C].
    func nearestUpsampled2x() -> Tensor {
        let (b, h, w, c) = (shape[0], shape[1], shape[2], shape[3])
        var out = [Float](repeating: 0, count: count * 4)
        data.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for n in 0 ..< b { for y in 0 ..< 2 * h { for x in 0 ..< 2 * w {
                    let src = ((n * h + y / 2) * w + x / 2) * c, dst = ((n * 2 * h + y) * 2 * w + x) * c
                    for ch in 0 ..< c { o[dst + ch] = s[src + ch] }
                } } }
            }
        }
        return Tensor(shape: [b, 2 * h, 2 * w, c], data: out)
    }

    /// F.pixel_shuffle(2) in channels-last: [B, H, W, 4C] → [B, 2H, 2W, C] with
    /// out[n, 2y+i, 2x+j, c] = in[n, y, x, c·4 + i·2 + j].
    func pixelShuffled2x() -> Tensor {
        let (b, h, w, c4) = (shape[0], shape[1], shape[2], shape[3])
        let c = c4 / 4
        var out = [Float](repeating: 0, count: count)
        data.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for n in 0 ..< b { for y in 0 ..< h { for x in 0 ..< w {
                    let src = ((n * h + y) * w + x) * c4
                    for i in 0 ..< 2 { for j in 0 ..< 2 {
                        let dst = ((n * 2 * h + 2 * y + i) * 2 * w + 2 * x + j) * c
                        for ch in 0 ..< c { o[dst + ch] = s[src + ch * 4 + i * 2 + j] }
                    } }
                } } }
            }
        }
        return Tensor(shape: [b, 2 * h, 2 * w, c], data: out)
    }

    /// F.pixel_unshuffle(2) in channels-last: [B, 2H, 2W, C] → [B, H, W, 4C] with
    /// out[n, y, x, c·4 + i·2 + j] = in[n, 2y+i, 2x+j, c].
    func pixelUnshuffled2x() -> Tensor {
        let (b, h2, w2, c) = (shape[0], shape[1], shape[2], shape[3])
        let (h, w) = (h2 / 2, w2 / 2)
        var out = [Float](repeating: 0, count: count)
        data.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for n in 0 ..< b { for y in 0 ..< h { for x in 0 ..< w {
                    let dst = ((n * h + y) * w + x) * c * 4
                    for i in 0 ..< 2 { for j in 0 ..< 2 {
                        let src = ((n * h2 + 2 * y + i) * w2 + 2 * x + j) * c
                        for ch in 0 ..< c { o[dst + ch * 4 + i * 2 + j] = s[src + ch] }
                    } }
                } } }
            }
        }
        return Tensor(shape: [b, h, w, c * 4], data: out)
    }

    /// unflatten(channels, (C / g, g)).mean(group): [..., C] → [..., C / g], averaging consecutive channel groups.
    func channelGroupMean(_ g: Int) -> Tensor {
        let c = lastDim, co = c / g
        var shape = self.shape
        shape[shape.count - 1] = co
        var out = [Float](repeating: 0, count: rows * co)
        let inv = 1 / Float(g)
        data.withUnsafeBufferPointer { s in
            out.withUnsafeMutableBufferPointer { o in
                for r in 0 ..< rows { for k in 0 ..< co {
                    var acc: Float = 0
                    for t in 0 ..< g { acc += s[r * c + k * g + t] }
                    o[r * co + k] = acc * inv
                } }
            }
        }
        return Tensor(shape: shape, data: out)
    }
}
