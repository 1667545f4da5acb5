"""Helpers every diffusers-based family shares: dtypes, the load device, placement, the step callback.

Imports torch (the family modules do anyway); ``generator_service.loader`` imports this lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from generator_service.families.base import StepCallback

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
"""``ModelSpec.dtype`` name -> torch dtype."""


def auto_device(device: str | None = None) -> str:
    """The torch device a pipeline runs on: ``None``, ``""`` and ``"auto"`` pick CUDA when it is
    available, else the CPU; any other name ("cuda:1", "cpu", "mps") is used as given.

    This is the ``device`` argument of every family's ``load(spec, device)``. The worker's configured
    device (``REALRAG_DEVICE``) is resolved through it by ``generator_service.loader.worker_device``.
    """
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def place_pipeline(pipe: Any, offload: str, device: str) -> None:
    """Put a diffusers pipeline on ``device``, or offload it there (``ModelSpec.offload``: ``"none"``,
    ``"model"``: one whole component at a time on the device, ``"sequential"``: one submodule)."""
    if offload == "model":
        pipe.enable_model_cpu_offload(device=device)
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)


def step_callback(on_step: StepCallback | None) -> Callable[[Any, int, Any, dict], dict]:
    """A diffusers ``callback_on_step_end`` that reports ``(steps done, total)`` to ``on_step``.

    ``on_step`` may raise ``JobCanceled``: the exception leaves the pipeline call at once, so a
    canceled job skips the remaining steps and the VAE decode.
    """

    def on_step_end(pipeline: Any, step_index: int, timestep: Any, callback_kwargs: dict) -> dict:
        if on_step is not None:
            on_step(step_index + 1, pipeline.num_timesteps)
        return callback_kwargs

    return on_step_end
