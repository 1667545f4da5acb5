"""Small helpers shared by the world's training scripts (seeding, schedules, saving)."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def seed_everything(seed: int, threads: int | None = None) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)
    return torch.Generator().manual_seed(seed)


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)


def clip_normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def save_weights(state_dict: dict, path: str | Path, half: bool = True, metadata: dict | None = None) -> Path:
    """Save a state dict as safetensors; floating tensors in fp16 when ``half`` (they load back
    into fp32 modules unchanged in shape, and halve the committed size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in state_dict.items():
        v = v.detach().cpu().contiguous()
        if half and v.is_floating_point():
            v = v.half()
        tensors[k] = v
    meta = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (metadata or {}).items()}
    save_file(tensors, str(path), metadata=meta)
    return path


class Progress:
    """Prints a line every ``every`` seconds; keeps the training scripts quiet but alive."""

    def __init__(self, name: str, total: int, log=print, every: float = 30.0) -> None:
        self.name, self.total, self.log, self.every = name, total, log, every
        self.t0 = self.last = time.time()

    def step(self, i: int, **metrics: float) -> None:
        now = time.time()
        if now - self.last >= self.every or i == self.total - 1:
            self.last = now
            parts = " ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            self.log(f"[{self.name}] step {i + 1}/{self.total} {parts} ({now - self.t0:.0f}s)")

    @property
    def seconds(self) -> float:
        return time.time() - self.t0
