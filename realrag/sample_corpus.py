"""A small corpus the project draws itself (no downloads): invented objects, a few photos each."""

from __future__ import annotations

import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

OBJECTS = {
    "zorblat-x1": ("Zorblat X1", "a boxy teal hatchback with round amber lights", (32, 160, 150), "box"),
    "quenta-sprite": ("Quenta Sprite", "a low crimson roadster with a white stripe", (190, 30, 40), "wedge"),
    "helvor-mk2": ("Helvor Mk2", "a tall mustard van with a black roof", (220, 170, 40), "tall"),
    "ambrix-ray": ("Ambrix Ray", "a violet teardrop coupe with silver wheels", (120, 60, 170), "drop"),
}


@dataclass
class SampleImage:
    image: Image.Image
    caption: str
    object_id: str
    label: str


def draw_object(kind: str, color: tuple[int, int, int], rng: random.Random, size: int = 128) -> Image.Image:
    sky = tuple(rng.randint(150, 235) for _ in range(3))
    img = Image.new("RGB", (size, size), sky)
    d = ImageDraw.Draw(img)
    ground = size * rng.uniform(0.62, 0.72)
    d.rectangle([0, ground, size, size], fill=tuple(rng.randint(60, 120) for _ in range(3)))
    cx, scale = size * rng.uniform(0.4, 0.6), size * rng.uniform(0.28, 0.36)
    top = ground - scale * (1.1 if kind == "tall" else 0.7)
    if kind == "drop":
        d.ellipse([cx - scale, top, cx + scale, ground], fill=color)
    elif kind == "wedge":
        d.polygon([(cx - scale, ground), (cx + scale, ground), (cx + scale * 0.6, top), (cx - scale * 0.2, top + 6)], fill=color)
        d.line([(cx - scale, ground - 8), (cx + scale, ground - 8)], fill="white", width=3)
    else:
        d.rectangle([cx - scale, top, cx + scale, ground], fill=color)
        if kind == "tall":
            d.rectangle([cx - scale, top, cx + scale, top + 8], fill="black")
        else:
            for dx in (-0.7, 0.7):
                d.ellipse([cx + dx * scale - 5, top + 8, cx + dx * scale + 5, top + 18], fill=(255, 180, 40))
    for dx in (-0.6, 0.6):
        wheel = (200, 200, 210) if kind == "drop" else (25, 25, 25)
        d.ellipse([cx + dx * scale - 9, ground - 9, cx + dx * scale + 9, ground + 9], fill=wheel)
    return img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.8)))


def sample_corpus(photos_per_object: int = 3, seed: int = 0) -> list[SampleImage]:
    rng = random.Random(seed)
    out = []
    for object_id, (label, description, color, kind) in OBJECTS.items():
        for _ in range(photos_per_object):
            out.append(SampleImage(draw_object(kind, color, rng), f"a photo of the {label}, {description}", object_id, label))
    return out
