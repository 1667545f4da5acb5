"""Small helpers for resumable stages: atomic files, JSON manifests, stage timings, progress bars."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retriever_service.progress import progress  # noqa: F401  (the stages import it from here)
from services.files import atomic_path, atomic_write_text

# Called after each unit of work is committed to disk (stage name, units done); tests raise in it to
# interrupt a stage at a precise point, the CLI could use it for status lines.
ProgressHook = Callable[[str, int], None]


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    return json.loads(path.read_text("utf-8"))


def save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


@dataclass
class StageTiming:
    """Throughput of one stage run: units processed now (cached units excluded) and wall time."""

    stage: str
    unit: str
    done: int = 0
    cached: int = 0
    seconds: float = 0.0
    setup_seconds: float = 0.0  # loading models: part of `seconds`, not of the throughput
    extra: dict[str, Any] = field(default_factory=dict)
    _start: float = field(default=0.0, repr=False)

    def __enter__(self) -> StageTiming:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._start

    @property
    def per_second(self) -> float | None:
        busy = self.seconds - self.setup_seconds
        return self.done / busy if self.done and busy > 0 else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "unit": self.unit,
            "done": self.done,
            "cached": self.cached,
            "seconds": round(self.seconds, 4),
            "setup_seconds": round(self.setup_seconds, 4),
            "per_second": round(self.per_second, 3) if self.per_second else None,
            **self.extra,
        }
