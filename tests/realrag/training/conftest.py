"""Tiny real models (random tiny open_clip, tiny-sd) and a tiny folder-tree corpus of coloured objects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[3]
TINY_CLIP = str(REPO / "retriever_service" / "configs" / "tiny-clip.json")

COLOURS = {
    "red_car": (220, 30, 30),
    "blue_truck": (30, 30, 220),
    "green_bus": (30, 200, 30),
    "yellow_van": (230, 230, 40),
    "purple_bike": (150, 40, 180),
    "orange_boat": (250, 140, 20),
}


def noisy_square(colour, rng, size: int = 64, noise: float = 40.0) -> Image.Image:
    pixels = np.array(colour, dtype=np.float64)[None, None, :] + rng.normal(0, noise, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_objects(root: Path, per_object: int = 3, seed: int = 0, colours=COLOURS) -> Path:
    rng = np.random.default_rng(seed)
    for name, colour in colours.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_object):
            noisy_square(colour, rng).save(folder / f"{k}.png")
    return root


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_objects(tmp_path_factory.mktemp("objects"))


@pytest.fixture(scope="session")
def tiny_sd():
    """The worker's own tiny-sd generator, loaded once for the session."""
    from realrag.training.sample import load_generator

    return load_generator("tiny-sd", "cpu")


@pytest.fixture
def base_config(tiny_data, tmp_path):
    from realrag.training import TrainConfig

    def make(**overrides):
        values = dict(
            data=tiny_data,
            generator="tiny-sd",
            encoder_model=TINY_CLIP,
            encoder_pretrained=None,
            work_dir=tmp_path / "work",
            device="cpu",
            generator_device="cpu",
            epochs=2,
            batch_size=4,
            lr=1e-4,
            held_out_fraction=0.34,
        )
        values.update(overrides)
        return TrainConfig(**values)

    return make
