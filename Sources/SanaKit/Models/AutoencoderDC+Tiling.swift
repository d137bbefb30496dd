import Foundation

// Tiled decoding for bounded memory (our design; diffusers' own tiled_decode uses fixed 512-pixel tiles and a
// one-sided linear blend). Overlapping latent tiles are decoded one at a time and blended in pixel space with
// weights that rise from 0 at a tile edge inside the image to 1 over `overlap·f` pixels (a cosine ramp); the
// output is Σ wₖ·tileₖ / Σ wₖ, so any tile arrangement blends seamlessly. Tiles differ from the full-frame decode
// because the decoder's linear attention is global (and zero padding sits at tile edges): the bound measured
// in docs/NUMERICS.md "DC-AE" is the price of bounded memory.

/// How `decode(_:tiling:)` splits the work.
public enum DecodeTiling: Sendable, Equatable {
    /// Full-frame decode: exactly the reference's computation.
    case off
    /// Full-frame if `estimatedDecodePeakBytes` fits `budgetBytes`, else the largest square tiles that fit, with
    /// `AutoencoderDC.defaultOverlapLatent` latent pixels of overlap.
    case auto(budgetBytes: Int)
    /// Tiles of `tileLatent`² latent pixels overlapping by `overlapLatent` (0 < 2·overlap < tile).
    case forced(tileLatent: Int, overlapLatent: Int)
}

extension AutoencoderDC {
    /// Default overlap between tiles in latent pixels (×32 in image pixels for the f32 DC-AE); see NUMERICS.md.
    public static let defaultOverlapLatent = 6

    /// Decodes NCHW latents (see `decode(_:)`), tiled as `tiling` says.
    public func decode(_ latents: Tensor, tiling: DecodeTiling) throws -> Tensor {
        let decoder = try checkedDecoder(latents)
        let (b, h, w) = (latents.shape[0], latents.shape[2], latents.shape[3])
        let tile: Int, overlap: Int
        switch tiling {
        case .off:
            return try decode(latents)
        case let .auto(budget):
            if Self.estimatedDecodePeakBytes(config: config, batch: b, latentHeight: h, latentWidth: w) <= budget {
                return try decode(latents)
            }
            overlap = Self.defaultOverlapLatent
            guard let t = largestTile(batch: b, latentHeight: h, latentWidth: w, overlap: overlap, budget: budget) else {
                throw ModelError.badInput("vae decode: memory budget \(budget) bytes is too small for a \(4 * overlap)-latent tile")
            }
            tile = t
        case let .forced(t, o):
            guard o >= 0, t > 2 * o else {
                throw ModelError.badInput("vae decode: tile \(t) and overlap \(o) need 0 ≤ 2·overlap < tile")
            }
            (tile, overlap) = (t, o)
        }
        if tile >= h && tile >= w { return try decode(latents) }
        return tiledDecode(decoder, latents, tile: tile, overlap: overlap)
    }

    /// Peak bytes of the tiled decode's own buffers besides one tile's activations: the NCHW output and the
    /// blend-weight sum.
    static func tiledOutputBytes(config: AutoencoderDCConfig, batch: Int, latentHeight: Int, latentWidth: Int) -> Int {
        let f = config.spatialCompressionRatio
        return 4 * (batch * config.inChannels + 1) * latentHeight * f * latentWidth * f
    }

    /// The largest square tile (latent pixels, ≥ 4·overlap) whose decode fits `budget` with the output buffers.
    func largestTile(batch: Int, latentHeight h: Int, latentWidth w: Int, overlap: Int, budget: Int) -> Int? {
        let fixed = Self.tiledOutputBytes(config: config, batch: batch, latentHeight: h, latentWidth: w)
        var best: Int?
        for t in max(4 * overlap, 1) ... max(h, w, 4 * overlap) {
            let bytes = Self.estimatedDecodePeakBytes(config: config, batch: batch, latentHeight: min(t, h),
                                                      latentWidth: min(t, w))
            if fixed + bytes <= budget { best = t } else { break }
        }
        return best
    }

    /// Tile starts along one axis of `length` latent pixels: evenly spread so that neighbours overlap by at least
    /// `overlap` and the first/last tiles touch the borders.
    static func tileStarts(length: Int, tile: Int, overlap: Int) -> [Int] {
        if length <= tile { return [0] }
        let n = (length - overlap + (tile - overlap) - 1) / (tile - overlap)  // ceil((L − O) / (T − O))
        return (0 ..< n).map { k in (k * (length - tile) + (n - 1) / 2) / (n - 1) }
    }

    /// Blend weight of pixel `i` of a tile spanning [start, start + size) pixels of an axis of `length` pixels:
    /// 0 over the first `ramp`/4 pixels from each edge that lies inside the image, then a cosine ramp to 1 at `ramp`
    /// pixels, 1 elsewhere.
    static func blendWeights(start: Int, size: Int, length: Int, ramp: Int) -> [Float] {
        (0 ..< size).map { i in
            // distance (pixel centres) to the nearest tile edge that lies inside the image
            var distance = Float.infinity
            if start > 0 { distance = min(distance, Float(i) + 0.5) }
            if start + size < length { distance = min(distance, Float(size - i) - 0.5) }
            guard distance.isFinite, ramp > 0 else { return 1 }
            // The outer quarter of the overlap is left out (zero padding makes a tile's own edge its least accurate
            // part); neighbours' ramps still cross over the middle half, so there is no hard cut.
            let margin = Float(ramp) / 4
            let t = min(max((distance - margin) / (Float(ramp) - margin), 0), 1)
            return max(0.5 - 0.5 * cosf(Float.pi * t), 1e-6)  // positive everywhere: Σ w > 0 on every pixel
        }
    }

