"""The retrieval arms of an evaluation: brute-force cosine search over the corpus with a ClipEncoder.

``no_rag`` retrieves nothing; ``zero_shot`` is the base CLIP; any other arm is the base CLIP with a
trained retriever checkpoint (``retriever_service.checkpoints``: text tower + card) or a full
open_clip state dict (loaded as ``pretrained``). The service itself serves retrieval from Qdrant;
exact search here keeps the benchmark independent of index settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realrag.evaluation.data import ImageFolder

NO_RAG = "no_rag"
ZERO_SHOT = "zero_shot"


@dataclass(frozen=True)
class ArmSpec:
    name: str
    checkpoint: Path | None = None  # None: the base encoder (zero_shot) or no retrieval (no_rag)

    @property
    def retrieves(self) -> bool:
        return self.name != NO_RAG

    @classmethod
    def parse(cls, text: str) -> ArmSpec:
        name, _, ckpt = text.partition("=")
        name = name.strip()
        if not name:
            raise ValueError(f"bad arm {text!r}: use NAME or NAME=CHECKPOINT")
        if name == NO_RAG and ckpt:
            raise ValueError("no_rag takes no checkpoint")
        if name not in (NO_RAG, ZERO_SHOT) and not ckpt:
            raise ValueError(f"arm {name!r} needs a retriever checkpoint: {name}=PATH")
        return cls(name, Path(ckpt) if ckpt else None)


def is_retriever_checkpoint(path: Path) -> bool:
    """A ``retriever_service`` checkpoint (weights + a realrag-retriever card), not a plain state dict."""
    import json

    from retriever_service.checkpoints import FORMAT, card_path

    card = card_path(path)
    if not card.is_file():
        return False
    try:
        return json.loads(card.read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


class ArmRetriever:
    """Text query -> ranked corpus indices, for one arm."""

    def __init__(self, spec: ArmSpec, model: str, pretrained: str | None, corpus: ImageFolder,
                 device: str = "cpu", batch_size: int = 64):
        from retriever_service.encoder import ClipEncoder

        self.spec = spec
        self.corpus = corpus
        ckpt = spec.checkpoint
        if ckpt is not None and not ckpt.exists():
            raise FileNotFoundError(f"retriever checkpoint for arm {spec.name!r} not found: {ckpt}")
        if ckpt is None:
            self.encoder = ClipEncoder(model, pretrained, device=device, batch_size=batch_size)
            self.source = self.encoder.id
        elif is_retriever_checkpoint(ckpt):
            self.encoder = ClipEncoder(model, pretrained, device=device, batch_size=batch_size, text_tower=str(ckpt))
            self.source = f"{self.encoder.id} + text tower {ckpt}"
        else:
            self.encoder = ClipEncoder(model, str(ckpt), device=device, batch_size=batch_size)
            self.source = self.encoder.id
        images = [corpus.open(p) for _, p in corpus.entries]
        self.corpus_emb = self.encoder.encode_images(images)
        self.corpus_classes = [c for c, _ in corpus.entries]

    def search(self, queries: list[str], k: int) -> np.ndarray:
        q = self.encoder.encode_text(queries)
        sims = q @ self.corpus_emb.T
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        return np.take_along_axis(top, order, axis=1)

    def ranked_classes(self, queries: list[str], k: int) -> list[list[str]]:
        return [[self.corpus_classes[i] for i in row] for row in self.search(queries, k)]
