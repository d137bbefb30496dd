#!/usr/bin/env python3
"""Trains the Sana-Shapes denoiser: a small diffusers SanaTransformer2DModel (4 blocks, hidden 128, patch size 1) with
flow matching on the autoencoder's latents, conditioned on a small frozen Gemma-2 text encoder through exactly the
prompt path SanaPipeline runs (complex human instruction on, 300 tokens, the same token selection).

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/train_dit.py [--minutes 50] [--threads 1]
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/train_dit.py --steps 10413 --lr 3e-4 --decay cosine --decay-start 7413

reads OUT/dataset.npz and OUT/vae/ (train_autoencoder.py); writes once OUT/tokenizer/, OUT/text_encoder/ and
OUT/cache.pt (latents and prompt embeddings), then trains and writes OUT/dit_state.pt every 200 steps (model, EMA,
optimizer, step, elapsed time: rerunning with a larger --minutes resumes from it) and OUT/transformer/ (EMA weights);
--keep-every N also keeps the EMA weights of every N-th step in OUT/transformer-STEP/ (to pick a checkpoint on the
grid). The learning rate warms up over 200 steps, then stays at --lr, or with --decay falls from --lr at
--decay-start to --min-lr at --steps (schedule.py): the final annealing phase of the shipped model.

Why a frozen text encoder: its outputs for the 512 training captions can be computed once, through the pipeline's own
encode_prompt, so training never runs Gemma over the ~500-token instruction+prompt sequence; a random Gemma keeps
token identity in its residual stream (embeddings scaled by √hidden), which is all this world's captions need.

Flow matching in diffusers' convention: x_σ = (1 − σ)·x₀ + σ·ε, the model predicts v = ε − x₀ at timestep 1000·σ
(FlowMatchEulerDiscreteScheduler.step adds (σ_next − σ)·v; DPMSolverMultistepScheduler with flow_prediction takes
x₀ = x_σ − σ·v). The caption is replaced by the pipeline's embedding of "" 10% of the time so guidance works.
"""
import argparse
import copy
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "fixtures"))
import make_gemma  # noqa: E402  (the Gemma-layout tokenizer builder of the fixtures)
import schedule  # noqa: E402
import world  # noqa: E402

from diffusers import AutoencoderDC, SanaPipeline, SanaTransformer2DModel  # noqa: E402
from transformers import Gemma2Config, Gemma2Model, GemmaTokenizer  # noqa: E402

MAX_SEQUENCE_LENGTH = 300  # SanaPipeline's default

TRANSFORMER = dict(
    num_attention_heads=4, attention_head_dim=32, num_layers=4,
    num_cross_attention_heads=4, cross_attention_head_dim=32, cross_attention_dim=128, caption_channels=64,
    mlp_ratio=2.5, norm_elementwise_affine=False, norm_eps=1e-6,
)


def transformer_config(vae_config, patch_size, interpolation_scale, layers):
    """The DiT for the autoencoder's latents: [latent_channels, 64/f, 64/f], tokens of patch_size² latent pixels."""
    channels = vae_config["latent_channels"]
    size = world.SIZE // 2 ** (len(vae_config["encoder_block_out_channels"]) - 1)
    return dict(TRANSFORMER, in_channels=channels, out_channels=channels, sample_size=size, patch_size=patch_size,
                interpolation_scale=interpolation_scale, num_layers=layers)


