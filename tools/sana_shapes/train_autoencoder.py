#!/usr/bin/env python3
"""Trains the Sana-Shapes autoencoder: a small diffusers AutoencoderDC (the classes Sana uses, four stages, spatial
compression 8, 8 latent channels by default) on the rendered pictures, with a mean-squared reconstruction loss in
which shape pixels weigh 1 + --shape-weight (see shape_weights).

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/train_autoencoder.py [--minutes 24] [--threads 1]
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/train_autoencoder.py --decoder-only --lr 2e-3 --steps 2340
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/train_autoencoder.py --decoder-only --steps 3840 --decay cosine --decay-start 2340

reads OUT/dataset.npz (render_dataset.py), writes OUT/vae/ (save_pretrained, scaling_factor set to 1/std of the
training latents) and OUT/vae_state.pt (model + optimizer + step, so a rerun with a larger --minutes resumes).
--decoder-only (after train_dit.py) freezes the encoder: the latents the DiT was trained on, and the scaling factor,
stay as they were. Deterministic for a fixed --threads and step count (seed 0); --minutes bounds wall time (the
total, including earlier runs), --steps fixes the count. The learning rate is --lr, or with --decay falls from --lr
at --decay-start to --min-lr at --steps (schedule.py). It is set every step from the command line: before that, a
resumed run kept the rate saved in the optimizer state, so the shipped model's decoder-only phase, launched with
--lr 1e-3, really ran at the first phase's 2e-3.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from diffusers import AutoencoderDC

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import schedule  # noqa: E402

# Stage widths by spatial compression (2^(stages − 1)); the last stage adds linear attention, as Sana's DC-AE does.
STAGES = {8: (16, 32, 64, 64), 4: (16, 32, 64)}


def config(compression, latent_channels):
    widths = STAGES[compression]
    n = len(widths)
    types = ("ResBlock",) * (n - 1) + ("EfficientViTBlock",)
    scales = ((),) * (n - 1) + ((5,),)
    return dict(
        in_channels=3, latent_channels=latent_channels, attention_head_dim=8,
        encoder_block_types=types, decoder_block_types=types,
        encoder_block_out_channels=widths, decoder_block_out_channels=widths,
        encoder_layers_per_block=(1,) * n, decoder_layers_per_block=(1,) * n,
        encoder_qkv_multiscales=scales, decoder_qkv_multiscales=scales,
        upsample_block_type="pixel_shuffle", downsample_block_type="pixel_unshuffle",
        decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=1.0,
    )


def to_input(images):
    """uint8 [B, 64, 64, 3] -> float [B, 3, 64, 64] in [-1, 1], the range SanaPipeline's image processor decodes from."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def shape_weights(x, weight):
    """Per-pixel loss weights [B, 1, H, W]: 1 on the background, 1 + weight on the shape and its edges. A plain MSE
    is dominated by the flat background (about nine pixels in ten), so the autoencoder learns colours and places
    long before corners and star points, which are what tells the shapes apart."""
    ring = torch.cat([x[:, :, :2].flatten(2), x[:, :, -2:].flatten(2), x[:, :, :, :2].flatten(2),
                      x[:, :, :, -2:].flatten(2)], 2)  # [B, 3, border pixels]
    bg = ring.median(2).values[:, :, None, None]  # [B, 3, 1, 1]: the background colour
    far = ((x - bg).norm(dim=1, keepdim=True) / 0.3).clamp(max=1)  # [B, 1, H, W]: 0 on background, 1 on the shape
    return 1 + weight * far


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/sana-shapes")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps in total (0: only --minutes)")
    ap.add_argument("--batch", type=int, default=32)
    schedule.add_arguments(ap, lr=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--compression", type=int, choices=sorted(STAGES), default=8,
                    help="spatial compression: 4 (16×16 latents of 64×64 pictures) or 8 (8×8)")
    ap.add_argument("--latent-channels", type=int, default=8)
    ap.add_argument("--decoder-only", action="store_true",
                    help="train the decoder alone: the latents (and a DiT trained on them) stay valid")
    ap.add_argument("--shape-weight", type=float, default=8.0, help="extra loss weight on shape pixels")
    ap.add_argument("--latent-noise", type=float, default=0.0,
                    help="with --decoder-only: decode latents plus Gaussian noise of up to this share of their std")
    args = ap.parse_args()
    schedule.check(ap, args)
    if args.latent_noise and not args.decoder_only:
        ap.error("--latent-noise needs --decoder-only")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = np.load(os.path.join(args.out, "dataset.npz"))["images"]
    vae = AutoencoderDC(**config(args.compression, args.latent_channels))
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    state_path = os.path.join(args.out, "vae_state.pt")
    step, elapsed = 0, 0.0
    if os.path.exists(state_path):
        st = torch.load(state_path, weights_only=False)
        vae.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step, elapsed = st["step"], st["elapsed"]
        torch.set_rng_state(st["rng"])
        print(f"resumed at step {step} ({elapsed / 60:.1f} min so far)")
    gen = np.random.default_rng(step)
    print(f"schedule {schedule.describe(args)}")
    t0, cpu0, step0 = time.time(), time.process_time(), step
    vae.train()
    running = None

    def save():
        torch.save({"model": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                    "elapsed": elapsed + time.time() - t0, "rng": torch.get_rng_state()}, state_path)

    while True:
        spent = time.time() - t0
        if (args.steps and step >= args.steps) or (not args.steps and elapsed + spent >= args.minutes * 60):
            break
        x = to_input(images[gen.integers(0, len(images), args.batch)])
        with torch.set_grad_enabled(not args.decoder_only):
            z = vae.encode(x).latent
        if args.latent_noise:
            # The DiT's latents are never exactly the encoder's: a decoder that draws the clean picture from a
            # slightly perturbed latent (strength uniform in [0, --latent-noise]·std per picture) forgives them.
            amount = args.latent_noise * z.std() * torch.rand(len(z), 1, 1, 1)  # [B, 1, 1, 1]
            z = z + amount * torch.randn_like(z)
        rec = vae.decode(z).sample
        # A small pull on the latents keeps their scale bounded (the DC-AE is deterministic: no KL term).
        loss = (shape_weights(x, args.shape_weight) * (rec - x).pow(2)).mean() + 1e-4 * z.pow(2).mean()
        lr = schedule.learning_rate(step, args)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0:
            print(f"step {step} loss {running:.5f} lr {lr:.2e} ({(elapsed + time.time() - t0) / 60:.1f} min)", flush=True)
        if step % 500 == 0:
            save()
    save()
    total = elapsed + time.time() - t0
    this_run = {"from_step": step0, "wall_minutes": (time.time() - t0) / 60,
                "cpu_minutes": (time.process_time() - cpu0) / 60}

    # Scaling factor: 1/std of the latents of 2048 training pictures, as Sana's DC-AE config carries it.
    vae.eval()
    with torch.no_grad():
        zs = torch.cat([vae.encode(to_input(images[i:i + 256])).latent for i in range(0, 2048, 256)])
        recs = torch.cat([vae.decode(vae.encode(to_input(images[i:i + 256])).latent).sample
                          for i in range(0, 512, 256)])
    mse = torch.nn.functional.mse_loss(recs, to_input(images[:512])).item()
    psnr = 10 * np.log10(4 / mse)  # peak-to-peak 2 in [-1, 1]
    vae.register_to_config(scaling_factor=float(1 / zs.std()))
    vae.save_pretrained(os.path.join(args.out, "vae"))
    report = {"steps": step, "minutes": total / 60, "reconstruction_psnr_db": psnr,
              "latent_std": float(zs.std()), "threads": args.threads, "decoder_only": args.decoder_only,
              "latent_noise": args.latent_noise,
              "schedule": schedule.describe(args), "this_run": this_run}
    with open(os.path.join(args.out, "vae_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
