import Foundation
import SanaFormat

// Follows diffusers/models/autoencoders/autoencoder_dc.py `AutoencoderDC` (decode / encode without diffusers' own
// tiling; our tiling is in AutoencoderDC+Tiling.swift). Public tensors are NCHW like the reference; internally every
// feature map is channels-last [B, H, W, C].

/// The DC-AE: `decode` turns latents into images, `encode` images into latents.
public final class AutoencoderDC: Sendable {
    public let config: AutoencoderDCConfig
    let decoder: DCAEDecoder?
    let encoder: DCAEEncoder?

    /// Which halves to load: generation needs only the decoder, image-to-image both.
    public struct Parts: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }
        public static let decoder = Parts(rawValue: 1)
        public static let encoder = Parts(rawValue: 2)
        public static let all: Parts = [.decoder, .encoder]
    }

    /// Loads the requested parts from `source` (names are the reference state-dict keys, "decoder.conv_in.weight",
    /// …). Strict: a missing or mis-shaped tensor of a loaded part, or a tensor that belongs to no part of the
    /// model, is a ModelError naming it. Tensors of a part not loaded are skipped.
    public init(config: AutoencoderDCConfig, source: WeightSource, parts: Parts = .all) throws {
        try config.validate()
        self.config = config
        let recorder = RecordingWeightSource(source)
        decoder = parts.contains(.decoder) ? try DCAEDecoder(recorder, config: config) : nil
        encoder = parts.contains(.encoder) ? try DCAEEncoder(recorder, config: config) : nil
        let used = recorder.used
        let unexpected = recorder.tensorNames.filter { name in
            if used.contains(name) || name.hasSuffix(".num_batches_tracked") { return false }
            if name.hasPrefix("decoder.") { return parts.contains(.decoder) }
            if name.hasPrefix("encoder.") { return parts.contains(.encoder) }
            return true
        }
        guard unexpected.isEmpty else { throw ModelError.unexpectedTensors(component: "vae", names: unexpected.sorted()) }
    }

    /// Loads a diffusers `vae/` folder (config.json + safetensors).
    public convenience init(directory: String, parts: Parts = .all) throws {
        let config = try AutoencoderDCConfig.load(path: (directory as NSString).appendingPathComponent("config.json"))
        try self.init(config: config, source: try SafetensorsDirectory(path: directory), parts: parts)
    }

    /// latents: NCHW [B, latent_channels, h, w], already divided by `config.scalingFactor` (SanaPipeline calls
    /// `vae.decode(latents / scaling_factor)`). Returns the image NCHW [B, in_channels, h·f, w·f], f = 2^(stages−1),
    /// in the reference's range (about −1 … 1; the pipeline's postprocess maps it to [0, 1]). Untiled: the result is
    /// what the reference computes; see `decode(_:tiling:)` for bounded memory.
    public func decode(_ latents: Tensor) throws -> Tensor {
        let decoder = try checkedDecoder(latents)
        // Activations recycled between steps for the duration of the decode (BufferPool.swift).
        return BufferPool.withCurrentOrNewPool { decoder(latents.permuted([0, 2, 3, 1])).permuted([0, 3, 1, 2]) }  // NCHW ↔ NHWC
    }

    /// image: NCHW [B, in_channels, H, W] in −1 … 1, H and W multiples of f. Returns the latent NCHW
    /// [B, latent_channels, H/f, W/f] (multiply by `config.scalingFactor` for the DiT).
    public func encode(_ image: Tensor) throws -> Tensor {
        guard let encoder else { throw ModelError.badInput("vae: encode called but the encoder was not loaded") }
        let f = config.spatialCompressionRatio
        guard image.rank == 4, image.shape[1] == config.inChannels, image.shape[0] > 0,
              image.shape[2] > 0, image.shape[3] > 0, image.shape[2] % f == 0, image.shape[3] % f == 0 else {
            throw ModelError.badInput("vae encode: image shape \(image.shape) is not [B, \(config.inChannels), H, W] with H, W positive multiples of \(f)")
        }
        return encoder(image.permuted([0, 2, 3, 1])).permuted([0, 3, 1, 2])  // NCHW ↔ NHWC
    }

    func checkedDecoder(_ latents: Tensor) throws -> DCAEDecoder {
        guard let decoder else { throw ModelError.badInput("vae: decode called but the decoder was not loaded") }
        guard latents.rank == 4, latents.shape[1] == config.latentChannels, latents.shape[0] > 0,
              latents.shape[2] > 0, latents.shape[3] > 0 else {
            throw ModelError.badInput("vae decode: latent shape \(latents.shape) is not [B, \(config.latentChannels), h, w]")
        }
        return decoder
    }
}

/// Passes tensors through and remembers which names were read (for the unexpected-tensor check). A name the source
/// lacks is a ModelError.missingTensors naming it.
final class RecordingWeightSource: WeightSource, @unchecked Sendable {
    let base: WeightSource
    let tensorNames: Set<String>
    private(set) var used: Set<String> = []  // single-threaded: only the loading initializer uses it

    init(_ base: WeightSource) {
        self.base = base
        tensorNames = base.tensorNames
    }

    func tensor(_ name: String) throws -> StoredTensor {
        guard tensorNames.contains(name) else { throw ModelError.missingTensors(component: "vae", names: [name]) }
        used.insert(name)
        return try base.tensor(name)
    }
}
