import Foundation

// Tiled decoding for bounded memory, exact (our design; diffusers' own tiled_decode uses fixed 512-pixel tiles and a
// linear blend, and its tiles differ from the full decode).
//
// Two things make a tile of the decoder differ from the same region of a full-frame decode:
//  1. The EfficientViT blocks' ReLU linear attention is global: every output reads Σ v·relu(k)ᵀ and Σ relu(k) over
//     all positions. These per-head statistics ([heads, d·d + d] per image and source) are small, so each attention
//     step's statistics are summed over the whole frame first (one pass over the tiles' cores, run up to that step),
//     and every tile then uses them (SanaMultiscaleLinearAttention.apply(_:statistics:)).
//  2. Convolutions read neighbours: a core (the part of a tile that is kept) is widened by a margin equal to the
//     receptive radius of the steps run on the tile (DCAEOpShape.inputMargin), so zero padding at tile edges never
//     reaches it. Tiles are then cropped to their cores, which partition the frame: no blending.
// The steps before a `boundary` run on the whole frame (exact by definition); the planner puts the boundary where
// whole-frame activations still fit the budget (the low-resolution attention stages, at most resolutions) and tiles
// the rest, so tiles need few statistics passes and small margins. Result: tiled = untiled up to float summation
// order (docs/NUMERICS.md "DC-AE").

/// How `decode(_:tiling:)` splits the work.
public enum DecodeTiling: Sendable, Equatable {
    /// Full-frame decode: the reference's computation, in one piece.
    case off
    /// Full-frame if `estimatedDecodePeakBytes` fits `budgetBytes`, else the cheapest exact tiling that fits
    /// (activations only; weights are not counted).
    case auto(budgetBytes: Int)
    /// The whole decoder tiled from the latent: cores of `tileLatent`² latent pixels, widened by at most
    /// `overlapLatent` latent pixels. Exact when `overlapLatent ≥ exactOverlapLatent(config:)`; a smaller overlap
    /// trades exactness for work (the error then sits at core edges).
    case forced(tileLatent: Int, overlapLatent: Int)
}

/// A tiled decode: steps [0, levels[0].start) run on the whole frame; level k tiles steps
/// [levels[k].start, levels[k+1].start) (the last level: to the end) in cores of `tile` pixels of its input grid,
/// each widened by min(its exact margin, `haloCap`). A level's window output is the map its next level splits, so
/// the low-resolution steps' wide receptive field widens only their own (small) tiles.
struct DecodePlan: Sendable, Equatable {
    struct Level: Sendable, Equatable {
        var start: Int
        var tile: Int
    }
    var levels: [Level]
    var haloCap: Int = .max

    init(levels: [Level], haloCap: Int = .max) {
        precondition(!levels.isEmpty && zip(levels, levels.dropFirst()).allSatisfy { $0.start < $1.start }, "DecodePlan: levels must increase")
        self.levels = levels
        self.haloCap = haloCap
    }

    init(boundary: Int, tile: Int, haloCap: Int = .max) { self.init(levels: [Level(start: boundary, tile: tile)], haloCap: haloCap) }
}

extension AutoencoderDC {
    /// Latent pixels of margin that make a tile of the whole decoder exact: the decoder's receptive radius from the
    /// latent (19 for dc-ae-f32c32-sana-1.0).
    public static func exactOverlapLatent(config: AutoencoderDCConfig) -> Int {
        guard let shapes = try? DCAEDecoder.layout(config) else { return 0 }
        return margin(shapes, 0 ..< shapes.count, output: 0)
    }

    /// Input-grid margin that makes steps `range` exact `m` pixels beyond a region of their output.
    static func margin(_ shapes: [DCAEOpShape], _ range: Range<Int>, output m: Int) -> Int {
        range.reversed().reduce(m) { shapes[$1].inputMargin($0) }
    }

