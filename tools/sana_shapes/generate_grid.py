#!/usr/bin/env python3
"""Draws the checker's held-out prompt grid (world.held_out_grid(): 48 prompts) for a few seeds, with diffusers or
with our runtime, into a directory that check_faithfulness.py reads.

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/generate_grid.py --diffusers models/sana-shapes --out out/grid/diffusers
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/generate_grid.py --sana models/sana-shapes-int8.sana --out out/grid/int8

Both use SanaPipeline's defaults (complex human instruction, 300 tokens, guidance 4.5, 20 steps, the checkpoint's
scheduler, negative prompt "") at 64×64, and the same seeds (torch.Generator().manual_seed(seed) on the CPU, which
`sana generate --seed` reproduces), so pictures of the same file name are comparable.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

SEEDS = [0, 1]


def grid_entries(seeds):
    entries = []
    for i, (shape, color, position, background) in enumerate(world.held_out_grid()):
        for seed in seeds:
            entries.append({"file": f"{i:02d}_seed{seed}.png", "prompt": world.caption(shape, color, position, background),
                            "shape": shape, "color": color, "position": position, "background": background,
                            "seed": seed})
    return entries


def main():
    ap = argparse.ArgumentParser()
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--diffusers", help="a diffusers pipeline directory")
    src.add_argument("--sana", help="a bundle for `sana generate`")
    ap.add_argument("--sana-binary", default=".build/release/sana")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    entries = grid_entries(args.seeds)
    t0 = time.time()
    if args.diffusers:
        import torch
        from diffusers import SanaPipeline

        torch.set_num_threads(args.threads)
        pipe = SanaPipeline.from_pretrained(args.diffusers)
        pipe.set_progress_bar_config(disable=True)
        for e in entries:
            image = pipe(e["prompt"], height=world.SIZE, width=world.SIZE, use_resolution_binning=False,
                         generator=torch.Generator().manual_seed(e["seed"])).images[0]
            image.save(os.path.join(args.out, e["file"]))
    else:
        for e in entries:
            subprocess.run([args.sana_binary, "generate", "--model", args.sana, "--prompt", e["prompt"],
                            "--width", str(world.SIZE), "--height", str(world.SIZE), "--seed", str(e["seed"]),
                            "--threads", str(args.threads), "--output", os.path.join(args.out, e["file"])],
                           check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(args.out, "grid.json"), "w") as f:
        json.dump(entries, f, indent=1)
    print(f"{len(entries)} pictures in {time.time() - t0:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
