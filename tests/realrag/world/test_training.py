"""Each training script runs end to end for a couple of steps and writes weights that load back
through the interfaces the rest of the system uses (open_clip, ClipEncoder, the world family)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from generator_service.world_sd import WorldSDPipeline
from realrag.world import CLIP_CONFIG


@pytest.fixture(scope="module")
def clip_weights(tiny_world, tmp_path_factory):
    from realrag.world.train_clip import train_world_clip

    path = tmp_path_factory.mktemp("clip") / "world-clip.safetensors"
    stats = train_world_clip(tiny_world, path, steps=2, batch_size=8, threads=1, log=lambda *_: None)
    assert stats["steps"] == 2 and 0 <= stats["zero_shot_corpus_recall@1"] <= 1
    return path


def test_world_clip_loads_with_open_clip_and_the_retriever_encoder(clip_weights):
    import open_clip

    from retriever_service.encoder import ClipEncoder

    open_clip.add_model_config(CLIP_CONFIG)
    model, _, _ = open_clip.create_model_and_transforms("world-clip", pretrained=str(clip_weights))
    assert model.visual.image_size == (32, 32)
    enc = ClipEncoder(str(CLIP_CONFIG), str(clip_weights), device="cpu")
    text = enc.encode_text(["a photo of a Glairan Voulain Ros"])
    img = enc.encode_images([Image.new("RGB", (32, 32), (200, 10, 10))])
    assert text.shape == (1, 64) == img.shape
    assert np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-4)


def test_evaluator_trains_and_reloads(tiny_world, tmp_path):
    from realrag.world.train_evaluator import WorldEvaluator, train_world_evaluator

    path = tmp_path / "evaluator.safetensors"
    train_world_evaluator(tiny_world, path, steps=2, batch_size=8, threads=1, log=lambda *_: None)
    model = WorldEvaluator.load(path)
    assert model.class_names == [c.slug for c in tiny_world.classes]
    x = torch.rand(3, 3, 48, 48)  # any size: resized to the evaluator's input
    assert model(x).shape == (3, len(tiny_world.classes)) and model.features(x).shape == (3, model.num_features)


def test_generator_trains_on_seen_classes_only_and_reloads(tiny_world, tmp_path):
    from generator_service.tiny.world import tiny_config
    from realrag.world.train_generator import train_world_generator

    out = tmp_path / "world-sd"
    train_world_generator(tiny_world, out, steps=2, batch_size=4, threads=1, cfg=tiny_config(), log=lambda *_: None)
    card = json.loads((out / "config.json").read_text())
    assert card["training"]["seen_classes"] == [c.slug for c in tiny_world.seen]
    assert not set(card["training"]["seen_classes"]) & {c.slug for c in tiny_world.unseen}
    pipe = WorldSDPipeline.from_dir(out)
    ref = Image.open(next((tiny_world.split_dir("corpus") / tiny_world.unseen[0].slug).glob("*.png")))
    x = pipe("a photo of a thing", seeds=[0, 1], references=[ref], steps=2)
    assert x.shape == (2, 3, 32, 32) and 0 <= x.min() and x.max() <= 1
