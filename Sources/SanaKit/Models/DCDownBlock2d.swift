import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `DCDownBlock2d`: ×2 downsampling either by a 3×3 conv
// to out/4 channels then pixel_unshuffle(2) ("pixel_unshuffle"), or by a stride-2 3×3 conv; with `shortcut`, plus
// the pixel-unshuffled input averaged over consecutive channel groups.

struct DCDownBlock2d: Sendable {
    let conv: DCAEConv2d  // conv: [out/4 (pixel unshuffle) or out, in, 3, 3] + bias
    let pixelUnshuffle: Bool
    let shortcut: Bool
    let groupSize: Int

    init(_ source: WeightSource, _ prefix: String, in cin: Int, out cout: Int, pixelUnshuffle: Bool, shortcut: Bool) throws {
        conv = try DCAEConv2d(source, prefix + ".conv", in: cin, out: pixelUnshuffle ? cout / 4 : cout, kernel: 3,
                              stride: pixelUnshuffle ? 1 : 2)
        self.pixelUnshuffle = pixelUnshuffle
        self.shortcut = shortcut
        groupSize = cin * 4 / cout
    }

    /// x: [B, 2H, 2W, in] → [B, H, W, out] (H, W even: the caller checks).
    func callAsFunction(_ x: Tensor) -> Tensor {
        var out = conv(x)
        if pixelUnshuffle { out = out.pixelUnshuffled2x() }
        if shortcut { out.addInPlace(x.pixelUnshuffled2x().channelGroupMean(groupSize)) }
        return out
    }
}
