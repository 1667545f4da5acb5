"""One loaded generator per model key per worker process, loaded after the fork, never per task."""

from __future__ import annotations

import threading
import time

from services.registry import get_spec
from services.settings import Settings

from .families import family_module
from .families.base import Generator

_loaded: dict[str, Generator] = {}
_lock = threading.Lock()


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def get_generator(model_key: str, settings: Settings) -> tuple[Generator, float]:
    """Return (generator, seconds spent loading it now: 0.0 when already loaded)."""
    with _lock:
        if model_key in _loaded:
            return _loaded[model_key], 0.0
        started = time.perf_counter()
        spec = get_spec(model_key, settings)
        generator = family_module(spec).load(spec, resolve_device(settings.device))
        _loaded[model_key] = generator
        return generator, time.perf_counter() - started


def loaded_models() -> list[str]:
    return sorted(_loaded)
