#!/usr/bin/env python3
"""Prompt-faithfulness checker for Sana-Shapes (in the spirit of GenEval's colour / shape / position checks): does each
picture show the asked shape, in the asked colour, at the asked position, on the asked background?

    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/check_faithfulness.py DIR [--reference REF_DIR] [--json OUT]
    ${PYTHON:-.venv-ref/bin/python} tools/sana_shapes/check_faithfulness.py --self-test

DIR holds grid.json (written by generate_grid.py: entries {file, prompt, shape, color, position, background, seed})
and the PNGs it names. Prints the accuracy per attribute and of all four together; with --reference (a directory
with the same file names, e.g. diffusers' pictures) also the mean PSNR and the share of pictures whose verdicts agree.

The analysis is plain pixel arithmetic, enough for this world: the background is the median of the border ring; the
shape is every pixel far from it; its colour is the nearest named colour to the median of those pixels; its position
the nearest anchor to their centroid; its kind follows from how much of its bounding box it fills and how convex it
is (a star is the only non-convex shape, a square fills its box, a circle π/4 of it, a triangle half).
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world  # noqa: E402

ATTRIBUTES = ["shape", "color", "position", "background"]


def nearest(rgb, table):
    names = list(table)
    d = [np.linalg.norm(np.asarray(table[n], float) - rgb) for n in names]
    return names[int(np.argmin(d))]


def analyse(img):
    """img: uint8 [H, W, 3]. Returns {shape, color, position, background} (None where nothing was found)."""
    x = img.astype(np.float64)
    h, w, _ = x.shape
    ring = np.concatenate([x[:2].reshape(-1, 3), x[-2:].reshape(-1, 3), x[:, :2].reshape(-1, 3),
                           x[:, -2:].reshape(-1, 3)])
    bg = np.median(ring, axis=0)
    out = {"background": nearest(bg, world.BACKGROUNDS), "shape": None, "color": None, "position": None}
    far = np.linalg.norm(x - bg, axis=2) > 60
    labels, n = ndimage.label(far)
    if n == 0:
        return out
    sizes = ndimage.sum(far, labels, range(1, n + 1))
    mask = labels == 1 + int(np.argmax(sizes))  # the largest blob; specks elsewhere are ignored
    area = mask.sum()
    if area < 12:
        return out
    out["color"] = nearest(np.median(x[mask], axis=0), world.COLORS)
    ys, xs = np.nonzero(mask)
    cy, cx = ys.mean() * 64 / h, xs.mean() * 64 / w
    out["position"] = min(world.POSITIONS, key=lambda p: (world.POSITIONS[p][1] - cx) ** 2 +
                          (world.POSITIONS[p][2] - cy) ** 2)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    corners = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)])
    solidity = area / ConvexHull(corners).volume
    fill = area / box
    if solidity < 0.8:
        out["shape"] = "star"
    elif fill > 0.88:
        out["shape"] = "square"
    elif fill > 0.64:
        out["shape"] = "circle"
    else:
        out["shape"] = "triangle"
    out["fill"], out["solidity"] = float(fill), float(solidity)
    return out


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def check(directory, reference=None):
    with open(os.path.join(directory, "grid.json")) as f:
        grid = json.load(f)
    hits = {a: 0 for a in ATTRIBUTES + ["all"]}
    rows, psnrs, agree = [], [], 0
    for e in grid:
        img = np.asarray(Image.open(os.path.join(directory, e["file"])).convert("RGB"))
        got = analyse(img)
        ok = {a: got[a] == e[a] for a in ATTRIBUTES}
        ok["all"] = all(ok.values())
        for a in ok:
            hits[a] += ok[a]
        row = {"file": e["file"], "prompt": e["prompt"], **{f"got_{a}": got[a] for a in ATTRIBUTES}, "ok": ok}
        if reference:
            ref = np.asarray(Image.open(os.path.join(reference, e["file"])).convert("RGB"))
            row["psnr"] = psnr(img, ref)
            psnrs.append(min(row["psnr"], 99.0))
            verdict_ref = analyse(ref)
            agree += all(verdict_ref[a] == got[a] for a in ATTRIBUTES)
        rows.append(row)
    n = len(grid)
    summary = {"pictures": n, "accuracy": {a: hits[a] / n for a in hits}}
    if reference:
        summary["psnr_mean_db"] = float(np.mean(psnrs))
        summary["psnr_min_db"] = float(np.min(psnrs))
        summary["same_verdicts"] = agree / n
    return summary, rows


def self_test():
    """The checker must be right on the world's own pictures: canonical and jittered renders of every combination."""
    rng = np.random.default_rng(5)
    wrong = 0
    combos = world.all_combos()
    for combo in combos:
        for img in (world.render(*combo), world.render(*combo, rng=rng), world.render(*combo, rng=rng)):
            got = analyse(img)
            if [got[a] for a in ATTRIBUTES] != list(combo):
                wrong += 1
                print("wrong:", combo, got)
    print(f"self-test: {3 * len(combos) - wrong}/{3 * len(combos)} renders judged right")
    return wrong == 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("directory", nargs="?")
    ap.add_argument("--reference")
    ap.add_argument("--json", help="write the summary and per-picture verdicts here")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        sys.exit(0 if self_test() else 1)
    if not args.directory:
        ap.error("DIR is required")
    summary, rows = check(args.directory, args.reference)
    print(json.dumps(summary, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "pictures": rows}, f, indent=1)


if __name__ == "__main__":
    main()
