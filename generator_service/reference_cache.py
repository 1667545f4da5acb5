"""On-disk cache of IP-Adapter reference embeddings, so a warm worker can skip the image encoder.

One safetensors file per (encoder id, image content key). A generator's ``encode_references`` returns
``(2, k, *per_image)`` (negative half first, reference axis 1); the cache stores each reference's
``(2, 1, *per_image)`` slice and concatenates slices in request order, which is the tensor
``generate`` takes as ``GenerationInputs.reference_embeds``.

The encoder id (``Generator.image_encoder_id``) names the encoder weights *and* the output the adapter
reads (e.g. ``...#image_embeds`` vs ``...#hidden_states[-2]``), so base and Plus adapters on the same
encoder never share entries. The content key defaults to a SHA-256 of the decoded pixels; callers
that already have a stable id (the retriever's ``content_hash``) can pass it instead.

Missing references are encoded in one batch. Slices computed in different batches can differ from
a single batched encoding in the last float bits (batched matmuls), so a mixed warm/cold request
may differ from the uncached image path by at most rounding; a cold or fully warm request matches.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from services.files import atomic_path

TENSOR_NAME = "embeds"


class ReferenceEncoder(Protocol):
    image_encoder_id: str | None

    def encode_references(self, images: list[Image.Image]) -> torch.Tensor: ...


def image_content_key(image: Image.Image) -> str:
    """SHA-256 of the decoded RGB pixels and size: the same picture gives the same key in any file format."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()


class ReferenceEmbeddingCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, encoder_id: str, content_key: str) -> Path:
        if not content_key or any(ch in content_key for ch in "/\\\0") or content_key.startswith("."):
            raise ValueError(f"invalid content key {content_key!r}")
        encoder_dir = hashlib.sha256(encoder_id.encode()).hexdigest()[:16]
        return self.root / encoder_dir / content_key[:2] / f"{content_key}.safetensors"

    def get(self, encoder_id: str, content_key: str) -> torch.Tensor | None:
        path = self.path(encoder_id, content_key)
        if not path.is_file():
            return None
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            stored_encoder = (handle.metadata() or {}).get("encoder_id")
            if stored_encoder != encoder_id:  # a 64-bit directory-name collision; treat as a miss
                return None
            return handle.get_tensor(TENSOR_NAME)

    def put(self, encoder_id: str, content_key: str, embeds: torch.Tensor) -> Path:
        """Store one reference's ``(2, 1, *per_image)`` embedding (atomic: write, then rename)."""
        if embeds.ndim < 3 or embeds.shape[0] != 2 or embeds.shape[1] != 1:
            raise ValueError(f"expected a (2, 1, ...) embedding for one reference, got {tuple(embeds.shape)}")
        path = self.path(encoder_id, content_key)
        with atomic_path(path, suffix=".safetensors") as tmp:
            save_file(
                {TENSOR_NAME: embeds.detach().to("cpu").contiguous()},
                str(tmp),
                metadata={"encoder_id": encoder_id, "content_key": content_key},
            )
        return path

    def embeddings_for(
        self,
        generator: ReferenceEncoder,
        images: Sequence[Image.Image],
        content_keys: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """``(2, k, *per_image)`` for ``images`` in order, encoding (and storing) only the misses."""
        encoder_id = generator.image_encoder_id
        if not encoder_id:
            raise ValueError("this generator has no image encoder; its references cannot be cached")
        if not images:
            raise ValueError("embeddings_for needs at least one image")
        keys = list(content_keys) if content_keys is not None else [image_content_key(im) for im in images]
        if len(keys) != len(images):
            raise ValueError(f"{len(keys)} content keys for {len(images)} images")

        slices: list[torch.Tensor | None] = [self.get(encoder_id, key) for key in keys]
        missing = [i for i, found in enumerate(slices) if found is None]
        self.hits += len(images) - len(missing)
        self.misses += len(missing)
        encoded: dict[int, torch.Tensor] = {}
        if missing:
            fresh = generator.encode_references([images[i] for i in missing])
            for column, index in enumerate(missing):
                one = fresh[:, column : column + 1]
                self.put(encoder_id, keys[index], one)
                encoded[index] = one.detach().to("cpu")
        return torch.cat([found if found is not None else encoded[i] for i, found in enumerate(slices)], dim=1)
