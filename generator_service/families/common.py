"""Helpers every diffusers-based family shares: dtypes, the load device, loading, placement, the step callback.

Imports torch (the family modules do anyway); ``generator_service.loader`` imports this lazily.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from generator_service.families.base import StepCallback
from services.registry import ModelSpec

log = logging.getLogger(__name__)

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


def load_kwargs(spec: ModelSpec, device: str) -> dict[str, Any]:
    """``from_pretrained`` arguments of a real preset's pipeline: its dtype and revision, diffusers'
    low-memory path (modules are created empty and each checkpoint shard is loaded straight into them,
    so host RAM holds about one shard, not the model twice) and, unless the preset offloads, the
    weights loaded straight onto ``device`` (``device_map``) instead of into host RAM first."""
    from diffusers.pipelines.pipeline_utils import SUPPORTED_DEVICE_MAP
    from diffusers.utils import is_accelerate_available

    if not is_accelerate_available():  # diffusers would silently load twice the RAM and leave fp32 parts
        raise RuntimeError(f"model {spec.key!r}: loading real weights needs `accelerate` (install the `ml` extra)")
    kwargs: dict[str, Any] = {"dtype": DTYPES[spec.dtype], "revision": spec.revision, "low_cpu_mem_usage": True}
    if spec.offload == "none" and device in SUPPORTED_DEVICE_MAP and device != "balanced":
        kwargs["device_map"] = device
    return kwargs


def match_dtype(pipe: Any, dtype: torch.dtype, components: tuple[str, ...] = ("unet", "transformer", "image_encoder")) -> None:
    """Cast what loading left in another dtype to the preset's: IP-Adapter projections and processors
    that the adapter loaders build in fp32, buffers created at init (OmniGen's ``pos_embed``). Only
    parameters and persistent buffers (what a checkpoint holds) are cast, never a model's
    ``_keep_in_fp32_modules`` nor non-persistent buffers such as rotary frequencies; otherwise the first
    step fails with ``mat1 and mat2 must have the same dtype``."""
    for name in components:
        module = getattr(pipe, name, None)
        if not isinstance(module, torch.nn.Module):
            continue
        keep_fp32 = set(getattr(module, "_keep_in_fp32_modules", None) or ())
        persistent = set(module.state_dict(keep_vars=True))
        for path, submodule in module.named_modules():
            if keep_fp32 & set(path.split(".")):
                continue
            for param in submodule.parameters(recurse=False):
                if param.is_floating_point() and param.dtype != dtype:
                    param.data = param.data.to(dtype)
            for tensor_name, buffer in list(submodule.named_buffers(recurse=False)):
                full_name = f"{path}.{tensor_name}" if path else tensor_name
                if full_name in persistent and buffer.is_floating_point() and buffer.dtype != dtype:
                    submodule._buffers[tensor_name] = buffer.to(dtype)


def place_pipeline(pipe: Any, offload: str, device: str) -> None:
    """Put a diffusers pipeline on ``device``, or offload it there (``ModelSpec.offload``: ``"none"``,
    ``"model"``: one whole component at a time on the device, ``"sequential"``: one submodule).

    Offload moves weights between host RAM and an accelerator; on the CPU the weights already are in
    host RAM, so there it is skipped (accelerate's sequential hooks also fail on a ``cpu:0`` device)."""
    if offload != "none" and torch.device(device).type == "cpu":
        log.info("offload=%r has nothing to do on the CPU; the pipeline stays in host RAM", offload)
        offload = "none"
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
