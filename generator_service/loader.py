"""One loaded generator per model key per worker process, loaded after the fork, never per task."""

from __future__ import annotations

import logging
import threading
import time

from services.registry import get_spec
from services.settings import Settings

from . import heartbeat
from .families import family_module
from .families.base import Generator

log = logging.getLogger(__name__)

_loaded: dict[str, Generator] = {}
_devices: dict[str, str] = {}
_lock = threading.Lock()


class DeviceUnavailable(RuntimeError):
    """``REALRAG_DEVICE`` names a CUDA device this machine cannot use."""


def _cuda_problem(device: str) -> str | None:
    """Why ``device`` (cuda or cuda:N) cannot be used here, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        try:
            torch.cuda.init()  # raises with the driver's or the build's reason
        except Exception as exc:
            return f"no usable CUDA GPU ({exc}; torch {torch.__version__}, built for CUDA {torch.version.cuda})"
        return f"no usable CUDA GPU (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
    _, _, index = device.partition(":")
    count = torch.cuda.device_count()
    if index and (not index.isdigit() or int(index) >= count):
        return f"no CUDA device {index!r}: this machine has {count} (cuda:0..cuda:{count - 1})"
    return None


def worker_device(settings: Settings) -> str:
    """The device this worker loads its models onto (``REALRAG_DEVICE``). ``auto``: CUDA when
    usable, else the CPU, with a warning. ``cuda``/``cuda:N`` without that GPU: DeviceUnavailable,
    never a silent CPU fallback. Anything else is used as given."""
    wanted = settings.device or "auto"
    if wanted == "auto":
        import torch

        if torch.cuda.is_available():
            return "cuda"
        log.warning("REALRAG_DEVICE=auto: %s; generating on the CPU", _cuda_problem("cuda"))
        return "cpu"
    if wanted == "cuda" or wanted.startswith("cuda:"):
        problem = _cuda_problem(wanted)
        if problem:
            raise DeviceUnavailable(f"REALRAG_DEVICE={wanted}: {problem}")
    return wanted


def get_generator(model_key: str, settings: Settings) -> tuple[Generator, float]:
    """Return (generator, seconds spent loading it now: 0.0 when already loaded). A worker's heartbeat
    keeps beating while a load runs (minutes for real weights)."""
    with _lock:
        if model_key in _loaded:
            return _loaded[model_key], 0.0
        started = time.perf_counter()
        spec = get_spec(model_key, settings)
        device = worker_device(settings)
        with heartbeat.beating(settings.heartbeat_path):
            generator = family_module(spec).load(spec, device)
        _loaded[model_key] = generator
        _devices[model_key] = device
        return generator, time.perf_counter() - started


def loaded_models() -> list[str]:
    return sorted(_loaded)


def loaded_devices() -> dict[str, str]:
    """Model key -> the device it was loaded onto, in this process."""
    return dict(_devices)
