// Config-versus-weights checks run before conversion: the few shapes every Sana checkpoint must have, derived from
// each component's config.json, plus the values that must agree between components. A failure names the weight
// folder or config file and the tensor.
import Foundation

enum PipelineChecks {
    static func int(_ c: DiffusersPipeline.Component, _ key: String) throws -> Int {
        guard let v = c.config[key] as? Int else {
            throw PipelineError.badJSON(path: c.configPath, reason: "'\(key)' is missing or not an integer")
        }
        return v
    }

    static func check(_ p: DiffusersPipeline) throws {
        guard let te = p.components["text_encoder"], let tr = p.components["transformer"], let vae = p.components["vae"] else { return }

        // Gemma-2 (transformers models/gemma2/modeling_gemma2.py).
        let vocab = try int(te, "vocab_size"), hidden = try int(te, "hidden_size"), layers = try int(te, "num_hidden_layers")
        let heads = try int(te, "num_attention_heads"), kv = try int(te, "num_key_value_heads")
        let headDim = try int(te, "head_dim"), inter = try int(te, "intermediate_size")
        var expected: [(DiffusersPipeline.Component, String, [Int])] = [(te, "embed_tokens.weight", [vocab, hidden]), (te, "norm.weight", [hidden])]
        for i in 0 ..< layers {
            let l = "layers.\(i)."
            expected += [(te, l + "self_attn.q_proj.weight", [heads * headDim, hidden]), (te, l + "self_attn.k_proj.weight", [kv * headDim, hidden]),
                         (te, l + "self_attn.v_proj.weight", [kv * headDim, hidden]), (te, l + "self_attn.o_proj.weight", [hidden, heads * headDim]),
                         (te, l + "mlp.gate_proj.weight", [inter, hidden]), (te, l + "mlp.up_proj.weight", [inter, hidden]),
                         (te, l + "mlp.down_proj.weight", [hidden, inter])]
        }

        // SanaTransformer2DModel (diffusers models/transformers/sana_transformer.py).
        let inner = try int(tr, "num_attention_heads") * int(tr, "attention_head_dim")
        let inCh = try int(tr, "in_channels"), patch = try int(tr, "patch_size"), caption = try int(tr, "caption_channels")
        let outCh = (tr.config["out_channels"] as? Int) ?? inCh
        let blocks = try int(tr, "num_layers")
        expected += [(tr, "patch_embed.proj.weight", [inner, inCh, patch, patch]), (tr, "caption_projection.linear_1.weight", [inner, caption]),
                     (tr, "proj_out.weight", [patch * patch * outCh, inner])]
        for i in 0 ..< blocks { expected.append((tr, "transformer_blocks.\(i).attn1.to_q.weight", [inner, inner])) }

        // AutoencoderDC (diffusers models/autoencoders/autoencoder_dc.py): conv_in maps latents to the deepest stage.
        let latent = try int(vae, "latent_channels"), image = try int(vae, "in_channels")
        guard let dec = vae.config["decoder_block_out_channels"] as? [Int], let first = dec.first, let last = dec.last else {
            throw PipelineError.badJSON(path: vae.configPath, reason: "'decoder_block_out_channels' is missing or not a list of integers")
        }
        expected += [(vae, "decoder.conv_in.weight", [last, latent, 3, 3]), (vae, "decoder.conv_out.weight", [image, first, 3, 3])]

        for (c, name, shape) in expected {
            let source = Converter.sourceName(c, name)
            guard let file = try? c.weights.file(of: source), let e = file.entries[source] else {
                throw PipelineError.missingTensor(path: c.weights.indexPath ?? c.weights.files.first?.path ?? c.weights.path, tensor: source)
            }
            guard e.shape == shape else {
                throw PipelineError.shapeMismatch(path: file.path, tensor: source, expected: shape, actual: e.shape,
                                                  reason: "from \(c.configPath)")
            }
        }
        try checkLayerCount(te, prefix: "layers.", count: layers, key: "num_hidden_layers")
        try checkLayerCount(tr, prefix: "transformer_blocks.", count: blocks, key: "num_layers")

        if caption != hidden {
            throw PipelineError.inconsistent(path: tr.configPath, reason: "caption_channels \(caption) ≠ text encoder hidden_size \(hidden)")
        }
        if inCh != latent {
            throw PipelineError.inconsistent(path: tr.configPath, reason: "in_channels \(inCh) ≠ VAE latent_channels \(latent)")
        }
    }

    /// No layer index at or beyond the configured count (missing ones are caught by the shape table).
    static func checkLayerCount(_ c: DiffusersPipeline.Component, prefix: String, count: Int, key: String) throws {
        for name in c.weights.tensorNames {
            let ref = Converter.renamed(c.name, name)
            guard ref.hasPrefix(prefix), let i = Int(ref.dropFirst(prefix.count).prefix { $0 != "." }), i >= count else { continue }
            throw PipelineError.inconsistent(path: c.configPath, reason: "tensor '\(name)' is layer \(i) but \(key) is \(count)")
        }
    }
}