def build_tokenizer(out_dir):
    """Gemma layout (BPE with byte fallback, ▁ for spaces, <pad>=0 <eos>=1 <bos>=2 <unk>=3), trained by the fixtures'
    builder on the default instruction plus every caption, so caption words are whole tokens and the instruction costs
    few tokens."""
    instruction = make_gemma.default_instruction()
    # The builder has no pre-tokenizer (Gemma has none), so BPE would merge across spaces ("▁on▁the▁left▁on▁a▁");
    # feeding caption words one per item keeps every merge inside a word: one token per caption word.
    words = sorted({w for c in world.all_combos() for w in world.caption(*c).split(" ")})
    raw = make_gemma.build_tokenizer(instruction + [" " + w for w in words] * 30 + words * 30)
    with tempfile.TemporaryDirectory() as tmp:
        raw.save(os.path.join(tmp, "tokenizer.json"))
        tok = GemmaTokenizer(tokenizer_file=os.path.join(tmp, "tokenizer.json"), add_bos_token=True,
                             add_eos_token=False, padding_side="right")
        tok.save_pretrained(out_dir)
    for extra in ("special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(out_dir, extra)):
            os.remove(os.path.join(out_dir, extra))
    return GemmaTokenizer.from_pretrained(out_dir)


def build_text_encoder(vocab_size, out_dir):
    torch.manual_seed(1)
    cfg = Gemma2Config(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=256,
                       max_position_embeddings=2048, pad_token_id=0, eos_token_id=1, bos_token_id=2)
    te = Gemma2Model(cfg).eval()
    te.save_pretrained(out_dir)
    return te


def prepare_text(out):
    """Tokenizer, text encoder and the per-caption prompt embeddings (OUT/text.pt): independent of the autoencoder."""
    path = os.path.join(out, "text.pt")
    if os.path.exists(path):
        return torch.load(path)
    tok = build_tokenizer(os.path.join(out, "tokenizer"))
    te = build_text_encoder(len(tok), os.path.join(out, "text_encoder"))
    data = np.load(os.path.join(out, "dataset.npz"))
    captions = [str(c) for c in data["captions"]]
    pipe = SanaPipeline(tokenizer=tok, text_encoder=te, vae=None, transformer=None, scheduler=None)
    instruction = make_gemma.default_instruction()
    embeds, masks = [], []
    with torch.no_grad():
        for i in range(0, len(captions), 32):
            e, m, neg, neg_m = pipe.encode_prompt(captions[i:i + 32], do_classifier_free_guidance=True,
                                                  complex_human_instruction=instruction,
                                                  max_sequence_length=MAX_SEQUENCE_LENGTH)
            embeds.append(e)
            masks.append(m)
    embeds, masks = torch.cat(embeds), torch.cat(masks)
    neg, neg_m = neg[:1], neg_m[:1]
    # Padding is masked out of the DiT's cross-attention (a −10000 bias: exactly zero weight after softmax), and the
    # valid tokens are a prefix, so cutting the sequence after the longest caption changes nothing.
    keep = int(masks.sum(1).max())
    assert torch.all(masks[:, keep:] == 0) and torch.all(masks.cumsum(1)[:, :keep] == torch.arange(1, keep + 1).clamp(
        max=masks.sum(1, keepdim=True))), "valid tokens are not a prefix"
    assert torch.all(neg_m[:, 1:] == 0)
    print(f"prompt tokens kept: {keep} of {masks.shape[1]} (caption + instruction tail), vocabulary {len(tok)}")
    text = {"embeds": embeds[:, :keep].contiguous(), "masks": masks[:, :keep].contiguous(),
            "neg": neg[:, :keep].contiguous(), "neg_mask": neg_m[:, :keep].contiguous()}
    torch.save(text, path)
    return text


def prepare(out):
    """The prompt embeddings (prepare_text) and the scaled latents of every picture."""
    text = prepare_text(out)
    data = np.load(os.path.join(out, "dataset.npz"))

    vae = AutoencoderDC.from_pretrained(os.path.join(out, "vae")).eval()
    images = data["images"]
    lat = []
    with torch.no_grad():
        for i in range(0, len(images), 512):
            x = torch.from_numpy(images[i:i + 512]).permute(0, 3, 1, 2).float() / 127.5 - 1
            lat.append(vae.encode(x).latent * vae.config.scaling_factor)
    cache = {"latents": torch.cat(lat), "combo": torch.from_numpy(data["combo"]), **text}
    torch.save(cache, os.path.join(out, "cache.pt"))
    return cache


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/sana-shapes")
    ap.add_argument("--minutes", type=float, default=50.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps in total (0: only --minutes)")
    ap.add_argument("--batch", type=int, default=64)
    schedule.add_arguments(ap, lr=1e-3)
    ap.add_argument("--keep-every", type=int, default=0, help="keep the EMA weights of every N-th step (0: none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cfg-dropout", type=float, default=0.1)
    ap.add_argument("--interpolation-scale", type=float, default=1.0,
                    help="the sincos position embedding's scale; 0: none (Sana 1.0's NoPE). A new model: a run "
                         "cannot resume from a state with a different choice")
    ap.add_argument("--patch-size", type=int, default=1)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prepare-text", action="store_true", help="only write the tokenizer, text encoder and text.pt")
    args = ap.parse_args()
    schedule.check(ap, args)
    torch.set_num_threads(args.threads)
    out = args.out
    t_prep = time.time()
    cache_path = os.path.join(out, "cache.pt")
    if args.prepare_text:
        prepare_text(out)
        return
    cache = torch.load(cache_path) if os.path.exists(cache_path) else prepare(out)
    print(f"preparation {time.time() - t_prep:.1f} s")

    torch.manual_seed(0)
    with open(os.path.join(out, "vae", "config.json")) as f:
        vae_config = json.load(f)
    model = SanaTransformer2DModel(**transformer_config(vae_config, args.patch_size, args.interpolation_scale or None,
                                                        args.layers))
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    state_path = os.path.join(out, "dit_state.pt")
    step, elapsed = 0, 0.0
    if os.path.exists(state_path):
        st = torch.load(state_path, weights_only=False)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["elapsed"]
        torch.set_rng_state(st["rng"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min so far)")
    print(f"transformer parameters: {sum(p.numel() for p in model.parameters())}; schedule {schedule.describe(args)}")

    lat, combo = cache["latents"], cache["combo"]
    embeds, masks, neg, neg_mask = cache["embeds"], cache["masks"], cache["neg"], cache["neg_mask"]
    t0, cpu0, step0 = time.time(), time.process_time(), step
    running = None

    def save():
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed + time.time() - t0, "rng": torch.get_rng_state()}, state_path)

    model.train()
    while True:
        if (args.steps and step >= args.steps) or (not args.steps and elapsed + time.time() - t0 >= args.minutes * 60):
            break
        idx = torch.randint(0, len(lat), (args.batch,))
        x0 = lat[idx]
        c = combo[idx]
        drop = torch.rand(args.batch) < args.cfg_dropout
        enc = torch.where(drop[:, None, None], neg, embeds[c])
        enc_mask = torch.where(drop[:, None], neg_mask, masks[c])
        sigma = torch.sigmoid(torch.randn(args.batch))  # logit-normal(0, 1), as Sana trains
        eps = torch.randn_like(x0)
        s = sigma[:, None, None, None]
        xt = (1 - s) * x0 + s * eps
        pred = model(xt, encoder_hidden_states=enc, encoder_attention_mask=enc_mask, timestep=sigma * 1000,
                     return_dict=False)[0]
        loss = torch.nn.functional.mse_loss(pred, eps - x0)
        lr = schedule.learning_rate(step, args, warmup=200)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            decay = min(0.998, (1 + step) / (10 + step))
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0:
            print(f"step {step} loss {running:.4f} lr {lr:.2e} ({(elapsed + time.time() - t0) / 60:.1f} min)", flush=True)
        if step % 200 == 0:
            save()
            ema.save_pretrained(os.path.join(out, "transformer"))
        if args.keep_every and step % args.keep_every == 0:
            ema.save_pretrained(os.path.join(out, f"transformer-{step}"))
    save()
    ema.save_pretrained(os.path.join(out, "transformer"))
    report = {"steps": step, "minutes": (elapsed + time.time() - t0) / 60, "batch": args.batch,
              "threads": args.threads, "final_loss": running, "schedule": schedule.describe(args),
              "this_run": {"from_step": step0, "wall_minutes": (time.time() - t0) / 60,
                           "cpu_minutes": (time.process_time() - cpu0) / 60}}
    with open(os.path.join(out, "dit_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
