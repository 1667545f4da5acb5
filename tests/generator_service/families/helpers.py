"""Shared helpers for the generator-family tests: packaged tiny specs, inputs, reference images."""

from __future__ import annotations

import tomllib

import numpy as np
from PIL import Image

from generator_service.families.base import GenerationInputs
from services.registry import PACKAGED_MODELS, ModelSpec


def packaged_spec(key: str, **overrides) -> ModelSpec:
    with PACKAGED_MODELS.open("rb") as fh:
        body = dict(tomllib.load(fh)["models"][key])
    body.update(overrides)
    return ModelSpec(key=key, **body)


def reference_image(index: int, size: int = 48) -> Image.Image:
    """A distinct, deterministic 'retrieved photo' per index."""
    rng = np.random.RandomState(1000 + index)
    return Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8"))


def make_inputs(**overrides) -> GenerationInputs:
    args = dict(prompt="a photo of a red fox", seeds=[7], steps=3, guidance=5.0, width=64, height=64)
    args.update(overrides)
    return GenerationInputs(**args)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.int16)


# --- the generator contract, checked the same way for every family --------------------------


def check_reproducible(generator, references, **overrides) -> None:
    first = generator.generate(make_inputs(references=references, **overrides))
    second = generator.generate(make_inputs(references=references, **overrides))
    assert len(first) == len(second) == len(overrides.get("seeds", [7]))
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(pixels(a), pixels(b))


def check_reference_changes_image(generator, references_a, references_b, **overrides) -> None:
    a = generator.generate(make_inputs(references=references_a, **overrides))[0]
    b = generator.generate(make_inputs(references=references_b, **overrides))[0]
    assert np.abs(pixels(a) - pixels(b)).max() > 2, "the reference images had no visible effect"


def check_cancel_aborts_without_image(generator, references, **overrides) -> None:
    from generator_service.families.base import JobCanceled

    seen = []

    def cancel_on_second_step(done, total):
        seen.append((done, total))
        if done == 2:
            raise JobCanceled("canceled by the test")

    result = None
    try:
        result = generator.generate(
            make_inputs(references=references, steps=4, on_step=cancel_on_second_step, **overrides)
        )
    except JobCanceled:
        pass
    else:
        raise AssertionError("generate returned instead of raising JobCanceled")
    assert result is None
    assert seen == [(1, 4), (2, 4)], "the pipeline kept stepping after the cancel"


def check_too_many_references_rejected(generator) -> None:
    import pytest

    too_many = [reference_image(i) for i in range(generator.max_references + 1)]
    with pytest.raises(ValueError, match=f"at most {generator.max_references} reference"):
        generator.generate(make_inputs(references=too_many))


def check_sizes_honoured(generator, sizes, **overrides) -> None:
    import io

    for width, height in sizes:
        image = generator.generate(make_inputs(width=width, height=height, steps=2, **overrides))[0]
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        assert Image.open(io.BytesIO(buffer.getvalue())).size == (width, height)


def assert_equal_up_to_batch_rounding(a: Image.Image, b: Image.Image) -> None:
    """Same image computed in a different batch size: CPU kernels may round the last float bits
    differently, which can flip a pixel by one level; anything more is a real difference."""
    diff = np.abs(pixels(a) - pixels(b))
    assert diff.max() <= 1 and diff.mean() < 0.05, (diff.max(), diff.mean())
