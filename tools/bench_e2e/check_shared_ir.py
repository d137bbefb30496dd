#!/usr/bin/env python3
"""Checks that an OpenVINO DC-AE decoder IR traced at one size decodes another size as diffusers does, before run.py
--prepare lets the 1024² IR sets link the decoder exported for 512² (see SHAREABLE in run.py).

    ${PYTHON:-/work/main/.venv-ref/bin/python} tools/bench_e2e/check_shared_ir.py --pipeline DIR --ir DIR[,DIR] \
        [--latents 16,32]

For each latent size (16 = 512², the size the IR was traced at; 32 = 1024²) it decodes one N(0, 1) latent (seed 0)
with diffusers' AutoencoderDC in float32 and with each IR's vae_decoder (compiled as the benchmark compiles it), and
prints max|Δ| / max|ref| and mean|Δ| / mean|ref|. An IR that generalizes shows the same error at the size it was not
traced at as at the one it was (the error itself is the IR's weight compression and bf16 inference).
"""

import argparse
import os

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", required=True)
    ap.add_argument("--ir", required=True, help="IR set directories (comma-separated)")
    ap.add_argument("--latents", default="16,32", help="latent sizes (image size / 32)")
    args = ap.parse_args()

    import openvino as ov
    from diffusers import AutoencoderDC

    vae = AutoencoderDC.from_pretrained(os.path.join(args.pipeline, "vae"), torch_dtype=torch.bfloat16).float().eval()
    core = ov.Core()
    compiled = {ir: core.compile_model(os.path.join(ir, "vae_decoder", "openvino_model.xml"), "CPU")
                for ir in args.ir.split(",")}
    for n in (int(x) for x in args.latents.split(",")):
        z = torch.randn(1, vae.config.latent_channels, n, n, generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            ref = vae.decode(z, return_dict=False)[0].numpy()
        for ir, model in compiled.items():
            out = model(z.numpy())[model.outputs[0]]
            if out.shape != ref.shape:
                print(f"latent {n}²: {ir}: shape {out.shape}, diffusers {ref.shape}: MISMATCH", flush=True)
                continue
            d = np.abs(out - ref)
            print(f"latent {n}² (image {32 * n}²): {os.path.basename(ir)}: max|Δ|/max|ref| "
                  f"{d.max() / np.abs(ref).max():.4f}, mean|Δ|/mean|ref| {d.mean() / np.abs(ref).mean():.4f}",
                  flush=True)


if __name__ == "__main__":
    main()
