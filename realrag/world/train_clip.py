"""Train the world's base CLIP on the captioned "web" split (the zero-shot retriever).

Captions mostly describe attributes, use the object's name only sometimes and are sometimes about
another object (label noise), so the base CLIP knows names only roughly: the gap that the
fine-tuned retrievers close. Saved as an open_clip state dict that
``open_clip.create_model_and_transforms("world-clip", pretrained=PATH)`` loads.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from realrag.world import CLIP_CONFIG
from realrag.world.catalog import PROMPT_TEMPLATE
from realrag.world.dataset import World
from realrag.world.training import Progress, clip_normalize, save_weights, seed_everything, to_unit, warmup_cosine


def build_clip(config_path: str | Path = CLIP_CONFIG, pretrained: str | Path | None = None):
    """(model, tokenizer) for the world CLIP config, random or from a checkpoint."""
    config_path = Path(config_path)
    open_clip.add_model_config(config_path)
    model = open_clip.create_model(config_path.stem, pretrained=str(pretrained) if pretrained else None)
    return model, open_clip.get_tokenizer(config_path.stem)


def load_web_split(world: World) -> tuple[torch.Tensor, list[str]]:
    from PIL import Image

    rows = world.captions()
    images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p, _ in rows])
    return to_unit(images), [c for _, c in rows]


@torch.no_grad()
def zero_shot_scores(model, tokenizer, world: World, split: str = "corpus") -> dict[str, float]:
    """Name -> image retrieval recall@1 over a split, and name-classification accuracy of its images."""
    model.eval()
    images, labels = world.load_split(split)
    img = F.normalize(model.encode_image(clip_normalize(to_unit(images))), dim=-1)
    txt = F.normalize(model.encode_text(tokenizer([PROMPT_TEMPLATE.format(name=c.name) for c in world.classes])), dim=-1)
    sims = txt @ img.T  # (classes, images)
    top1 = torch.as_tensor(labels)[sims.argmax(1)]
    recall1 = (top1 == torch.arange(len(world.classes))).float().mean().item()
    acc = ((img @ txt.T).argmax(1) == torch.as_tensor(labels)).float().mean().item()
    return {"recall@1": recall1, "accuracy": acc}


def train_world_clip(world: World, out_path: str | Path, *, config_path: str | Path = CLIP_CONFIG,
                     steps: int = 600, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
                     threads: int | None = 2, log=print) -> dict:
    seed_everything(seed, threads)
    t0 = time.time()
    model, tokenizer = build_clip(config_path)
    images, captions = load_web_split(world)
    tokens = tokenizer(captions)
    n = len(captions)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, max(1, steps // 20)))
    gen = torch.Generator().manual_seed(seed)
    progress = Progress("world-clip", steps, log)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=gen)
        x = clip_normalize(images[idx])
        # light jitter: the web split is fixed, so shift/flip it a little to avoid memorising pixels
        if torch.rand((), generator=gen) < 0.5:
            x = x.flip(-1)
        img = F.normalize(model.encode_image(x), dim=-1)
        txt = F.normalize(model.encode_text(tokens[idx]), dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
        target = torch.arange(len(idx))
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress.step(step, loss=loss.item())
    scores = zero_shot_scores(model, tokenizer, world)
    save_weights(model.state_dict(), out_path, metadata={"model": "world-clip", "steps": str(steps), "seed": str(seed)})
    stats = {"seconds": round(time.time() - t0, 1), "steps": steps, "batch_size": batch_size, "final_loss": loss.item(),
             "zero_shot_corpus_recall@1": scores["recall@1"], "zero_shot_corpus_accuracy": scores["accuracy"],
             "params": sum(p.numel() for p in model.parameters()), "bytes": Path(out_path).stat().st_size}
    log(f"[world-clip] done {stats}")
    return stats
