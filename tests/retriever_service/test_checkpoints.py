"""Retriever checkpoints: a round trip, and every way a checkpoint is refused (before any write)."""

from __future__ import annotations

import json

import pytest
import torch

from retriever_service.checkpoints import (
    CheckpointError,
    card_path,
    image_tower_fingerprint,
    load_retriever_weights,
    read_card,
    save_retriever,
)
from retriever_service.encoder import ClipEncoder
from tests.realrag.training.conftest import TINY_CLIP

TEXTS = ["a photo of a red car", "a blue truck"]


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def encoder() -> ClipEncoder:
    return ClipEncoder(TINY_CLIP, None, device="cpu")


def fine_tune(model: torch.nn.Module, seed: int = 1) -> None:
    """Stand-in for training: move every text-tower weight a little."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("visual."):
                p.add_(0.05 * torch.randn(p.shape, generator=generator))


@pytest.fixture
def checkpoint(tmp_path):
    trained = encoder()
    fine_tune(trained.model)
    path = save_retriever(
        trained.model, tmp_path / "ckpt" / "retriever.safetensors",
        {"base_encoder": {"id": trained.id, "model": TINY_CLIP, "pretrained": None}, "generator": {"key": "tiny-sd"}},
    )
    return path, trained.encode_text(TEXTS)


def test_round_trip_through_the_encoder(checkpoint):
    path, expected = checkpoint
    card = read_card(path)
    assert card["towers"] == ["temperature", "text"]
    assert card["generator"]["key"] == "tiny-sd"
    served = ClipEncoder(TINY_CLIP, None, device="cpu", text_tower=str(path))
    assert served.text_tower == str(path)
    assert torch.allclose(torch.from_numpy(served.encode_text(TEXTS)), torch.from_numpy(expected), atol=1e-6)
    base = encoder()
    assert not torch.allclose(torch.from_numpy(base.encode_text(TEXTS)), torch.from_numpy(expected), atol=1e-3)
    # the directory and the card path name the same checkpoint
    load_retriever_weights(base.model, path.parent)
    load_retriever_weights(base.model, card_path(path))


def assert_refused(path, match: str, model: torch.nn.Module | None = None):
    target = model or encoder().model
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(CheckpointError, match=match):
        load_retriever_weights(target, path)
    after = target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a refused checkpoint changed the model"


def test_corrupt_weights_are_refused(checkpoint):
    path, _ = checkpoint
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert_refused(path, "corrupt")


def test_truncated_weights_with_a_matching_card_are_refused(checkpoint):
    path, _ = checkpoint
    path.write_bytes(path.read_bytes()[:100])
    card = json.loads(card_path(path).read_text())
    from retriever_service.checkpoints import file_sha256

    card["weights_sha256"] = file_sha256(path)  # someone "fixed" the checksum
    card_path(path).write_text(json.dumps(card))
    assert_refused(path, "not a readable safetensors")


def test_missing_or_broken_card_is_refused(checkpoint, tmp_path):
    path, _ = checkpoint
    assert_refused(tmp_path / "nope.safetensors", "not found")
    card_path(path).write_text("{not json")
    assert_refused(path, "not valid JSON")
    card_path(path).write_text(json.dumps({"format": "something-else"}))
    assert_refused(path, "not a realrag-retriever card")
    card_path(path).unlink()
    assert_refused(path, "no card")


def test_a_checkpoint_of_another_base_encoder_is_refused(checkpoint):
    path, _ = checkpoint
    other = encoder()
    with torch.no_grad():  # same architecture, other image tower weights (another pretrained tag)
        other.model.visual.proj.mul_(1.5)
    assert image_tower_fingerprint(other.model) != read_card(path)["base_image_tower_sha256"]
    assert_refused(path, "another image tower", other.model)
    with pytest.raises(CheckpointError, match="trained on base encoder"):
        load_retriever_weights(encoder().model, path, base_encoder_id="ViT-B-32:laion2b_s34b_b79k")


def test_a_checkpoint_of_another_architecture_is_refused(checkpoint, tmp_path):
    path, _ = checkpoint
    config = json.loads(open(TINY_CLIP).read())
    config["embed_dim"] = 32
    other_config = tmp_path / "tiny-clip-32.json"
    other_config.write_text(json.dumps(config))
    other = ClipEncoder(str(other_config), None, device="cpu")
    assert_refused(path, "shape mismatch", other.model)
    with pytest.raises(CheckpointError):
        ClipEncoder(str(other_config), None, device="cpu", text_tower=str(path))
