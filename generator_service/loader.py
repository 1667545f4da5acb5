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


def worker_device(settings: Settings) -> str:
    """The device this worker loads its models onto: the ``REALRAG_DEVICE`` setting, with ``"auto"``
    resolved to CUDA when available, else the CPU (``families.common.auto_device``)."""
    from .families.common import auto_device  # imports torch; importing the loader does not

    return auto_device(settings.device)


def get_generator(model_key: str, settings: Settings) -> tuple[Generator, float]:
    """Return (generator, seconds spent loading it now: 0.0 when already loaded)."""
    with _lock:
        if model_key in _loaded:
            return _loaded[model_key], 0.0
        started = time.perf_counter()
        spec = get_spec(model_key, settings)
        generator = family_module(spec).load(spec, worker_device(settings))
        _loaded[model_key] = generator
        return generator, time.perf_counter() - started


def loaded_models() -> list[str]:
    return sorted(_loaded)
