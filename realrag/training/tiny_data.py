"""Write a tiny synthetic object corpus (folder tree) for trying `realrag train-retriever` offline.

    python -m realrag.training.tiny_data /tmp/tiny-objects --objects 24 --per-object 4

Each object is a coloured shape on a jittered background; its folder name is the object id and its
label ("teal circle") comes from labels.json.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

SHAPES = ("square", "circle", "triangle", "bar")
HUES = ("red", "orange", "yellow", "lime", "green", "teal", "cyan", "blue", "violet", "magenta", "pink", "brown")


def draw(shape: str, colour: tuple[int, int, int], rng: random.Random, size: int) -> Image.Image:
    background = tuple(rng.randint(90, 200) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    cx, cy = size * rng.uniform(0.35, 0.65), size * rng.uniform(0.35, 0.65)
    r = size * rng.uniform(0.2, 0.32)
    if shape == "square":
        pen.rectangle([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=colour)
    else:
        pen.rectangle([cx - r, cy - r / 3, cx + r, cy + r / 3], fill=colour)
    return image


def write_tiny_objects(root: Path, objects: int = 24, per_object: int = 4, size: int = 64, seed: int = 0) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    labels = {}
    for i in range(objects):
        hue_index, shape = i % len(HUES), SHAPES[(i // len(HUES)) % len(SHAPES)]
        rounds = i // (len(HUES) * len(SHAPES))
        label = f"{HUES[hue_index]} {shape}" + (f" {rounds + 1}" if rounds else "")
        object_id = label.replace(" ", "-")
        r, g, b = colorsys.hsv_to_rgb(hue_index / len(HUES), 0.8, 0.5 + 0.4 * ((rounds + 1) % 2))
        colour = (int(r * 255), int(g * 255), int(b * 255))
        folder = root / object_id
        folder.mkdir(exist_ok=True)
        for k in range(per_object):
            draw(shape, colour, rng, size).save(folder / f"{k}.png")
        labels[object_id] = label
    (root / "labels.json").write_text(json.dumps(labels, indent=2))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--objects", type=int, default=24)
    parser.add_argument("--per-object", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_tiny_objects(args.root, args.objects, args.per_object, args.size, args.seed))


if __name__ == "__main__":
    main()