    /// Decodes NCHW latents (see `decode(_:)`), tiled as `tiling` says.
    public func decode(_ latents: Tensor, tiling: DecodeTiling) throws -> Tensor {
        let decoder = try checkedDecoder(latents)
        let (b, h, w) = (latents.shape[0], latents.shape[2], latents.shape[3])
        switch tiling {
        case .off:
            return try decode(latents)
        case let .auto(budget):
            if Self.estimatedDecodePeakBytes(config: config, batch: b, latentHeight: h, latentWidth: w) <= budget {
                return try decode(latents)
            }
            guard let plan = Self.plan(decoder.shapes, batch: b, latentHeight: h, latentWidth: w, budget: budget) else {
                throw ModelError.badInput("vae decode: memory budget \(budget) bytes is too small for any tiling of a \(h)×\(w) latent")
            }
            return tiledDecode(decoder, latents, plan: plan)
        case let .forced(t, o):
            guard t > 0, o >= 0 else { throw ModelError.badInput("vae decode: tile \(t) must be positive, overlap \(o) ≥ 0") }
            return tiledDecode(decoder, latents, plan: DecodePlan(boundary: 0, tile: t, haloCap: o))
        }
    }

    /// Splits `length` pixels into ⌈length / tile⌉ balanced cores.
    static func cores(length: Int, tile: Int) -> [Range<Int>] {
        let n = (length + tile - 1) / tile
        return (0 ..< n).map { k in (k * length / n) ..< ((k + 1) * length / n) }
    }

    /// Executes `plan` on NCHW latents; returns the NCHW image.
    func tiledDecode(_ decoder: DCAEDecoder, _ latents: Tensor, plan: DecodePlan) -> Tensor {
        BufferPool.withCurrentOrNewPool { tiledDecodeInPool(decoder, latents, plan: plan) }
    }

