"""Worker liveness and readiness from real consumption, for probes (not `celery inspect ping`).

The file is touched when the worker consumes a message, on every denoising step and by a periodic
no-op task sent to the worker's own queue; its age is liveness. Readiness also needs the consumer
connected and, with REALRAG_WORKER_PRELOAD, the model loaded.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from services.files import atomic_write_text

FLAGS = ("consuming", "model_loaded")
# The flags this process knows: the main process learns `consuming`, a pool child `model_loaded`.
_state: dict = {}


def touch(path: Path, **state) -> None:
    """Beat now. Each worker process writes the flags it knows and keeps the others' from the file,
    so the main process and its children do not overwrite each other's readiness."""
    _state.update(state)
    previous = read(path) or {}
    flags = {flag: bool(previous.get(flag, False)) for flag in FLAGS}
    atomic_write_text(path, json.dumps({**flags, **_state, "ts": time.time(), "pid": os.getpid()}))


def reset(path: Path) -> None:
    """A worker starting: nothing consumed, no model loaded, whatever an earlier run left behind."""
    atomic_write_text(path, json.dumps({**dict.fromkeys(FLAGS, False), "ts": time.time(), "pid": os.getpid()}))


def read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check(path: Path, liveness: bool, max_age_s: float, need_model: bool) -> tuple[bool, str]:
    beat = read(path)
    if beat is None:
        return False, f"no heartbeat at {path}"
    age = time.time() - beat.get("ts", 0)
    if liveness:
        return (age <= max_age_s, f"heartbeat age {age:.0f}s (max {max_age_s:.0f}s)")
    if not beat.get("consuming"):
        return False, "consumer not connected"
    if need_model and not beat.get("model_loaded"):
        return False, "model not loaded"
    return True, "ready"
