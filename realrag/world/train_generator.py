"""Train ``world-sd`` on *seen* objects only.

Each example is (photo, prompt, reference) where the reference is *another* photo of the same
object (different pose, scale, background, light), so the model learns to carry identity from a
reference instead of copying pixels. Two kinds of seen objects:

* the seen catalogue classes, prompted by name ("a photo of a Glairan Kradrel Glux");
* the world's anonymous objects (random designs, ``WorldConfig.extra_objects``), prompted with a
  generic "a photo of a product": for them only the reference says what to draw, which teaches the
  model to render any composition of parts it is shown.

With probability ``p_trust_ref`` a named example shows another object (usually a sibling) in both
reference and target while the prompt keeps the name: when name and reference disagree, the
reference wins, which is what retrieval of an object the model does not know needs.
The reference is dropped at random (``p_drop_ref``) so the model also generates from text alone;
text is dropped at random for classifier-free guidance. The loss is v-prediction MSE with min-SNR
weighting (faster convergence for small budgets). Saved weights are an EMA of the training weights.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from generator_service.world_sd import (
    ReferenceEncoder,
    WorldSDConfig,
    WorldSDPipeline,
    WorldTextEncoder,
    build_unet,
    train_scheduler,
)
from realrag.world.catalog import GENERIC_PROMPT, PROMPT_TEMPLATE
from realrag.world.dataset import World, render_extras
from realrag.world.training import Progress, seed_everything, to_unit, warmup_cosine

TRAIN_TEMPLATES = (PROMPT_TEMPLATE, "{name}", "the {name} on a table", "a {name}")


def _ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - decay)


def _min_snr_weight(sched, t: torch.Tensor, gamma: float) -> torch.Tensor:
    """min(SNR, γ) / (SNR + 1): the min-SNR-γ weight for v-prediction (Hang et al., 2023)."""
    alphas = sched.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / (snr + 1)


def train_world_generator(world: World, out_dir: str | Path, *, steps: int = 3000, batch_size: int = 32,
                          lr: float = 5e-4, p_drop_ref: float = 0.3, p_drop_text: float = 0.1,
                          p_extra: float = 0.5, p_trust_ref: float = 0.25, snr_gamma: float = 5.0, ema_decay: float = 0.998, seed: int = 0,
                          threads: int | None = 2, cfg: WorldSDConfig | None = None,
                          time_budget_s: float | None = None, log=print) -> dict:
    seed_everything(seed, threads)
    t0 = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg or WorldSDConfig()
    unet, ref_encoder, text_encoder = build_unet(cfg), ReferenceEncoder(cfg.ref_width, cfg.ref_embed_dim), WorldTextEncoder(cfg)
    sched = train_scheduler(cfg)
    sched.alphas_cumprod = sched.alphas_cumprod.float()

    seen = world.seen
    images, labels = world.load_split("train", seen)
    named = to_unit(images) * 2 - 1
    by_class: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        by_class.setdefault(lab, []).append(i)
    names = {c.index: c.name for c in seen}
    siblings = {c.index: [o.index for o in seen if o.line == c.line and o is not c] or [o.index for o in seen if o is not c]
                for c in seen}
    extras = render_extras(world.config, world.classes) if world.config.extra_objects and p_extra > 0 else None
    if extras is not None:
        n_obj, n_photo = extras.shape[:2]
        extra_t = to_unit(extras.reshape(-1, *extras.shape[2:])).mul_(2).sub_(1).view(n_obj, n_photo, 3, *extras.shape[2:4])
        log(f"[world-sd] {len(named)} photos of {len(seen)} seen classes + {n_obj * n_photo} photos of {n_obj} "
            f"anonymous objects ({time.time() - t0:.0f}s)")

    params = [*unet.parameters(), *ref_encoder.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, max(1, steps // 25)))
    modules = (unet, ref_encoder, text_encoder)
    emas = [copy.deepcopy(m).requires_grad_(False) for m in modules]
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    progress = Progress("world-sd", steps, log)
    labels_t = torch.from_numpy(labels)
    done = 0
    for step in range(steps):
        for m in modules:
            m.train()
        n_extra = int(round(batch_size * p_extra)) if extras is not None else 0
        n_named = batch_size - n_extra
        idx = torch.randint(0, len(named), (n_named,), generator=gen)
        labs = labels_t[idx].tolist()
        drop_ref = (torch.rand(batch_size, generator=gen) < p_drop_ref).tolist()
        prompts = [rng.choice(TRAIN_TEMPLATES).format(name=names[lab]) for lab in labs]
        # "trust the reference": the name says one object, the reference (and target) show another,
        # usually a sibling; the model learns that a reference overrides what the name suggests
        shown = [lab if drop_ref[k] or rng.random() >= p_trust_ref else rng.choice(siblings[lab])
                 for k, lab in enumerate(labs)]
        tgt_idx = [i if s_ == lab else rng.choice(by_class[s_]) for i, lab, s_ in zip(idx.tolist(), labs, shown, strict=True)]
        ref_idx = [rng.choice([j for j in by_class[s_] if j != i] or [i]) for i, s_ in zip(tgt_idx, shown, strict=True)]
        x0, ref = [named[torch.tensor(tgt_idx)]], [named[torch.tensor(ref_idx)]]
        if n_extra:
            obj = torch.randint(0, n_obj, (n_extra,), generator=gen)
            pair = torch.stack([torch.randperm(n_photo, generator=gen)[:2] for _ in range(n_extra)])
            x0.append(extra_t[obj, pair[:, 0]])
            ref.append(extra_t[obj, pair[:, 1]])
            prompts += [GENERIC_PROMPT] * n_extra
        x0, ref = torch.cat(x0), torch.cat(ref)
        flip = torch.rand(batch_size, generator=gen) < 0.5
        x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
        flip_r = torch.rand(batch_size, generator=gen) < 0.5
        ref = torch.where(flip_r.view(-1, 1, 1, 1), ref.flip(-1), ref)
        drop_text = (torch.rand(batch_size, generator=gen) < p_drop_text).tolist()
        text = text_encoder(["" if d else p for p, d in zip(prompts, drop_text, strict=True)])
        ref_emb = ref_encoder((ref + 1) / 2)
        ref_emb = torch.where(torch.tensor(drop_ref).view(-1, 1), torch.zeros_like(ref_emb), ref_emb)

        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (batch_size,), generator=gen)
        noisy = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        pred = unet(noisy, t, encoder_hidden_states=text, class_labels=ref_emb,
                    added_cond_kwargs={"image_embeds": [ref_emb.unsqueeze(1)]}).sample
        per_example = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_example * _min_snr_weight(sched, t, snr_gamma)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        for e, m in zip(emas, modules, strict=True):
            _ema_update(e, m, decay)
        done = step + 1
        progress.step(step, loss=loss.item())
        if time_budget_s is not None and time.time() - t0 > time_budget_s:
            log(f"[world-sd] time budget {time_budget_s:.0f}s reached after {done} steps")
            break

    cfg.training = {
        "steps": done,
        "planned_steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "p_drop_ref": p_drop_ref,
        "p_drop_text": p_drop_text,
        "p_extra": p_extra,
        "p_trust_ref": p_trust_ref,
        "snr_gamma": snr_gamma,
        "ema_decay": ema_decay,
        "seed": seed,
        "world_seed": world.config.seed,
        "extra_objects": world.config.extra_objects,
        "seen_classes": [c.slug for c in seen],
        "seconds": round(time.time() - t0, 1),
    }
    pipe = WorldSDPipeline(cfg, *emas)
    pipe.save(out_dir)
    stats = {
        "seconds": round(time.time() - t0, 1),
        "steps": done,
        "final_loss": loss.item(),
        "params": sum(p.numel() for p in params),
        "bytes": sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file()),
    }
    log(f"[world-sd] done {stats}")
    return stats
