"""The world's evaluator: a small CNN classifier over all classes, trained on real photos only.

It plays two roles in ``realrag eval``: its logits give object accuracy, its pooled features are the
FID/KID feature space ("world-evaluator", named in every report). It never serves retrieval and
never sees generated images during training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file

from realrag.world.dataset import World
from realrag.world.training import Progress, save_weights, seed_everything, to_unit, warmup_cosine


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(8, cout),
        nn.SiLU(),
    )


class WorldEvaluator(nn.Module):
    """Input: float images in [0, 1], any size (resized to ``image_size``). ``features`` is the
    global-average-pooled last conv stage, ``forward`` the class logits."""

    def __init__(self, num_classes: int, image_size: int = 32, width: int = 32, class_names: list[str] | None = None):
        super().__init__()
        self.image_size = image_size
        self.class_names = list(class_names or [])
        self.stages = nn.Sequential(_block(3, width, 1), _block(width, 2 * width, 2), _block(2 * width, 4 * width, 2),
                                    _block(4 * width, 4 * width, 2))
        self.num_features = 4 * width
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(self.num_features, num_classes)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        return (x - 0.5) / 0.25

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self._prepare(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))

    def save(self, path: str | Path, **metadata) -> Path:
        meta = {"num_classes": self.head.out_features, "image_size": self.image_size,
                "width": self.num_features // 4, "class_names": self.class_names, **metadata}
        return save_weights(self.state_dict(), path, metadata={"config": json.dumps(meta)})

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu") -> WorldEvaluator:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"evaluator weights not found: {path}")
        with safe_open(str(path), "pt") as fh:
            meta = json.loads(fh.metadata()["config"])
        model = cls(meta["num_classes"], meta["image_size"], meta["width"], meta.get("class_names"))
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        return model.eval().to(device)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts (pad + crop), flips and brightness: the photos already vary in pose and light."""
    n, _, h, w = x.shape
    pad = max(1, h // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx, dy = torch.randint(0, 2 * pad + 1, (2,), generator=gen).tolist()
    x = padded[:, :, dy:dy + h, dx:dx + w]
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    gain = 0.85 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    return (x * gain).clamp(0, 1)


@torch.no_grad()
def accuracy(model: WorldEvaluator, images: torch.Tensor, labels: torch.Tensor, batch: int = 256) -> float:
    model.eval()
    preds = torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, len(images), batch)])
    return (preds == labels).float().mean().item()


def train_world_evaluator(world: World, out_path: str | Path, *, steps: int = 800, batch_size: int = 128,
                          lr: float = 2e-3, width: int = 32, seed: int = 0, threads: int | None = 2, log=print) -> dict:
    seed_everything(seed, threads)
    t0 = time.time()
    images, labels = world.load_split("evaluator")
    x_all, y_all = to_unit(images), torch.from_numpy(labels)
    test_images, test_labels = world.load_split("test")
    model = WorldEvaluator(len(world.classes), world.config.image_size, width, [c.slug for c in world.classes])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, max(1, steps // 20)))
    gen = torch.Generator().manual_seed(seed)
    progress = Progress("world-evaluator", steps, log)
    for step in range(steps):
        model.train()
        idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
        loss = F.cross_entropy(model(_augment(x_all[idx], gen)), y_all[idx], label_smoothing=0.05)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress.step(step, loss=loss.item())
    model.eval()
    test_acc = accuracy(model, to_unit(test_images), torch.from_numpy(test_labels))
    model.save(out_path, steps=steps, seed=seed, test_accuracy=round(test_acc, 4))
    stats = {"seconds": round(time.time() - t0, 1), "steps": steps, "final_loss": loss.item(),
             "test_accuracy": test_acc, "params": sum(p.numel() for p in model.parameters()),
             "bytes": Path(out_path).stat().st_size}
    log(f"[world-evaluator] done {stats}")
    return stats