    private func tiledDecodeInPool(_ decoder: DCAEDecoder, _ latents: Tensor, plan: DecodePlan) -> Tensor {
        let shapes = decoder.shapes, n = shapes.count, levels = plan.levels
        let x = decoder.run(latents.permuted([0, 2, 3, 1]), 0 ..< levels[0].start)  // NCHW → NHWC, whole-frame steps
        let b = x.shape[0]
        /// Resolution factor between the inputs of steps i and j ≥ i.
        func scale(_ i: Int, _ j: Int) -> Int { 1 << shapes[i ..< j].filter(\.upsamples).count }
        var stats: [Int: LinearAttentionStatistics] = [:]
        /// Runs steps `range` on a window, each attention with its whole-frame statistics; the buffer pool is
        /// empty before and after, so buffers of one tile never wait in it while other code allocates.
        func run(_ t: Tensor, _ range: Range<Int>) -> Tensor {
            BufferPool.current?.drain()
            return decoder.run(t, range, statistics: stats)
        }
        /// One pass up to the input of step `end`, exact `radius` pixels beyond every core: calls
        /// visit(map, rows, cols, origin) for a partition of the frame at step end's grid, where rows × cols is the
        /// core within the window `map` and origin the core's top-left pixel in the frame.
        func pass(end: Int, radius: Int, _ visit: (Tensor, Range<Int>, Range<Int>, (Int, Int)) -> Void) {
            let active = levels.filter { $0.start < end }
            /// Level k splits `core` (frame pixels of its grid) of the window `map` whose top-left is `origin`.
            func split(_ k: Int, _ map: Tensor, _ origin: (Int, Int), _ core: (Range<Int>, Range<Int>)) {
                let (start, next) = (active[k].start, k + 1 < active.count ? active[k + 1].start : end)
                let (gh, gw) = (x.shape[1] * scale(levels[0].start, start), x.shape[2] * scale(levels[0].start, start))
                let halo = min(Self.margin(shapes, start ..< end, output: radius), plan.haloCap)
                let s = scale(start, next)
                for ry in Self.cores(length: core.0.count, tile: active[k].tile) {
                    for rx in Self.cores(length: core.1.count, tile: active[k].tile) {
                        let cy = core.0.lowerBound + ry.lowerBound, cx = core.1.lowerBound + rx.lowerBound
                        let y0 = max(cy - halo, 0), x0 = max(cx - halo, 0)
                        let y1 = min(cy + ry.count + halo, gh), x1 = min(cx + rx.count + halo, gw)
                        // the window y0..<y1 × x0..<x1 of the frame, taken from `map` (which covers it: the parent's
                        // halo is at least this level's, and both are clipped to the frame)
                        let t = run(map.window(rows: (y0 - origin.0) ..< (y1 - origin.0), cols: (x0 - origin.1) ..< (x1 - origin.1)),
                                    start ..< next)
                        let sub = ((cy * s) ..< ((cy + ry.count) * s), (cx * s) ..< ((cx + rx.count) * s))
                        if k + 1 < active.count {
                            split(k + 1, t, (y0 * s, x0 * s), sub)
                        } else {
                            visit(t, (sub.0.lowerBound - y0 * s) ..< (sub.0.upperBound - y0 * s),
                                  (sub.1.lowerBound - x0 * s) ..< (sub.1.upperBound - x0 * s), (sub.0.lowerBound, sub.1.lowerBound))
                        }
                    }
                }
            }
            if active.isEmpty {  // `end` is the first tiled step: its input is the whole-frame map
                visit(x, 0 ..< x.shape[1], 0 ..< x.shape[2], (0, 0))
            } else {
                split(0, x, (0, 0), (0 ..< x.shape[1], 0 ..< x.shape[2]))
            }
        }
        // Statistics passes, in order: pass a runs the tiles up to attention step a (using the statistics of the
        // earlier ones) and sums a's statistics over the cores only, so every position counts once.
        for a in levels[0].start ..< n {
            guard case let .attention(att) = decoder.ops[a] else { continue }
            var st = att.emptyStatistics(batch: b)
            pass(end: a, radius: att.radius) { t, rows, cols, _ in att.accumulateStatistics(t, rows: rows, cols: cols, into: &st) }
            stats[a] = st
        }
        let s = scale(levels[0].start, n), co = config.inChannels
        let (ph, pw) = (x.shape[1] * s, x.shape[2] * s)
        var out = [Float](repeating: 0, count: b * co * ph * pw)  // NCHW [B, 3, H, W]
        pass(end: n, radius: 0) { img, rows, cols, origin in
            let (ih, iw) = (img.shape[1], img.shape[2])  // img: [B, ih, iw, 3]
            img.data.withUnsafeBufferPointer { src in
                out.withUnsafeMutableBufferPointer { o in
                    for n in 0 ..< b { for c in 0 ..< co { for y in 0 ..< rows.count { for xx in 0 ..< cols.count {
                        o[((n * co + c) * ph + origin.0 + y) * pw + origin.1 + xx] =
                            src[((n * ih + rows.lowerBound + y) * iw + cols.lowerBound + xx) * co + c]
                    } } } }
                }
            }
        }
        return Tensor(shape: [b, co, ph, pw], data: out)
    }

    // MARK: memory and planning

    /// Estimated largest set of live activations (bytes) of an untiled decode of a [batch, latent, h, w] latent:
    /// the largest step's input, output and temporaries (DCAEOpShape.liveFloats), or the final image with its
    /// NHWC → NCHW copy. Weights are not included.
    public static func estimatedDecodePeakBytes(config: AutoencoderDCConfig, batch: Int, latentHeight: Int,
                                                latentWidth: Int) -> Int {
        guard let shapes = try? DCAEDecoder.layout(config) else { return Int.max }
        var p = batch * latentHeight * latentWidth, peak = 0
        for s in shapes {
            peak = max(peak, s.liveFloats(pixels: p))
            if s.upsamples { p *= 4 }
        }
        return max(peak, 2 * p * config.inChannels) * MemoryLayout<Float>.size
    }