    func tiledDecode(_ decoder: DCAEDecoder, _ latents: Tensor, tile: Int, overlap: Int) -> Tensor {
        let (b, cz, h, w) = (latents.shape[0], latents.shape[1], latents.shape[2], latents.shape[3])
        let f = config.spatialCompressionRatio, co = config.inChannels
        let (ph, pw) = (h * f, w * f)
        let z = latents.permuted([0, 2, 3, 1])  // [B, h, w, Cz]
        var out = [Float](repeating: 0, count: b * co * ph * pw)  // NCHW [B, 3, H, W]
        var weightSum = [Float](repeating: 0, count: ph * pw)     // [H, W]
        for y0 in Self.tileStarts(length: h, tile: tile, overlap: overlap) {
            for x0 in Self.tileStarts(length: w, tile: tile, overlap: overlap) {
                let (th, tw) = (min(tile, h), min(tile, w))
                // zt: [B, th, tw, Cz], the latent window at (y0, x0)
                var zt = [Float](repeating: 0, count: b * th * tw * cz)
                for n in 0 ..< b { for y in 0 ..< th { for x in 0 ..< tw { for c in 0 ..< cz {
                    zt[((n * th + y) * tw + x) * cz + c] = z.data[((n * h + y0 + y) * w + x0 + x) * cz + c]
                } } } }
                let img = decoder(Tensor(shape: [b, th, tw, cz], data: zt))  // [B, th·f, tw·f, 3]
                let wy = Self.blendWeights(start: y0 * f, size: th * f, length: ph, ramp: overlap * f)
                let wx = Self.blendWeights(start: x0 * f, size: tw * f, length: pw, ramp: overlap * f)
                let (ih, iw) = (th * f, tw * f)
                out.withUnsafeMutableBufferPointer { o in
                    img.data.withUnsafeBufferPointer { s in
                        for y in 0 ..< ih { for x in 0 ..< iw {
                            let wgt = wy[y] * wx[x], py = y0 * f + y, px = x0 * f + x
                            weightSum[py * pw + px] += wgt
                            for n in 0 ..< b { for c in 0 ..< co {
                                o[((n * co + c) * ph + py) * pw + px] += wgt * s[((n * ih + y) * iw + x) * co + c]
                            } }
                        } }
                    }
                }
            }
        }
        out.withUnsafeMutableBufferPointer { o in
            for n in 0 ..< b { for c in 0 ..< co { for p in 0 ..< ph * pw { o[(n * co + c) * ph * pw + p] /= weightSum[p] } } }
        }
        return Tensor(shape: [b, co, ph, pw], data: out)
    }

    /// Estimated largest set of live activations (bytes) of an untiled decode of a [batch, latent, h, w] latent,
    /// following the allocation pattern of DCAEDecoder and its blocks (inputs kept for residuals, conv band buffers,
    /// GLUMBConv's temporaries, the final NHWC → NCHW copy). Weights are not included.
    public static func estimatedDecodePeakBytes(config: AutoencoderDCConfig, batch: Int, latentHeight: Int,
                                                latentWidth: Int) -> Int {
        guard let st = try? config.decoderStages() else { return Int.max }
        let band = Tensor.im2colBandFloats
        /// Extra floats of a 3×3 conv producing `outPixels`·cout from cin channels: output, im2col band, band result.
        func conv(_ outPixels: Int, _ cin: Int, _ cout: Int) -> Int {
            let cols = min(band, outPixels * cin * 9)
            return outPixels * cout + cols + cols / (cin * 9) * cout
        }
        var p = batch * latentHeight * latentWidth  // pixels at the current resolution
        var peak = p * config.latentChannels + conv(p, config.latentChannels, st[st.count - 1].channels)
        var c = st[st.count - 1].channels
        for i in stride(from: st.count - 1, through: 0, by: -1) where st[i].layers > 0 {
            if i < st.count - 1 {
                let cout = st[i].channels
                let up = config.upsampleInterpolate
                    ? p * c + 4 * p * c + conv(4 * p, c, cout)
                    : p * c + max(conv(p, c, 4 * cout), 8 * p * cout)
                peak = max(peak, up)
                p *= 4
                c = cout
            }
            switch st[i].blockType {
            case .resBlock:
                peak = max(peak, 2 * p * c + conv(p, c, c))
            case .efficientViT:
                let s = st[i].qkvMultiscales.count
                let attention = p * c * (7 + s) + (s > 0 ? 6 * p * c : 0)
                peak = max(peak, attention, 26 * p * c)  // GLUMBConv: block input + attention output + 24·P·C
            }
        }
        let co = config.inChannels
        let out = st[0].layers > 0 ? conv(p, c, co) : max(conv(p, c, 4 * co), 8 * p * co)
        let outPixels = st[0].layers > 0 ? p : 4 * p
        peak = max(peak, p * c + out, 2 * outPixels * co)
        return peak * MemoryLayout<Float>.size
    }
}
