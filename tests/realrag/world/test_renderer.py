import random

import numpy as np

from realrag.world.catalog import VARIATION_AXES, WorldConfig, build_catalog
from realrag.world.renderer import BODY_SHAPES, COLORS, PART_WORDS, PATTERN_WORDS, ObjectSpec, render_object, take_photo

SPEC = ObjectSpec("hexagon", "teal", "hstripes", "red", ("cap", "wheels"), "magenta")


def _arr(im):
    return np.asarray(im, dtype=np.int16)


def test_photo_is_deterministic_per_seed_and_varies_across_seeds():
    a = take_photo(SPEC, 32, random.Random("x"))
    b = take_photo(SPEC, 32, random.Random("x"))
    c = take_photo(SPEC, 32, random.Random("y"))
    assert a.size == (32, 32) and a.mode == "RGB"
    assert np.array_equal(_arr(a), _arr(b))
    assert np.abs(_arr(a) - _arr(c)).mean() > 5  # another pose, background and light


def test_every_attribute_changes_the_canonical_render():
    base = _arr(render_object(SPEC))
    variants = [
        ObjectSpec("disc", *[getattr(SPEC, f) for f in ("body_color", "pattern", "pattern_color", "parts", "accent_color")]),
        ObjectSpec(SPEC.body, SPEC.body_color, "dots", SPEC.pattern_color, SPEC.parts, SPEC.accent_color),
        ObjectSpec(SPEC.body, SPEC.body_color, SPEC.pattern, "yellow", SPEC.parts, SPEC.accent_color),
        ObjectSpec(SPEC.body, SPEC.body_color, SPEC.pattern, SPEC.pattern_color, ("cap", "horns"), SPEC.accent_color),
        ObjectSpec(SPEC.body, SPEC.body_color, SPEC.pattern, SPEC.pattern_color, SPEC.parts, "lime"),
    ]
    for v in variants:
        diff = np.abs(_arr(render_object(v)) - base)
        assert diff.max() > 100, v  # a visible change somewhere ...
        assert (diff.sum(-1) > 60).mean() < 0.5, v  # ... but the object stays mostly the same


def test_catalogue_structure():
    classes = build_catalog(WorldConfig())
    assert len(classes) == 64
    assert sum(c.seen for c in classes) == 36
    assert len({c.name for c in classes}) == 64 and len({c.spec for c in classes}) == 64
    lines = {}
    for c in classes:
        lines.setdefault(c.line, []).append(c)
    assert len(lines) == 16
    fully_unseen = [line for line, cs in lines.items() if not any(c.seen for c in cs)]
    assert len(fully_unseen) == 4
    assert {lines[line][0].axis for line in fully_unseen} == set(VARIATION_AXES)  # spread over the axes
    for line, cs in lines.items():
        assert all(c.name.startswith(line + " ") for c in cs)  # variants share "Brand Line"
        # near duplicates: exactly one attribute differs between any two variants
        for a in cs:
            for b in cs:
                if a is not b:
                    da, db = a.spec.as_dict(), b.spec.as_dict()
                    assert sum(da[k] != db[k] for k in da) == 1
    # invented names carry no appearance words
    vocabulary = set(COLORS) | set(BODY_SHAPES) | set(PATTERN_WORDS.values()) | set(PART_WORDS.values())
    for c in classes:
        assert not set(c.name.lower().split()) & vocabulary
    assert build_catalog(WorldConfig()) == classes  # deterministic
    assert build_catalog(WorldConfig(seed=1)) != classes