    /// Estimated peak activation bytes and multiply-adds of `plan` (the planner's objective and constraint); tiles
    /// are counted at their largest (interior) size.
    static func estimate(_ shapes: [DCAEOpShape], _ plan: DecodePlan, batch b: Int, latentHeight h: Int,
                         latentWidth w: Int) -> (bytes: Int, macs: Double) {
        let levels = plan.levels, n = shapes.count, start0 = levels[0].start
        func scale(_ i: Int, _ j: Int) -> Int { 1 << shapes[i ..< j].filter(\.upsamples).count }
        var peak = 0, macs = 0.0
        var f = 1
        for i in 0 ..< start0 {  // whole-frame steps
            let p = b * h * w * f * f
            peak = max(peak, shapes[i].liveFloats(pixels: p))
            macs += Double(p) * Double(shapes[i].macsPerPixel)
            if shapes[i].upsamples { f *= 2 }
        }
        let (gh0, gw0) = (h * f, w * f), out = scale(start0, n)
        let kept = b * shapes[start0].inChannels * gh0 * gw0 + b * shapes[n - 1].outChannels * gh0 * gw0 * out * out
        func pass(end: Int, radius: Int) {
            let active = levels.filter { $0.start < end }
            var count = 1.0, held = 0, core = (gh0, gw0), frame = (gh0, gw0), p = b * gh0 * gw0
            for (k, level) in active.enumerated() {
                let next = k + 1 < active.count ? active[k + 1].start : end
                let halo = min(margin(shapes, level.start ..< end, output: radius), plan.haloCap)
                let (ny, nx) = ((core.0 + level.tile - 1) / level.tile, (core.1 + level.tile - 1) / level.tile)
                let sub = ((core.0 + ny - 1) / ny, (core.1 + nx - 1) / nx)
                count *= Double(ny * nx)
                p = b * min(sub.0 + 2 * halo, frame.0) * min(sub.1 + 2 * halo, frame.1)
                for i in level.start ..< next {
                    peak = max(peak, kept + held + shapes[i].liveFloats(pixels: p))
                    macs += count * Double(p) * Double(shapes[i].macsPerPixel)
                    if shapes[i].upsamples { p *= 4 }
                }
                let s = scale(level.start, next)
                if k + 1 < active.count { held += p * shapes[next].inChannels }  // the window map the next level splits
                core = (sub.0 * s, sub.1 * s)
                frame = (frame.0 * s, frame.1 * s)
            }
            if end < n { macs += count * Double(p) * Double(shapes[end].statisticsMacsPerPixel) }
        }
        for a in start0 ..< n where shapes[a].isAttention { pass(end: a, radius: shapes[a].inputMargin(0)) }
        pass(end: n, radius: 0)
        return (peak * MemoryLayout<Float>.size, macs)
    }

    /// The exact tiling with the least estimated work whose estimated peak fits `budget`: one or two tiled levels
    /// starting at stage starts (or after the last attention step), each with the largest core that fits.
    static func plan(_ shapes: [DCAEOpShape], batch: Int, latentHeight h: Int, latentWidth w: Int,
                     budget: Int) -> DecodePlan? {
        var starts = [0] + shapes.indices.filter { shapes[$0].upsamples && $0 < shapes.count - 1 }
        if let last = shapes.lastIndex(where: \.isAttention) { starts.append(last + 1) }
        starts = Set(starts).sorted()
        /// Core sizes to try, largest first.
        func ladder(_ side: Int) -> [Int] {
            var t = side, out: [Int] = []
            while t >= 1 { out.append(t); t = t > 8 ? t * 3 / 4 : t - 1 }
            return out
        }
        func side(_ start: Int) -> Int { max(h, w) << shapes[..<start].filter(\.upsamples).count }
        var best: (plan: DecodePlan, macs: Double)?
        func consider(_ levels: [DecodePlan.Level]) -> Bool {
            let plan = DecodePlan(levels: levels)
            let e = estimate(shapes, plan, batch: batch, latentHeight: h, latentWidth: w)
            guard e.bytes <= budget else { return false }
            if e.macs < best?.macs ?? .infinity { best = (plan, e.macs) }
            return true
        }
        for (i, s0) in starts.enumerated() {
            for t0 in ladder(side(s0)) where consider([.init(start: s0, tile: t0)]) { break }
            for s1 in starts[(i + 1)...] {
                let s = 1 << shapes[s0 ..< s1].filter(\.upsamples).count
                for t0 in ladder(side(s0)) {
                    for t1 in ladder(t0 * s) where consider([.init(start: s0, tile: t0), .init(start: s1, tile: t1)]) { break }
                }
            }
        }
        return best?.plan
    }
}
