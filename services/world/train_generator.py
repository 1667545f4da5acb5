"""Train ``world-sd`` on the *seen* classes only.

Each example is (photo, prompt, reference) where the reference is *another* photo of the same
object (different pose, scale, background, light), so the model learns to carry identity from a
reference instead of copying pixels. The reference is dropped at random (``p_drop_ref``), so the
model also generates from text alone; text is dropped at random for classifier-free guidance.
The frozen text encoder is the world CLIP's text tower. Weights are an EMA of the training weights.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from generator_service.families.world import (
    ReferenceEncoder,
    WorldSDConfig,
    WorldSDPipeline,
    build_text_encoder,
    build_unet,
    train_scheduler,
)
from services.world import CLIP_CONFIG, CLIP_WEIGHTS
from services.world.catalog import PROMPT_TEMPLATE
from services.world.dataset import World
from services.world.training import Progress, seed_everything, to_unit, warmup_cosine

TRAIN_TEMPLATES = (PROMPT_TEMPLATE, "{name}", "the {name} on a table", "a {name}")


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)


def train_world_generator(world: World, out_dir: str | Path, *, clip_config: str | Path = CLIP_CONFIG,
                          clip_weights: str | Path | None = CLIP_WEIGHTS, steps: int = 3000, batch_size: int = 32,
                          lr: float = 5e-4, p_drop_ref: float = 0.3, p_drop_text: float = 0.1,
                          ema_decay: float = 0.998, seed: int = 0, threads: int | None = 2,
                          cfg: WorldSDConfig | None = None, time_budget_s: float | None = None, log=print) -> dict:
    seed_everything(seed, threads)
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg or WorldSDConfig()
    # store the text-encoder paths relative to the output directory when they sit next to it
    cfg.clip_config = _relative_or_absolute(Path(clip_config), out_dir)
    cfg.clip_weights = _relative_or_absolute(Path(clip_weights), out_dir) if clip_weights else None
    text_encoder = build_text_encoder(cfg, out_dir)
    unet = build_unet(cfg, text_encoder.width)
    ref_encoder = ReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim)
    sched = train_scheduler(cfg)

    seen = world.seen
    images, labels = world.load_split("train", seen)
    x_all = to_unit(images) * 2 - 1
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        by_class.setdefault(lab, []).append(i)
    class_pos = {c.index: k for k, c in enumerate(seen)}
    # text states for every (class, template), computed once: the text encoder is frozen
    with torch.no_grad():
        text_states = torch.stack([
            text_encoder([t.format(name=c.name) for t in TRAIN_TEMPLATES]) for c in seen
        ])  # (classes, templates, ctx, width)
        empty = text_encoder([""])[0]

    params = list(unet.parameters()) + list(ref_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, max(1, steps // 25)))
    ema_unet, ema_ref = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(ref_encoder).requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    progress = Progress("world-sd", steps, log)
    labels_t = torch.from_numpy(labels)
    n_templates = len(TRAIN_TEMPLATES)
    done = 0
    for step in range(steps):
        unet.train()
        ref_encoder.train()
        idx = torch.randint(0, len(x_all), (batch_size,), generator=gen)
        labs = labels_t[idx].tolist()
        ref_idx = torch.tensor([rng.choice([j for j in by_class[lab] if j != i] or [i]) for i, lab in zip(idx.tolist(), labs)])
        x0 = x_all[idx]
        ref = x_all[ref_idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
        flip_r = torch.rand(batch_size, generator=gen) < 0.5
        ref = torch.where(flip_r.view(-1, 1, 1, 1), ref.flip(-1), ref)

        tmpl = torch.randint(0, n_templates, (batch_size,), generator=gen)
        text = text_states[torch.tensor([class_pos[lab] for lab in labs]), tmpl]
        drop_text = torch.rand(batch_size, generator=gen) < p_drop_text
        text = torch.where(drop_text.view(-1, 1, 1), empty.expand_as(text), text)
        ref_emb = ref_encoder((ref + 1) / 2)
        drop_ref = torch.rand(batch_size, generator=gen) < p_drop_ref
        ref_emb = torch.where(drop_ref.view(-1, 1), torch.zeros_like(ref_emb), ref_emb).unsqueeze(1)

        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (batch_size,), generator=gen)
        noisy = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        pred = unet(noisy, t, encoder_hidden_states=text, added_cond_kwargs={"image_embeds": [ref_emb]}).sample
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_ref, ref_encoder, decay)
        done = step + 1
        progress.step(step, loss=loss.item())
        if time_budget_s is not None and time.time() - t0 > time_budget_s:
            log(f"[world-sd] time budget {time_budget_s:.0f}s reached after {done} steps")
            break

    cfg.training = {"steps": done, "planned_steps": steps, "batch_size": batch_size, "lr": lr, "p_drop_ref": p_drop_ref,
                    "p_drop_text": p_drop_text, "ema_decay": ema_decay, "seed": seed,
                    "seen_classes": [c.slug for c in seen], "seconds": round(time.time() - t0, 1)}
    pipe = WorldSDPipeline(cfg, ema_unet, ema_ref, text_encoder)
    pipe.save(out_dir)
    stats = {"seconds": round(time.time() - t0, 1), "steps": done, "final_loss": loss.item(),
             "params": sum(p.numel() for p in params),
             "bytes": sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())}
    log(f"[world-sd] done {stats}")
    return stats


def _relative_or_absolute(target: Path, out_dir: Path) -> str:
    import os

    target, out_dir = target.resolve(), out_dir.resolve()
    try:
        rel = os.path.relpath(target, out_dir)
    except ValueError:
        return str(target)
    return rel if not rel.startswith("../../..") else str(target)
