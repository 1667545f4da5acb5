"""The world's catalogue: object classes, their invented names, the seen/unseen split, captions.

Classes come in groups of near-duplicates (a product line): all variants of a line share one design
and differ in exactly one attribute (the line's ``axis``: pattern colour, accent colour, pattern
or one part). Names are "Brand Line Variant", drawn from invented syllables independently of the
design, so a name never describes the look; variants of a line share "Brand Line" as real product
families do, and a brand owns unrelated lines.

Unseen classes are whole lines (novel objects) plus one variant of some seen lines (a novel
variant next to seen siblings); the generator never trains on them.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field

from realrag.world.renderer import BODY_SHAPES, COLORS, PARTS, PATTERNS, ObjectSpec

VARIATION_AXES = ("pattern_color", "accent_color", "pattern", "part")
# Parts that are big enough for their colour to read at 32 px.
LARGE_PARTS = ("handle", "wheels", "fins", "cap", "legs", "horns")

_ONSETS = ["b", "d", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "tr", "gl", "st", "qu", "th"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou"]
_CODAS = ["", "", "n", "r", "x", "l", "s", "k"]


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    brands: int = 8
    lines_per_brand: int = 2
    variants_per_line: int = 4
    unseen_lines: int = 4  # whole lines that only the corpus and the retriever see
    unseen_variants_per_line: int = 1  # in each remaining line
    image_size: int = 32
    # photos per class in each split
    web: int = 48  # captioned "web" photos: the base CLIP's training data
    train: int = 48  # real photos: generator (seen classes only) and retriever training
    evaluator: int = 40  # real photos: the evaluator's training data
    corpus: int = 8  # the retrieval database
    test: int = 12  # held-out real photos: FID/KID reference, CLIP-I, evaluator accuracy
    # anonymous seen objects (random designs) that only the generator trains on, so that it learns to
    # render arbitrary compositions from a reference; none is within one attribute of an unseen object
    extra_objects: int = 1500
    extra_photos: int = 6
    name_rate: float = 0.3  # share of web captions that use the object's name
    label_noise: float = 0.15  # share of web captions that belong to another object

    @classmethod
    def quick(cls, seed: int = 0) -> WorldConfig:
        return cls(seed=seed, brands=3, lines_per_brand=2, variants_per_line=3, unseen_lines=2,
                   web=16, train=16, evaluator=12, corpus=4, test=6, extra_objects=24, extra_photos=3)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ObjectClass:
    index: int
    name: str
    slug: str
    line: str
    axis: str
    seen: bool
    spec: ObjectSpec = field(repr=False)

    def as_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "slug": self.slug, "line": self.line,
                "axis": self.axis, "seen": self.seen, "spec": self.spec.as_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ObjectClass:
        return cls(**{**d, "spec": ObjectSpec.from_dict(d["spec"])})


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _word(rng: random.Random, syllables: int) -> str:
    w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(syllables)) + rng.choice(_CODAS)
    return w.capitalize()


def _distinct_colors(rng: random.Random, k: int, exclude: tuple[str, ...] = ()) -> list[str]:
    return rng.sample([c for c in COLORS if c not in exclude], k)


def build_catalog(cfg: WorldConfig) -> list[ObjectClass]:
    rng = random.Random(f"realrag-world/{cfg.seed}/catalog")
    n_lines = cfg.brands * cfg.lines_per_brand
    if cfg.unseen_lines >= n_lines:
        raise ValueError("unseen_lines must leave at least one seen line")
    if not 0 <= cfg.unseen_variants_per_line < cfg.variants_per_line:
        raise ValueError("unseen_variants_per_line must be in [0, variants_per_line)")

    used_words: set[str] = set()

    def fresh(syllables: int) -> str:
        while True:
            w = _word(rng, syllables)
            if w not in used_words and 3 <= len(w) <= 9:
                used_words.add(w)
                return w

    brands = [fresh(2) for _ in range(cfg.brands)]
    line_names = [f"{brands[i // cfg.lines_per_brand]} {fresh(2)}" for i in range(n_lines)]
    bodies = list(BODY_SHAPES) * (n_lines // len(BODY_SHAPES) + 1)
    rng.shuffle(bodies)
    axes = [VARIATION_AXES[li % len(VARIATION_AXES)] for li in range(n_lines)]
    unseen_line_ids = _pick_unseen_lines(rng, axes, bodies[:n_lines], cfg.unseen_lines)

    classes: list[ObjectClass] = []
    designs: set[ObjectSpec] = set()
    for li, line in enumerate(line_names):
        axis = axes[li]
        while True:
            body_color, pattern_color, accent = _distinct_colors(rng, 3)
            pattern = rng.choice(PATTERNS[1:])  # a visible pattern, so its colour matters
            parts = tuple(rng.sample(LARGE_PARTS, 2))
            base = dict(body=bodies[li], body_color=body_color, pattern=pattern,
                        pattern_color=pattern_color, parts=parts, accent_color=accent)
            k = cfg.variants_per_line
            if axis == "pattern_color":
                values = _distinct_colors(rng, k, exclude=(body_color,))
            elif axis == "accent_color":
                values = _distinct_colors(rng, k, exclude=(body_color,))
            elif axis == "pattern":
                values = rng.sample(PATTERNS[1:], k)
            else:  # the second part varies
                values = rng.sample([p for p in PARTS if p != parts[0]], k)
            specs = []
            for v in values:
                d = dict(base)
                if axis == "part":
                    d["parts"] = (parts[0], v)
                else:
                    d[axis] = v
                specs.append(ObjectSpec(**d))
            if len(set(specs)) == k and not designs.intersection(specs):
                designs.update(specs)
                break
        unseen_here = set(range(k)) if li in unseen_line_ids else set(rng.sample(range(k), cfg.unseen_variants_per_line))
        variant_words: set[str] = set()
        for vi, spec in enumerate(specs):
            while True:
                variant = _word(rng, rng.choice([1, 2]))
                if variant not in variant_words and variant not in brands:
                    variant_words.add(variant)
                    break
            name = f"{line} {variant}"
            classes.append(ObjectClass(index=len(classes), name=name, slug=slugify(name), line=line,
                                       axis=axis, seen=vi not in unseen_here, spec=spec))
    if len({c.slug for c in classes}) != len(classes):
        raise RuntimeError("name collision in the catalogue; change the seed")
    return classes


def _pick_unseen_lines(rng: random.Random, axes: list[str], bodies: list[str], k: int) -> set[int]:
    """Spread the novel lines over the variation axes, preferring lines whose body shape also
    occurs in another line (a novel object is a new composition, not a new primitive)."""
    chosen: set[int] = set()
    for j in range(k):
        axis = VARIATION_AXES[j % len(VARIATION_AXES)]
        pool = [i for i, a in enumerate(axes) if i not in chosen and (a == axis or j >= len(VARIATION_AXES))]
        if not pool:
            pool = [i for i in range(len(axes)) if i not in chosen]
        shared = [i for i in pool if sum(b == bodies[i] for b in bodies) > 1]
        chosen.add(rng.choice(shared or pool))
    return chosen


def attribute_distance(a: ObjectSpec, b: ObjectSpec) -> int:
    da, db = a.as_dict(), b.as_dict()
    da["parts"], db["parts"] = set(da["parts"]), set(db["parts"])
    return sum(da[k] != db[k] for k in da)


def random_spec(rng: random.Random) -> ObjectSpec:
    body_color, pattern_color, accent = _distinct_colors(rng, 3)
    return ObjectSpec(body=rng.choice(BODY_SHAPES), body_color=body_color, pattern=rng.choice(PATTERNS),
                      pattern_color=pattern_color, parts=tuple(rng.sample(PARTS, rng.choice([1, 2]))),
                      accent_color=accent)


def extra_specs(cfg: WorldConfig, classes: list[ObjectClass]) -> list[ObjectSpec]:
    """The anonymous seen objects: random designs, none equal to a catalogue object and none within
    one attribute of an unseen one (an unseen object stays novel, not a near-copy of training data)."""
    rng = random.Random(f"realrag-world/{cfg.seed}/extras")
    unseen = [c.spec for c in classes if not c.seen]
    taken = {c.spec for c in classes}
    out: list[ObjectSpec] = []
    while len(out) < cfg.extra_objects:
        spec = random_spec(rng)
        if spec in taken or any(attribute_distance(spec, u) <= 1 for u in unseen):
            continue
        taken.add(spec)
        out.append(spec)
    return out


GENERIC_PROMPT = "a photo of a product"
PROMPT_TEMPLATE = "a photo of a {name}"

_NAME_CAPTIONS = ["the {name}", "{name}, a {desc}", "my new {name}", "a {desc} ({name})", "{name} product photo"]
_PLAIN_CAPTIONS = ["a photo of a {desc}", "{desc}", "a {desc} on a table", "close-up of a {desc}", "a small {desc}"]


def web_caption(cls: ObjectClass, classes: list[ObjectClass], cfg: WorldConfig, rng: random.Random) -> str:
    """An alt-text-like caption: mostly attributes, sometimes the name, sometimes another object's."""
    if rng.random() < cfg.label_noise:
        cls = rng.choice(classes)
    desc = cls.spec.describe(rng)
    if rng.random() < cfg.name_rate:
        return rng.choice(_NAME_CAPTIONS).format(name=cls.name, desc=desc)
    return rng.choice(_PLAIN_CAPTIONS).format(desc=desc)
