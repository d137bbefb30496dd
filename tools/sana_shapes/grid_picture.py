#!/usr/bin/env python3
"""The picture of the held-out grid in docs/SANA_SHAPES.md: every third held-out prompt (16 of 48), seed 0, from a
directory generate_grid.py wrote, 2× enlarged (nearest neighbour) in two rows of eight.

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/grid_picture.py out/sana-shapes/grid/diffusers models/sana-shapes-grid.png
"""
import argparse
import json
import os

from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("directory")
    ap.add_argument("output")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with open(os.path.join(args.directory, "grid.json")) as f:
        entries = [e for e in json.load(f) if e["seed"] == args.seed]
    chosen = entries[::3]  # 16 prompts: four colours of each shape
    cols, cell = 8, 128
    sheet = Image.new("RGB", (cols * cell, (len(chosen) + cols - 1) // cols * cell))
    for i, e in enumerate(chosen):
        img = Image.open(os.path.join(args.directory, e["file"])).convert("RGB").resize((cell, cell), Image.NEAREST)
        sheet.paste(img, (i % cols * cell, i // cols * cell))
    sheet.save(args.output)
    print("\n".join(f"{i:2d} {e['prompt']}" for i, e in enumerate(chosen)))


if __name__ == "__main__":
    main()
