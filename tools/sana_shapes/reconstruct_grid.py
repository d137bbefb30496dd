#!/usr/bin/env python3
"""The autoencoder's ceiling for the checker: renders the held-out combinations (jittered, as in training) and their
reconstructions through the trained autoencoder, in two directories check_faithfulness.py reads. The DiT can draw
no better than the autoencoder decodes, so the checker's accuracy on the reconstructions bounds the model's.

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/reconstruct_grid.py [--vae out/sana-shapes/vae] [--out out/sana-shapes/ae-grid]
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/check_faithfulness.py out/sana-shapes/ae-grid/reconstructed --reference out/sana-shapes/ae-grid/rendered

Deterministic (seed 7): --per-combo renders of each of the 48 held-out combinations.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vae", default="out/sana-shapes/vae")
    ap.add_argument("--out", default="out/sana-shapes/ae-grid")
    ap.add_argument("--per-combo", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from diffusers import AutoencoderDC

    torch.set_num_threads(args.threads)
    vae = AutoencoderDC.from_pretrained(args.vae).eval()
    rng = np.random.default_rng(7)
    entries, images = [], []
    for i, (shape, color, position, background) in enumerate(world.held_out_grid()):
        for k in range(args.per_combo):
            images.append(world.render(shape, color, position, background, rng=rng))
            entries.append({"file": f"{i:02d}_{k}.png", "prompt": world.caption(shape, color, position, background),
                            "shape": shape, "color": color, "position": position, "background": background})
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1  # [N, 3, 64, 64] in [-1, 1]
    with torch.no_grad():
        rec = vae.decode(vae.encode(x).latent).sample
    rec = ((rec.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # [N, 64, 64, 3]
    for name, pictures in (("rendered", images), ("reconstructed", rec)):
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        for e, img in zip(entries, pictures):
            Image.fromarray(np.asarray(img)).save(os.path.join(d, e["file"]))
        with open(os.path.join(d, "grid.json"), "w") as f:
            json.dump(entries, f, indent=1)
    print(f"{len(entries)} renders and reconstructions -> {args.out}")


if __name__ == "__main__":
    main()
