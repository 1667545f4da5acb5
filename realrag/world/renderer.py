"""Procedural renderer of fine-grained "gadgets" and the camera that photographs them.

An object is a composition of a body shape, a body colour, a pattern in a second colour and one or
two parts in an accent colour. The photographer places it with a random pose, scale and position on
a random background, lights it and adds sensor noise. Everything is drawn at ``SUPERSAMPLE`` times
the output size and downscaled, so small parts stay anti-aliased at 32 px.

Pure PIL + numpy, deterministic from the ``random.Random`` that is passed in.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SUPERSAMPLE = 4
CANVAS = 128  # object canvas side, in supersampled pixels

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (255, 127, 14),
    "yellow": (250, 215, 30),
    "lime": (150, 220, 40),
    "green": (30, 140, 60),
    "teal": (0, 150, 140),
    "sky": (90, 180, 240),
    "blue": (30, 70, 200),
    "purple": (130, 60, 190),
    "magenta": (220, 40, 160),
    "pink": (250, 160, 190),
    "white": (245, 245, 240),
    "black": (30, 30, 35),
    "brown": (130, 80, 40),
}
BODY_SHAPES = ("capsule", "box", "disc", "hexagon", "bottle", "dome", "diamond", "triangle", "barrel")
PATTERNS = ("solid", "hstripes", "vstripes", "dots", "checker", "band", "diagonal", "half")
PARTS = ("antenna", "handle", "wheels", "fins", "cap", "eye", "legs", "horns")
# Parts drawn in front of the body; the others are drawn behind it.
FRONT_PARTS = frozenset({"cap", "eye"})


@dataclass(frozen=True)
class ObjectSpec:
    """Everything that defines how an object looks (its identity, independent of the photo)."""

    body: str
    body_color: str
    pattern: str
    pattern_color: str
    parts: tuple[str, ...]
    accent_color: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["parts"] = list(self.parts)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ObjectSpec:
        return cls(**{**d, "parts": tuple(d["parts"])})

    def describe(self, rng: random.Random, detail: float = 0.6) -> str:
        """A caption that names attributes (a random subset), as a web alt-text would."""
        words = [self.body_color, self.body if self.body != "disc" else "round"]
        if self.pattern != "solid" and rng.random() < detail:
            words.insert(1, f"{self.pattern_color} {PATTERN_WORDS[self.pattern]}")
        text = " ".join(words)
        extras = [p for p in self.parts if rng.random() < detail]
        if extras:
            accent = f"{self.accent_color} " if rng.random() < detail else ""
            text += " with " + " and ".join(f"{accent}{PART_WORDS[p]}" for p in extras)
        return text


PATTERN_WORDS = {
    "solid": "plain",
    "hstripes": "striped",
    "vstripes": "pinstriped",
    "dots": "dotted",
    "checker": "checkered",
    "band": "banded",
    "diagonal": "diagonal striped",
    "half": "two-tone",
}
PART_WORDS = {
    "antenna": "antenna",
    "handle": "handle",
    "wheels": "wheels",
    "fins": "fins",
    "cap": "cap",
    "eye": "window",
    "legs": "legs",
    "horns": "horns",
}


# ---------------------------------------------------------------------------------------------
# object
# ---------------------------------------------------------------------------------------------


def _shade(color: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, c * factor))) for c in color)


def _body_geometry(body: str) -> tuple[list[tuple[float, float]] | None, tuple[float, float, float, float]]:
    """Polygon (or None for an ellipse-like body drawn separately) and bbox, in canvas pixels."""
    c = CANVAS / 2
    boxes = {
        "capsule": (0.24, 0.36),
        "box": (0.30, 0.26),
        "disc": (0.29, 0.29),
        "hexagon": (0.31, 0.28),
        "bottle": (0.22, 0.34),
        "dome": (0.30, 0.28),
        "diamond": (0.30, 0.35),
        "triangle": (0.33, 0.30),
        "barrel": (0.34, 0.24),
    }
    hw, hh = (v * CANVAS * 0.8 for v in boxes[body])
    bbox = (c - hw, c - hh, c + hw, c + hh)
    x0, y0, x1, y1 = bbox
    if body == "hexagon":
        pts = [(c + hw * math.cos(a), c + hh * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 7)[:-1]]
        return pts, bbox
    if body == "diamond":
        return [(c, y0), (x1, c), (c, y1), (x0, c)], bbox
    if body == "triangle":
        return [(c, y0), (x1, y1), (x0, y1)], bbox
    if body == "bottle":
        neck = hw * 0.45
        shoulder = y0 + hh * 0.55
        return [(c - neck, y0), (c + neck, y0), (c + neck, shoulder - 4), (x1, shoulder + 6), (x1, y1),
                (x0, y1), (x0, shoulder + 6), (c - neck, shoulder - 4)], bbox
    return None, bbox


def _body_mask(body: str) -> tuple[Image.Image, tuple[float, float, float, float]]:
    mask = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(mask)
    pts, bbox = _body_geometry(body)
    x0, y0, x1, y1 = bbox
    if pts is not None:
        draw.polygon(pts, fill=255)
    elif body == "capsule":
        draw.rounded_rectangle(bbox, radius=(x1 - x0) / 2, fill=255)
    elif body == "box":
        draw.rounded_rectangle(bbox, radius=6, fill=255)
    elif body in ("disc", "barrel"):
        if body == "barrel":
            draw.rounded_rectangle(bbox, radius=(y1 - y0) / 2.2, fill=255)
        else:
            draw.ellipse(bbox, fill=255)
    elif body == "dome":
        mid = (y0 + y1) / 2
        draw.pieslice((x0, y0, x1, y0 + 2 * (mid - y0)), 180, 360, fill=255)
        draw.rectangle((x0, mid, x1, y1), fill=255)
    else:
        raise ValueError(f"unknown body shape {body!r}")
    return mask, bbox


def _pattern_layer(pattern: str, color, bbox) -> Image.Image:
    layer = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0, x1, y1 = bbox
    w, h = x1 - x0, y1 - y0
    fill = (*color, 255)
    if pattern == "solid":
        pass
    elif pattern == "hstripes":
        period = h / 3.5
        y = y0 + period * 0.35
        while y < y1:
            draw.rectangle((x0 - 2, y, x1 + 2, y + period / 2), fill=fill)
            y += period
    elif pattern == "vstripes":
        period = w / 3.5
        x = x0 + period * 0.35
        while x < x1:
            draw.rectangle((x, y0 - 2, x + period / 2, y1 + 2), fill=fill)
            x += period
    elif pattern == "dots":
        r = min(w, h) * 0.11
        for fx in (0.28, 0.72):
            for fy in (0.3, 0.72):
                cx, cy = x0 + fx * w, y0 + fy * h
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif pattern == "checker":
        n = 3
        for i in range(n):
            for j in range(n):
                if (i + j) % 2 == 0:
                    draw.rectangle((x0 + i * w / n, y0 + j * h / n, x0 + (i + 1) * w / n, y0 + (j + 1) * h / n), fill=fill)
    elif pattern == "band":
        draw.rectangle((x0 - 2, y0 + 0.38 * h, x1 + 2, y0 + 0.66 * h), fill=fill)
    elif pattern == "diagonal":
        period = (w + h) / 4.0
        for k in range(-6, 7):
            off = k * period
            draw.polygon([(x0 + off, y1), (x0 + off + period / 2, y1), (x0 + off + period / 2 + h, y0),
                          (x0 + off + h, y0)], fill=fill)
    elif pattern == "half":
        draw.rectangle((x0 - 2, y0 + h / 2, x1 + 2, y1 + 2), fill=fill)
    else:
        raise ValueError(f"unknown pattern {pattern!r}")
    return layer


def _draw_part(draw: ImageDraw.ImageDraw, part: str, bbox, color, outline) -> None:
    x0, y0, x1, y1 = bbox
    cx = (x0 + x1) / 2
    w, h = x1 - x0, y1 - y0
    lw = 5
    if part == "antenna":
        draw.line((cx, y0 + 4, cx, y0 - 0.30 * h), fill=outline, width=lw)
        r = 0.09 * w + 2
        draw.ellipse((cx - r, y0 - 0.30 * h - r, cx + r, y0 - 0.30 * h + r), fill=color, outline=outline, width=2)
    elif part == "handle":
        draw.arc((cx - 0.32 * w, y0 - 0.32 * h, cx + 0.32 * w, y0 + 0.3 * h), 180, 360, fill=color, width=9)
    elif part == "wheels":
        r = 0.14 * w + 2
        for fx in (0.25, 0.75):
            wx = x0 + fx * w
            draw.ellipse((wx - r, y1 - r * 0.6, wx + r, y1 + r * 1.4), fill=color, outline=outline, width=3)
    elif part == "fins":
        fy = y0 + 0.55 * h
        draw.polygon([(x0 + 4, fy - 0.22 * h), (x0 - 0.28 * w, fy + 0.28 * h), (x0 + 4, fy + 0.22 * h)], fill=color, outline=outline)
        draw.polygon([(x1 - 4, fy - 0.22 * h), (x1 + 0.28 * w, fy + 0.28 * h), (x1 - 4, fy + 0.22 * h)], fill=color, outline=outline)
    elif part == "cap":
        cw = 0.5 * w
        draw.rounded_rectangle((cx - cw / 2, y0 - 0.16 * h, cx + cw / 2, y0 + 0.1 * h), radius=4, fill=color, outline=outline, width=3)
    elif part == "eye":
        r = 0.17 * min(w, h) + 3
        cy = y0 + 0.45 * h
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 250, 250), outline=outline, width=3)
        pr = r * 0.55
        draw.ellipse((cx - pr, cy - pr, cx + pr, cy + pr), fill=color)
    elif part == "legs":
        for fx in (0.22, 0.5, 0.78):
            lx = x0 + fx * w
            draw.line((lx, y1 - 4, lx, y1 + 0.25 * h), fill=color, width=8)
    elif part == "horns":
        for sx, tip in ((x0 + 0.18 * w, x0 - 0.08 * w), (x1 - 0.18 * w, x1 + 0.08 * w)):
            corners = [(sx - 0.12 * w, y0 + 0.15 * h), (tip, y0 - 0.30 * h), (sx + 0.12 * w, y0 + 0.15 * h)]
            draw.polygon(corners, fill=color, outline=outline)
    else:
        raise ValueError(f"unknown part {part!r}")


def render_object(spec: ObjectSpec) -> Image.Image:
    """The object alone on a transparent CANVAS x CANVAS RGBA image (canonical pose)."""
    body_rgb = COLORS[spec.body_color]
    outline = _shade(body_rgb, 0.45)
    accent = COLORS[spec.accent_color]
    mask, bbox = _body_mask(spec.body)

    img = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    back = ImageDraw.Draw(img)
    for part in spec.parts:
        if part not in FRONT_PARTS:
            _draw_part(back, part, bbox, accent, outline)

    body = Image.new("RGBA", (CANVAS, CANVAS), (*body_rgb, 255))
    pattern = _pattern_layer(spec.pattern, COLORS[spec.pattern_color], bbox)
    body = Image.alpha_composite(body, pattern)
    # a soft highlight on the upper-left: reads as a solid, glossy object
    shade = Image.linear_gradient("L").rotate(45, resample=Image.Resampling.BILINEAR).resize((CANVAS, CANVAS))
    shade_arr = 0.78 + 0.35 * (1.0 - np.asarray(shade, np.float32) / 255.0)
    body_arr = np.asarray(body, np.float32)
    body_arr[..., :3] = np.clip(body_arr[..., :3] * shade_arr[..., None], 0, 255)
    body = Image.fromarray(body_arr.astype(np.uint8), "RGBA")
    body.putalpha(mask)
    img = Image.alpha_composite(img, body)

    front = ImageDraw.Draw(img)
    # outline of the body: the edge survives downscaling better than a colour step
    edge = mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(5))
    edge_layer = Image.new("RGBA", (CANVAS, CANVAS), (*outline, 255))
    edge_layer.putalpha(edge)
    img = Image.alpha_composite(img, edge_layer)
    front = ImageDraw.Draw(img)
    for part in spec.parts:
        if part in FRONT_PARTS:
            _draw_part(front, part, bbox, accent, outline)
    return img


# ---------------------------------------------------------------------------------------------
# photographer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoParams:
    angle: float
    scale: float
    dx: float
    dy: float
    bg_top: tuple[int, int, int]
    bg_bottom: tuple[int, int, int]
    horizon: float
    brightness: float
    cast: tuple[float, float, float]
    light_angle: float
    light_strength: float
    noise: float
    blur: float


def sample_photo_params(rng: random.Random) -> PhotoParams:
    def muted() -> tuple[int, int, int]:
        base = rng.uniform(60, 220)
        return tuple(int(max(0, min(255, base + rng.uniform(-30, 30)))) for _ in range(3))

    return PhotoParams(
        angle=rng.uniform(-28, 28),
        scale=rng.uniform(0.8, 1.2),
        dx=rng.uniform(-0.14, 0.14),
        dy=rng.uniform(-0.12, 0.12),
        bg_top=muted(),
        bg_bottom=muted(),
        horizon=rng.uniform(0.45, 0.85),
        brightness=rng.uniform(0.78, 1.18),
        cast=tuple(rng.uniform(0.92, 1.08) for _ in range(3)),
        light_angle=rng.uniform(0, 2 * math.pi),
        light_strength=rng.uniform(0.0, 0.25),
        noise=rng.uniform(0.0, 5.0),
        blur=rng.choice([0.0, 0.0, 0.0, 0.4, 0.7]),
    )


def _background(size: int, p: PhotoParams, rng: np.random.Generator) -> np.ndarray:
    """A wall-and-table scene: two tones split at a soft horizon, with low-frequency texture."""
    ys = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    t = 1 / (1 + np.exp(-(ys - p.horizon) * 30))
    img = (1 - t) * np.array(p.bg_top, np.float32) + t * np.array(p.bg_bottom, np.float32)
    img = np.broadcast_to(img, (size, size, 3)).copy()
    coarse = rng.normal(0, 6, (4, 4, 1)).repeat(3, axis=2) + rng.normal(0, 3, (4, 4, 3)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(np.clip(coarse + 128, 0, 255).astype(np.uint8), "RGB").resize((size, size), Image.Resampling.BICUBIC),
        np.float32,
    )
    return img + (texture - 128)


def photograph(obj: Image.Image, size: int, p: PhotoParams, noise_seed: int) -> Image.Image:
    """Place the canonical object render in a scene and return a ``size`` x ``size`` RGB photo."""
    big = size * SUPERSAMPLE
    nrng = np.random.default_rng(noise_seed)
    scene = _background(big, p, nrng)

    side = max(8, int(round(big * p.scale)))
    placed = obj.rotate(p.angle, resample=Image.Resampling.BICUBIC, expand=False).resize((side, side), Image.Resampling.LANCZOS)
    ox = int(round((big - side) / 2 + p.dx * big))
    oy = int(round((big - side) / 2 + p.dy * big))

    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    shadow = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    shadow_alpha = placed.getchannel("A").point(lambda a: int(a * 0.45))
    shadow.paste(Image.new("RGBA", placed.size, (10, 10, 10, 255)), (ox + big // 40, oy + big // 30), shadow_alpha)
    shadow = shadow.filter(ImageFilter.GaussianBlur(big / 60))
    layer.paste(placed, (ox, oy), placed)

    base = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8), "RGB").convert("RGBA")
    base = Image.alpha_composite(base, shadow)
    base = Image.alpha_composite(base, layer).convert("RGB")
    photo = base.resize((size, size), Image.Resampling.LANCZOS)

    arr = np.asarray(photo, np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(1, size - 1) - 0.5
    light = 1 + p.light_strength * (xx * math.cos(p.light_angle) + yy * math.sin(p.light_angle)) * 2
    arr = arr * p.brightness * np.array(p.cast, np.float32) * light[..., None]
    arr = arr + nrng.normal(0, p.noise, arr.shape).astype(np.float32)
    photo = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")
    if p.blur > 0:
        photo = photo.filter(ImageFilter.GaussianBlur(p.blur * size / 32))
    return photo


def take_photo(spec: ObjectSpec, size: int, rng: random.Random, _cache: dict | None = None) -> Image.Image:
    """One random photo of ``spec``; ``_cache`` (spec -> canonical render) saves re-drawing."""
    if _cache is not None:
        obj = _cache.get(spec)
        if obj is None:
            obj = _cache[spec] = render_object(spec)
    else:
        obj = render_object(spec)
    params = sample_photo_params(rng)
    return photograph(obj, size, params, noise_seed=rng.getrandbits(32))
