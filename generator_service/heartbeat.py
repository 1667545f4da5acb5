"""Worker liveness and readiness from real consumption, for probes (not `celery inspect ping`).

The file is touched when the worker consumes a message, on every denoising step, by a periodic
no-op task sent to the worker's own queue and, while a model loads (minutes on real weights), by a
thread (``beating``); its age is liveness. Readiness also needs the consumer connected and, with
REALRAG_WORKER_PRELOAD, the served models loaded on the intended device (``device`` in the file).
A worker child that cannot start (no usable GPU, missing weights) writes ``fatal``: both probes fail.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.files import atomic_write_text

FLAGS = ("consuming", "model_loaded")
KEPT = ("device", "fatal")  # a pool child's facts, kept by the main process's beats
# The flags this process knows: the main process learns `consuming`, a pool child `model_loaded`.
_state: dict = {}


def touch(path: Path, **state) -> None:
    """Beat now. Each worker process writes the flags it knows and keeps the others' from the file,
    so the main process and its children do not overwrite each other's readiness."""
    _state.update(state)
    previous = read(path) or {}
    flags = {flag: bool(previous.get(flag, False)) for flag in FLAGS}
    kept = {key: previous[key] for key in KEPT if previous.get(key) is not None}
    atomic_write_text(path, json.dumps({**flags, **kept, **_state, "ts": time.time(), "pid": os.getpid()}))


@contextmanager
def beating(path: Path, every_s: float = 10.0) -> Iterator[None]:
    """Touch ``path`` every ``every_s`` seconds while the block runs (a model load): the liveness
    probe must not kill a worker busy loading. Only a worker's file is touched (the worker creates it
    at start-up), so a local ``realrag generate`` leaves no heartbeat behind."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            if path.exists():
                touch(path)

    thread = threading.Thread(target=loop, name="realrag-load-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def same_device(a: str, b: str) -> bool:
    """``cuda`` is ``cuda:0``."""
    def norm(device: str) -> str:
        return "cuda:0" if device == "cuda" else device

    return norm(a) == norm(b)


def reset(path: Path) -> None:
    """A worker starting: nothing consumed, no model loaded, whatever an earlier run left behind."""
    atomic_write_text(path, json.dumps({**dict.fromkeys(FLAGS, False), "ts": time.time(), "pid": os.getpid()}))


def read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def check(path: Path, liveness: bool, max_age_s: float, need_model: bool, device: str | None = None) -> tuple[bool, str]:
    """Liveness: a recent beat. Readiness: consuming, and with ``need_model`` the models loaded, on
    ``device`` when one is given (an explicit REALRAG_DEVICE; ``auto`` accepts any)."""
    beat = read(path)
    if beat is None:
        return False, f"no heartbeat at {path}"
    if beat.get("fatal"):
        return False, f"worker cannot start: {beat['fatal']}"
    age = time.time() - beat.get("ts", 0)
    if liveness:
        return (age <= max_age_s, f"heartbeat age {age:.0f}s (max {max_age_s:.0f}s)")
    if not beat.get("consuming"):
        return False, "consumer not connected"
    if need_model and not beat.get("model_loaded"):
        return False, "model not loaded"
    if need_model and device and not same_device(str(beat.get("device")), device):
        return False, f"model loaded on {beat.get('device')}, not on {device}"
    return True, "ready"
