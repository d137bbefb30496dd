#!/usr/bin/env python3
"""Draws the checker's held-out prompt grid (world.held_out_grid(): 48 prompts) for a few seeds, with diffusers or
with our runtime, into a directory that check_faithfulness.py reads.

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/generate_grid.py --diffusers models/sana-shapes --out out/grid/diffusers
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/generate_grid.py --diffusers DIR --weights int4 --out out/grid/sim-int4
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/generate_grid.py --sana models/sana-shapes-int8.sana --out out/grid/int8

--weights bf16|int8|int4 runs diffusers on weights rounded exactly as `sana convert --weights W` stores them (the same
per-tensor policy, docs/FORMAT.md; int8 groups of 128 and int4 groups of 64 along the row, symmetric, scale
max|w|/127 or /7, round to nearest even): the cost of the stored weights alone, without the runtime's on-the-fly
activation quantization.

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
SENSITIVE = {"transformer": ["patch_embed.proj.weight", "proj_out.weight"],
             "vae": ["decoder.conv_in.weight", "decoder.conv_out.weight"]}
GROUP = {"int8": 128, "int4": 64}
QMAX = {"int8": 127, "int4": 7}


def storage_type(component, name, shape, weights):
    """The bundle's per-tensor policy (Sources/SanaFormat/QuantizationPolicy.swift); None means kept in f32."""
    parts = name.split(".")
    module = parts[-2] if len(parts) >= 2 else name
    if len(shape) < 2 or "norm" in module.lower():
        return None
    if weights not in GROUP:
        return weights
    if component == "text_encoder" and name == "embed_tokens.weight":
        return "int8"
    if name in SENSITIVE.get(component, []) or (component == "transformer" and name.endswith("scale_shift_table")):
        return None
    cols = 1
    for d in shape[1:]:
        cols *= d
    if cols * shape[0] < 1024 or cols < min(GROUP[weights], 32):
        return None
    return weights


def round_weight(w, kind):
    """w rounded as the bundle stores it and read back."""
    import torch

    if kind == "bf16":
        return w.to(torch.bfloat16).to(w.dtype)
    if kind == "f16":
        return w.to(torch.float16).to(w.dtype)
    g, qmax = GROUP[kind], QMAX[kind]
    m = w.reshape(w.shape[0], -1).float()  # [N, d1·d2·…]: the bundle's matrix view
    k = m.shape[1]
    pad = (-k) % g
    m = torch.nn.functional.pad(m, (0, pad)).reshape(m.shape[0], -1, g)  # [N, groups, g]
    amax = m.abs().amax(-1, keepdim=True)
    scale = amax / qmax
    inv = torch.where(amax > 0, qmax / amax, torch.zeros_like(amax))
    q = torch.round(m * inv).clamp(-qmax, qmax)
    return (q * scale).reshape(m.shape[0], -1)[:, :k].reshape(w.shape).to(w.dtype)


def round_pipeline(pipe, weights):
    import torch

    counts = {}
    with torch.no_grad():
        for component in ("text_encoder", "transformer", "vae"):
            module = getattr(pipe, component)
            for name, p in module.state_dict(keep_vars=True).items():
                kind = storage_type(component, name, list(p.shape), weights)
                if kind is not None and p.dtype.is_floating_point:
                    p.data.copy_(round_weight(p.data, kind))
                    counts[kind] = counts.get(kind, 0) + 1
    print(f"rounded tensors: {counts}")


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
    ap.add_argument("--weights", choices=["f32", "bf16", "f16", "int8", "int4"], default="f32",
                    help="with --diffusers: round the weights as a bundle of this type stores them")
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
        if args.weights != "f32":
            round_pipeline(pipe, args.weights)
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
