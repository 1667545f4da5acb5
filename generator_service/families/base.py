"""The small protocol every generator family implements (one self-contained module per family).

A family module exposes ``load(spec: ModelSpec, device: str) -> Generator``. The worker keeps one
loaded Generator per model key per process and calls ``generate`` once per job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from PIL import Image

if TYPE_CHECKING:
    import torch


class JobCanceled(Exception):
    """Raised from the step callback to abort a pipeline call at once (skips the VAE decode)."""


StepCallback = Callable[[int, int], None]
"""on_step(step_done, total_steps); may raise JobCanceled."""


@dataclass
class GenerationInputs:
    prompt: str
    seeds: list[int]
    steps: int
    guidance: float
    width: int
    height: int
    negative_prompt: str | None = None
    # Retrieved real images, best first; each family uses at most its `max_references`.
    references: list[Image.Image] = field(default_factory=list)
    # The corpus label of each reference (object name), used by prompt templates (OmniGen).
    reference_labels: list[str | None] = field(default_factory=list)
    # Precomputed image-encoder embeddings of the references, if the caller has them cached.
    reference_embeds: object | None = None
    ip_scale: float = 0.6
    on_step: StepCallback | None = None


class Generator(Protocol):
    key: str
    family: str
    max_references: int
    image_encoder_id: str | None

    def generate(self, inputs: GenerationInputs) -> list[Image.Image]:
        """One image per seed, each from its own torch.Generator; deterministic per seed."""
        ...

    def encode_references(self, images: list[Image.Image]) -> torch.Tensor:
        """Adapter embeddings of the references, (2, k, ...) with the negative half first; what
        ``GenerationInputs.reference_embeds`` takes. Families without an image encoder raise."""
        ...
