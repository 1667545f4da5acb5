"""Retriever checkpoints: trained tower weights (safetensors) plus a JSON card beside them.

A checkpoint ``DIR/retriever.safetensors`` has its card at ``DIR/retriever.json``. The card names the
base encoder, the towers the file replaces, the generator the retriever was trained for, the data
hash, hyper-parameters and metrics, the SHA-256 of the weights file and a fingerprint of the base
model's image tower.

Loading refuses, with :class:`CheckpointError`, before touching the model:

* a missing or unreadable card or weights file, or a weights file whose checksum differs (corrupt);
* a checkpoint trained against another base encoder: a text tower only makes sense next to the exact
  image tower it was trained against, so the loader compares the image-tower fingerprint;
* tensors the model does not have, or with other shapes (another architecture).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from services.files import atomic_path, atomic_write_text

FORMAT = "realrag-retriever"
FORMAT_VERSION = 1
WEIGHTS_NAME = "retriever.safetensors"
IMAGE_PREFIX = "visual."
TEMPERATURE_KEYS = ("logit_scale",)


class CheckpointError(ValueError):
    """A retriever checkpoint that cannot be used with this model; the message says why."""


# --- which tensors belong to which tower ------------------------------------------------------


def tower_of(name: str) -> str:
    if name.startswith(IMAGE_PREFIX):
        return "image"
    if name in TEMPERATURE_KEYS:
        return "temperature"
    return "text"


def tower_parameters(model: torch.nn.Module, towers: Iterable[str]) -> dict[str, torch.nn.Parameter]:
    """Named parameters of the given towers ("text", "image", "temperature")."""
    wanted = set(towers)
    unknown = wanted - {"text", "image", "temperature"}
    if unknown:
        raise ValueError(f"unknown towers {sorted(unknown)}")
    return {name: p for name, p in model.named_parameters() if tower_of(name) in wanted}


def image_tower_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the image tower's tensors (name, shape, float32 bytes): the image space identity."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        if not name.startswith(IMAGE_PREFIX):
            continue
        tensor = state[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# --- files ------------------------------------------------------------------------------------


def resolve_weights_path(path: str | Path) -> Path:
    """Accept the weights file, its card, or the directory holding them."""
    path = Path(path)
    if path.is_dir():
        return path / WEIGHTS_NAME
    if path.suffix == ".json":
        return path.with_suffix(".safetensors")
    return path


def card_path(path: str | Path) -> Path:
    return resolve_weights_path(path).with_suffix(".json")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_retriever(
    model: torch.nn.Module,
    path: str | Path,
    card: dict[str, Any],
    towers: Iterable[str] = ("text", "temperature"),
    base_image_fingerprint: str | None = None,
) -> Path:
    """Write the given towers of `model` to `path` (safetensors) and the card beside it.

    `base_image_fingerprint` is the fingerprint of the *base* image tower; it defaults to the
    model's own, which is right whenever the image tower was not trained.
    """
    from safetensors.torch import save_file

    towers = sorted(set(towers))
    weights = resolve_weights_path(path)
    tensors = {
        name: p.detach().to("cpu").contiguous().clone() for name, p in tower_parameters(model, towers).items()
    }
    if not tensors:
        raise ValueError(f"model has no parameters in towers {towers}")
    if base_image_fingerprint is None:
        if "image" in towers:
            raise ValueError("a checkpoint with a trained image tower needs base_image_fingerprint")
        base_image_fingerprint = image_tower_fingerprint(model)
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
    full_card = {
        **card,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "towers": towers,
        "base_image_tower_sha256": base_image_fingerprint,
        "image_tower_sha256": image_tower_fingerprint(model),
        "weights_file": weights.name,
        "weights_sha256": file_sha256(weights),
        "tensors": {name: list(t.shape) for name, t in sorted(tensors.items())},
    }
    text = json.dumps(full_card, indent=2, sort_keys=True, default=str)
    atomic_write_text(card_path(weights), text + "\n")
    return weights


def read_card(path: str | Path) -> dict[str, Any]:
    """The card of a checkpoint, validated for format and required fields (weights not read)."""
    weights = resolve_weights_path(path)
    card_file = card_path(weights)
    if not weights.is_file():
        raise CheckpointError(f"retriever checkpoint not found: {weights}")
    if not card_file.is_file():
        raise CheckpointError(f"retriever checkpoint {weights} has no card {card_file.name} beside it")
    try:
        card = json.loads(card_file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"retriever card {card_file} is not valid JSON: {exc}") from exc
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{card_file} is not a {FORMAT} card")
    if card.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{card_file}: format_version {card.get('format_version')!r} is not supported "
            f"(this build reads {FORMAT_VERSION})"
        )
    for key in ("towers", "weights_sha256", "base_image_tower_sha256", "tensors", "base_encoder"):
        if key not in card:
            raise CheckpointError(f"{card_file}: card lacks {key!r}")
    return card


def read_weights(path: str | Path, card: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """Verified tensors of a checkpoint (checksum against the card, then safetensors parse)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = resolve_weights_path(path)
    card = card or read_card(weights)
    actual = file_sha256(weights)
    if actual != card["weights_sha256"]:
        raise CheckpointError(
            f"retriever checkpoint {weights} is corrupt: SHA-256 {actual[:12]}… differs from the "
            f"card's {str(card['weights_sha256'])[:12]}…"
        )
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"retriever checkpoint {weights} is not a readable safetensors file: {exc}") from exc
    declared = {name: list(shape) for name, shape in card["tensors"].items()}
    found = {name: list(t.shape) for name, t in tensors.items()}
    if declared != found:
        raise CheckpointError(f"retriever checkpoint {weights}: tensors differ from those its card declares")
    return tensors


