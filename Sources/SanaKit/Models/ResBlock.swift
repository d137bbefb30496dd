import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `ResBlock`:
// conv1 (3×3, bias) → activation → conv2 (3×3, no bias) → norm over channels → + input.

struct ResBlock: Sendable {
    let conv1: DCAEConv2d  // conv1: [C, C, 3, 3] + bias
    let conv2: DCAEConv2d  // conv2: [C, C, 3, 3], no bias
    let norm: DCAENorm     // norm: rms_norm (weight, bias) or batch_norm (+ running_mean, running_var)
    let activation: Activation

    /// Loads the block under `prefix` ("decoder.up_blocks.2.1", …); in == out channels in every DC-AE use.
    init(_ source: WeightSource, _ prefix: String, channels c: Int, norm: AutoencoderDCConfig.NormType,
         activation: Activation) throws {
        conv1 = try DCAEConv2d(source, prefix + ".conv1", in: c, out: c, kernel: 3)
        conv2 = try DCAEConv2d(source, prefix + ".conv2", in: c, out: c, kernel: 3, bias: false)
        self.norm = try DCAENorm(source, prefix + ".norm", type: norm, channels: c)
        self.activation = activation
    }

    /// x: [B, H, W, C] → [B, H, W, C].
    func callAsFunction(_ x: Tensor) -> Tensor {
        var h = conv1(x)          // live: x, h
        h.applyInPlace(activation)
        var y = conv2(h)          // live while building: x, h, y
        BufferPool.recycle(&h.data)  // h is consumed: its storage serves the next block's conv1 (BufferPool.swift)
        norm.apply(&y)
        y.addInPlace(x)
        return y
    }
}
