"""A tiny world with briefly trained world CLIP and evaluator: real models, tiny budgets."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from tests.realrag.world.conftest import TINY

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory):
    from realrag.world.dataset import render_world
    from realrag.world.train_clip import train_world_clip
    from realrag.world.train_evaluator import train_world_evaluator

    root = tmp_path_factory.mktemp("eval-world")
    world = render_world(root / "world", TINY, log=lambda *_: None)
    clip = root / "world-clip.safetensors"
    train_world_clip(world, clip, steps=3, batch_size=16, threads=1, log=lambda *_: None)
    evaluator = root / "evaluator.safetensors"
    train_world_evaluator(world, evaluator, steps=3, batch_size=16, threads=1, log=lambda *_: None)
    return SimpleNamespace(world=world, clip=clip, evaluator=evaluator, root=root)
