"""Shared helpers for the generator-family tests: packaged tiny specs, inputs, reference images."""

from __future__ import annotations

import tomllib

import numpy as np
from PIL import Image

from generator_service.families.base import GenerationInputs
from generator_service.registry import PACKAGED_MODELS, ModelSpec


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
