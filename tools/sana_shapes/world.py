"""The Sana-Shapes world: one filled shape of a named colour at a named position on a plain background, and the
English caption that describes it. Shared by the renderer, the trainers, the exporter and the faithfulness checker.

A picture is SIZE×SIZE RGB. Shapes are drawn at 4× resolution and box-filtered down (anti-aliased edges), with a
little jitter in size and position so the model sees more than 560 distinct pictures.
"""
import itertools
import random

import numpy as np
from PIL import Image, ImageDraw

SIZE = 64
SHAPES = ["circle", "square", "triangle", "star"]
COLORS = {  # name -> RGB; all shape colours are also checkable against every background
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (40, 70, 225),
    "yellow": (240, 210, 30),
    "purple": (140, 50, 190),
    "orange": (250, 130, 20),
}
BACKGROUNDS = {
    "white": (245, 245, 245),
    "black": (20, 20, 20),
    "gray": (128, 128, 128),
    "blue": COLORS["blue"],
    "yellow": COLORS["yellow"],
}
POSITIONS = {  # name -> (phrase, centre x, centre y) in a 64×64 picture
    "left": ("on the left", 16, 32),
    "right": ("on the right", 48, 32),
    "top": ("at the top", 32, 16),
    "bottom": ("at the bottom", 32, 48),
    "center": ("in the center", 32, 32),
}


def caption(shape, color, position, background):
    article = "an" if color[0] in "aeiou" else "a"
    return f"{article} {color} {shape} {POSITIONS[position][0]} on a {background} background"


def all_combos():
    """Every (shape, colour, position, background) with a background different from the shape's colour: 560."""
    return [c for c in itertools.product(SHAPES, COLORS, POSITIONS, BACKGROUNDS) if c[1] != c[3]]


def held_out_grid():
    """The checker's prompts: for every (shape, colour) pair, two (position, background) combinations chosen with a
    fixed seed, 48 in all. They are never shown to the model in training, so the checker measures composition, not
    memory of a picture it has seen."""
    rng = random.Random(2024)
    grid = []
    for shape, color in itertools.product(SHAPES, COLORS):
        options = [(p, b) for p, b in itertools.product(POSITIONS, BACKGROUNDS) if b != color]
        for position, background in rng.sample(options, 2):
            grid.append((shape, color, position, background))
    return grid


def training_combos():
    held = set(held_out_grid())
    return [c for c in all_combos() if c not in held]


def _polygon(shape, cx, cy, r):
    if shape == "square":
        s = r * 0.85  # same visual weight as a circle of radius r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":  # equilateral, pointing up, centred on its centroid
        return [(cx + r * np.cos(a), cy - r * np.sin(a)) for a in np.radians([90, 210, 330])]
    if shape == "star":  # five points, inner radius 0.42 r
        pts = []
        for k in range(10):
            a = np.radians(90 + 36 * k)
            rr = r if k % 2 == 0 else 0.42 * r
            pts.append((cx + rr * np.cos(a), cy - rr * np.sin(a)))
        return pts
    raise ValueError(shape)


def render(shape, color, position, background, rng=None):
    """Returns a SIZE×SIZE×3 uint8 picture. rng (numpy Generator) adds jitter; None draws the canonical picture."""
    _, cx, cy = POSITIONS[position]
    r = 10.5
    if rng is not None:
        cx += rng.uniform(-3, 3)
        cy += rng.uniform(-3, 3)
        r = rng.uniform(9, 12)
    if shape in ("triangle", "star"):
        r *= 1.2  # of the same circumradius, these look much smaller than a circle
    k = 4
    img = Image.new("RGB", (SIZE * k, SIZE * k), BACKGROUNDS[background])
    draw = ImageDraw.Draw(img)
    if shape == "circle":
        draw.ellipse([(cx - r) * k, (cy - r) * k, (cx + r) * k, (cy + r) * k], fill=COLORS[color])
    else:
        draw.polygon([(x * k, y * k) for x, y in _polygon(shape, cx, cy, r)], fill=COLORS[color])
    return np.asarray(img.resize((SIZE, SIZE), Image.BOX), dtype=np.uint8)