def load_retriever_weights(
    model: torch.nn.Module, path: str | Path, base_encoder_id: str | None = None
) -> dict[str, Any]:
    """Load a retriever checkpoint into `model` in place; return its card.

    Every check runs before the first tensor is copied, so a refused checkpoint leaves the model
    exactly as it was. `base_encoder_id` ("model:pretrained", as ``ClipEncoder.id``) adds a check
    of the card's declared base encoder when the caller knows it.
    """
    weights = resolve_weights_path(path)
    card = read_card(weights)
    tensors = read_weights(weights, card)

    declared = card["base_encoder"].get("id") if isinstance(card["base_encoder"], dict) else None
    if base_encoder_id is not None and declared is not None and declared != base_encoder_id:
        raise CheckpointError(
            f"retriever checkpoint {weights} was trained on base encoder {declared!r}, "
            f"not {base_encoder_id!r}"
        )

    state = model.state_dict()
    missing = sorted(set(tensors) - set(state))
    if missing:
        raise CheckpointError(
            f"retriever checkpoint {weights} does not fit this model: unknown tensors {missing[:5]}"
            f"{' …' if len(missing) > 5 else ''} (base encoder {declared!r})"
        )
    wrong = [
        f"{name} {tuple(t.shape)} vs {tuple(state[name].shape)}"
        for name, t in tensors.items()
        if tuple(t.shape) != tuple(state[name].shape)
    ]
    if wrong:
        raise CheckpointError(
            f"retriever checkpoint {weights} does not fit this model (base encoder {declared!r}): "
            f"shape mismatch {wrong[:3]}"
        )
    fingerprint = image_tower_fingerprint(model)
    if fingerprint not in (card["base_image_tower_sha256"], card.get("image_tower_sha256")):
        raise CheckpointError(
            f"retriever checkpoint {weights} was trained against another image tower than this "
            f"model's (base encoder {declared!r}); load it into that base encoder"
        )

    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    with torch.no_grad():
        for name, tensor in tensors.items():
            target = params.get(name, buffers.get(name))
            if target is None:  # names were checked against the model's state above
                raise CheckpointError(f"retriever checkpoint {weights} names {name!r}, which this model lacks")
            target.copy_(tensor.to(device=target.device, dtype=target.dtype))
    return card
