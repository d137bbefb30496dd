#!/usr/bin/env python3
"""Renders the Sana-Shapes training set: pictures of the training combinations (the checker's held-out grid is
excluded), each drawn several times with jitter, and their captions.

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/render_dataset.py [--per-combo 40] [--out out/sana-shapes]

writes OUT/dataset.npz: images uint8 [N, 64, 64, 3], combo int [N] (index into world.training_combos()), captions.
Deterministic (seed 0).
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-combo", type=int, default=40)
    ap.add_argument("--out", default="out/sana-shapes")
    args = ap.parse_args()
    t0 = time.time()
    rng = np.random.default_rng(0)
    combos = world.training_combos()
    images, index = [], []
    for i, combo in enumerate(combos):
        for _ in range(args.per_combo):
            images.append(world.render(*combo, rng=rng))
            index.append(i)
    os.makedirs(args.out, exist_ok=True)
    np.savez(os.path.join(args.out, "dataset.npz"), images=np.stack(images), combo=np.array(index, dtype=np.int64),
             captions=np.array([world.caption(*c) for c in combos]))
    print(f"{len(images)} pictures of {len(combos)} combinations in {time.time() - t0:.1f} s -> {args.out}")


if __name__ == "__main__":
    main()
