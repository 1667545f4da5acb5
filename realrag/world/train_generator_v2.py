"""Train world-sd v2 (``generator_service.world_sd_v2``) on the *test condition*: an object the model
does not know, named with a word it never read, and a photo of it.

Examples per batch (seen data only; unseen objects are never drawn, their words never used):

* ``invented``: an anonymous object prompted with a fresh invented name (words that occur in no
  catalogue name; some names reuse a seen brand word, as an unseen variant of a known brand does);
* ``generic``: an anonymous object prompted "a photo of a product" (~25 %);
* ``named``: a seen catalogue object by its name (reference dropped at random: text-only works too);
* ``override``: at a low rate, a seen name with another object's reference and target, so a reference
  can override even a name the model knows well.

A share of the examples (``p_same_photo``) use the target photo itself as its reference, as
IP-Adapter is trained; the rest a second photo of the same object. Text is dropped with the
reference kept (trains the reference-only branch of two-way guidance), and both are dropped
sometimes (the unconditional branch). The reference encoder gets an identity
objective: target and reference are two photos of the same object, InfoNCE over the batch (other
photos of the same object masked out), alone with large batches (``identity_steps``); then it is
frozen while the UNet learns to read it (``train_ref_encoder=True`` trains it on with the diffusion
loss plus ``id_weight`` x InfoNCE, which blurred the identity in an earlier run: 1-NN 0.88 -> 0.76).
The reference photo also enters the UNet as input channels. The evaluator is never used.

Warm start: ``init`` = a v1 directory; every tensor whose name and shape match is copied (UNet,
text encoder, reference CNN); the resampler and identity head start fresh.
"""

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from generator_service.world_sd import load_pipeline, train_scheduler
from generator_service.world_sd_v2 import (
    SpatialReferenceEncoder,
    WorldSDv2Config,
    WorldSDv2Pipeline,
    build_components,
    unet_input,
    unet_kwargs,
)
from realrag.world.catalog import GENERIC_PROMPT, _word
from realrag.world.dataset import World, render_extras
from realrag.world.train_generator import TRAIN_TEMPLATES, _ema_update, _min_snr_weight
from realrag.world.training import Progress, seed_everything, to_unit, warmup_cosine

KINDS = ("invented", "generic", "named", "override")
DEFAULT_MIX = {"invented": 0.4, "generic": 0.25, "named": 0.3, "override": 0.05}


def load_extras(world: World) -> np.ndarray:
    """The anonymous objects' photos, cached beside the world (rendering them takes about a minute)."""
    path = world.root / "extras.npy"
    if path.is_file():
        arr = np.load(path)
        if arr.shape[:2] == (world.config.extra_objects, world.config.extra_photos):
            return arr
    arr = render_extras(world.config, world.classes)
    np.save(path, arr)
    return arr


def catalogue_words(world: World) -> set[str]:
    return {w.lower() for c in world.classes for w in c.name.split()}


def seen_brand_words(world: World) -> list[str]:
    return sorted({c.name.split()[0] for c in world.seen})


def invented_words(world: World, n: int, seed: int = 0) -> list[str]:
    """``n`` fresh words from the catalogue's syllables, none a word of any catalogue name."""
    rng = random.Random(f"realrag-world/{seed}/invented-names")
    taken = catalogue_words(world)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        w = _word(rng, rng.choice([1, 2, 2]))
        if 3 <= len(w) <= 9 and w.lower() not in taken and w not in seen:
            seen.add(w)
            out.append(w)
    return out


class InventedNames:
    """"Brand Line Variant"-shaped names of invented words; a seen brand word with ``p_seen_brand``."""

    def __init__(self, world: World, rng: random.Random, p_seen_brand: float = 0.3, pool: int = 4000, seed: int = 0):
        self.words = invented_words(world, pool, seed)
        self.brands = seen_brand_words(world)
        self.rng, self.p_seen_brand = rng, p_seen_brand

    def __call__(self) -> str:
        r = self.rng
        brand = r.choice(self.brands) if r.random() < self.p_seen_brand else r.choice(self.words)
        return " ".join([brand, *r.sample(self.words, r.choice([1, 2]))])


def info_nce(a: torch.Tensor, b: torch.Tensor, keys: list, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between L2-normalised a[i] and b[i]; other pairs of the same object are masked."""
    logits = a @ b.T / temperature
    same = torch.tensor([[ka == kb for kb in keys] for ka in keys])
    eye = torch.eye(len(keys), dtype=torch.bool)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(keys))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


class PairSource:
    """Two different photos of one object: seen catalogue classes (train split) and anonymous objects."""

    def __init__(self, world: World, extras: np.ndarray):
        seen = world.seen
        images, labels = world.load_split("train", seen)
        self.named = to_unit(images).mul_(2).sub_(1)
        self.by_class: dict[int, list[int]] = {}
        for i, lab in enumerate(labels.tolist()):
            self.by_class.setdefault(lab, []).append(i)
        self.classes = sorted(self.by_class)
        self.names = {c.index: c.name for c in seen}
        self.siblings = {c.index: [o.index for o in seen if o.line == c.line and o is not c] or
                         [o.index for o in seen if o is not c] for c in seen}
        n_obj, n_photo = extras.shape[:2]
        self.n_obj, self.n_photo = n_obj, n_photo
        self.extra = to_unit(extras.reshape(-1, *extras.shape[2:])).mul_(2).sub_(1).view(n_obj, n_photo, 3, *extras.shape[2:4])

    def named_pair(self, cls: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        i, j = rng.sample(self.by_class[cls], 2)
        return self.named[i], self.named[j]

    def extra_pair(self, k: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        i, j = rng.sample(range(self.n_photo), 2)
        return self.extra[k, i], self.extra[k, j]


def _flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def pretrain_identity(encoder: SpatialReferenceEncoder, pairs: PairSource, *, steps: int, batch_size: int = 256,
                      lr: float = 1e-3, seed: int = 0, log=print) -> float:
    """InfoNCE on the reference encoder alone: every catalogue class once per batch (its siblings are
    the hard negatives), the rest anonymous objects."""
    rng, gen = random.Random(seed + 1), torch.Generator().manual_seed(seed + 1)
    params = list(encoder.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, max(1, steps // 20)))
    progress = Progress("world-sd-v2 identity", steps, log)
    encoder.train()
    loss = torch.zeros(())
    for step in range(steps):
        classes = rng.sample(pairs.classes, min(len(pairs.classes), batch_size // 4))
        objs = rng.sample(range(pairs.n_obj), batch_size - len(classes))
        items = [pairs.named_pair(c, rng) for c in classes] + [pairs.extra_pair(k, rng) for k in objs]
        a = _flip(torch.stack([p[0] for p in items]), gen)
        b = _flip(torch.stack([p[1] for p in items]), gen)
        za = encoder.identity(encoder((a + 1) / 2)[0])
        zb = encoder.identity(encoder((b + 1) / 2)[0])
        loss = info_nce(za, zb, [("c", c) for c in classes] + [("x", k) for k in objs])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        progress.step(step, loss=loss.item())
    return loss.item()


def portable_path(path: str | Path) -> str:
    """A path fit for a committed model card: relative to the working directory when under it, else
    just its name (never this machine's absolute path)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return resolved.name


def warm_start(init: str | Path, cfg: WorldSDv2Config, modules: tuple, log=print) -> None:
    """Copy every tensor of a v1 (or v2) directory whose name and shape match into ``modules``. A v1
    ``conv_in`` (3 input channels) fills the image channels of v2's; the reference channels start at
    zero (as InstructPix2Pix widens Stable Diffusion's): the photo channels start silent."""
    src = load_pipeline(init)
    for name, dst, old in zip(("unet", "ref_encoder", "text_encoder"), modules,
                              (src.unet, src.ref_encoder, src.text_encoder), strict=True):
        own = dst.state_dict()
        take = {k: v for k, v in old.state_dict().items() if k in own and own[k].shape == v.shape}
        w = old.state_dict().get("conv_in.weight")
        if name == "unet" and w is not None and "conv_in.weight" not in take:
            widened = torch.zeros_like(own["conv_in.weight"])
            widened[:, :w.shape[1]] = w
            take["conv_in.weight"] = widened
        dst.load_state_dict(take, strict=False)
        log(f"[world-sd-v2] warm start {name}: {len(take)}/{len(own)} tensors from {init}")


def train_world_generator_v2(world: World, out_dir: str | Path, *, init: str | Path | None = None, steps: int = 3000,
                             batch_size: int = 32, lr: float = 5e-4, identity_steps: int = 300, identity_batch: int = 256,
                             id_weight: float = 0.05, train_ref_encoder: bool = False,
                             mix: dict[str, float] | None = None, p_drop_ref: float = 0.3, p_drop_text: float = 0.1,
                             p_drop_both: float = 0.05, p_same_photo: float = 0.3, snr_gamma: float = 5.0,
                             ema_decay: float = 0.995, seed: int = 0,
                             threads: int | None = 2, cfg: WorldSDv2Config | None = None,
                             time_budget_s: float | None = None, log=print) -> dict:
    seed_everything(seed, threads)
    t0 = time.time()
    out_dir = Path(out_dir)
    cfg = cfg or WorldSDv2Config()
    mix = mix or DEFAULT_MIX
    modules = build_components(cfg)
    unet, ref_encoder, text_encoder = modules
    if init:
        warm_start(init, cfg, modules, log)
    pairs = PairSource(world, load_extras(world))
    log(f"[world-sd-v2] data: {len(pairs.named)} photos of {len(pairs.classes)} seen classes + "
        f"{pairs.n_obj} anonymous objects ({time.time() - t0:.0f}s)")
    t_id = time.time()
    id_loss = pretrain_identity(ref_encoder, pairs, steps=identity_steps, batch_size=identity_batch,
                                                  seed=seed, log=log) if identity_steps else None
    id_seconds = time.time() - t_id

    sched = train_scheduler(cfg)
    sched.alphas_cumprod = sched.alphas_cumprod.float()
    if not train_ref_encoder:  # keep the identity the encoder just learned; the UNet learns to read it
        ref_encoder.requires_grad_(False)
        id_weight = 0.0
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    lr_sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, steps, max(1, steps // 25)))
    emas = [copy.deepcopy(m).requires_grad_(False) for m in modules]
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    names = InventedNames(world, rng, seed=seed)
    kinds, weights = list(mix), [mix[k] for k in mix]
    progress = Progress("world-sd-v2", steps, log)
    done, loss, nce = 0, torch.zeros(()), torch.zeros(())
    for step in range(steps):
        for m in modules:
            m.train()
        targets, refs, prompts, keys, keep_ref = [], [], [], [], []
        for kind in rng.choices(kinds, weights, k=batch_size):
            if kind == "named":
                c = rng.choice(pairs.classes)
                tgt, ref = pairs.named_pair(c, rng)
                prompt, key, kept = rng.choice(TRAIN_TEMPLATES).format(name=pairs.names[c]), ("c", c), rng.random() >= p_drop_ref
            elif kind == "override":  # a seen name, another object's reference and target
                c = rng.choice(pairs.classes)
                if rng.random() < 0.5:
                    s = rng.choice(pairs.siblings[c])
                    tgt, ref = pairs.named_pair(s, rng)
                    key = ("c", s)
                else:
                    k = rng.randrange(pairs.n_obj)
                    tgt, ref = pairs.extra_pair(k, rng)
                    key = ("x", k)
                prompt, kept = rng.choice(TRAIN_TEMPLATES).format(name=pairs.names[c]), True
            else:
                k = rng.randrange(pairs.n_obj)
                tgt, ref = pairs.extra_pair(k, rng)
                prompt = GENERIC_PROMPT if kind == "generic" else rng.choice(TRAIN_TEMPLATES).format(name=names())
                key, kept = ("x", k), True
            if kept and rng.random() < p_same_photo:
                ref = tgt  # IP-Adapter's pairing: the target is its own reference (flipped independently below)
            u = rng.random()
            if u < p_drop_both:
                prompt, kept = "", False
            elif u < p_drop_both + p_drop_text and kept:
                prompt = ""  # reference only
            targets.append(tgt)
            refs.append(ref)
            prompts.append(prompt)
            keys.append(key)
            keep_ref.append(kept)
        x0, ref = _flip(torch.stack(targets), gen), _flip(torch.stack(refs), gen)
        keep = torch.tensor(keep_ref)
        text = text_encoder(prompts)
        if not train_ref_encoder:
            ref_encoder.eval()
        with torch.set_grad_enabled(train_ref_encoder):
            pooled, tokens = ref_encoder((ref + 1) / 2)
        pooled = torch.where(keep.view(-1, 1), pooled, torch.zeros_like(pooled))
        tokens = torch.where(keep.view(-1, 1, 1), tokens, torch.zeros_like(tokens))
        photo = torch.where(keep.view(-1, 1, 1, 1), ref, torch.zeros_like(ref))

        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, cfg.num_train_timesteps, (batch_size,), generator=gen)
        noisy = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if cfg.prediction_type == "v_prediction" else noise
        pred = unet(unet_input(noisy, photo, cfg), t, **unet_kwargs(text, pooled, tokens.unsqueeze(1))).sample
        per_example = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_example * _min_snr_weight(sched, t, snr_gamma)).mean()
        if id_weight and keep.sum() > 1:
            idx = keep.nonzero().flatten()
            z_ref = ref_encoder.identity(pooled[idx])
            z_tgt = ref_encoder.identity(ref_encoder((x0[idx] + 1) / 2)[0])
            nce = info_nce(z_ref, z_tgt, [keys[i] for i in idx.tolist()])
            loss = loss + id_weight * nce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        lr_sched.step()
        decay = min(ema_decay, (1 + step) / (10 + step))
        for e, m in zip(emas, modules, strict=True):
            _ema_update(e, m, decay)
        done = step + 1
        progress.step(step, loss=loss.item(), nce=nce.item())
        if time_budget_s is not None and time.time() - t0 > time_budget_s:
            log(f"[world-sd-v2] time budget {time_budget_s:.0f}s reached after {done} steps")
            break

    cfg.training = {
        "steps": done, "planned_steps": steps, "batch_size": batch_size, "lr": lr, "init": portable_path(init) if init else None,
        "identity_steps": identity_steps, "identity_batch": identity_batch,
        "identity_seconds": round(id_seconds, 1), "id_weight": id_weight, "train_ref_encoder": train_ref_encoder, "mix": mix,
        "p_drop_ref": p_drop_ref, "p_drop_text": p_drop_text, "p_drop_both": p_drop_both, "p_same_photo": p_same_photo,
        "snr_gamma": snr_gamma,
        "ema_decay": ema_decay, "seed": seed, "world_seed": world.config.seed, "extra_objects": world.config.extra_objects,
        "seen_classes": [c.slug for c in world.seen], "seconds": round(time.time() - t0, 1),
    }
    pipe = WorldSDv2Pipeline(cfg, *emas)
    pipe.save(out_dir)
    stats = {"seconds": round(time.time() - t0, 1), "identity_seconds": round(id_seconds, 1), "steps": done,
             "final_loss": loss.item(), "final_identity_loss": id_loss, "params": sum(p.numel() for p in params),
             "bytes": sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file())}
    log(f"[world-sd-v2] done {stats}")
    return stats


def main(argv: list[str] | None = None) -> int:
    """``python -m realrag.world.train_generator_v2 --world DIR --out DIR [--init realrag/world/assets/world-sd]``"""
    import argparse
    import json

    p = argparse.ArgumentParser(description="train world-sd v2 (see the module docstring)")
    p.add_argument("--world", required=True, help="a rendered world (`python -m realrag.world render --out DIR`)")
    p.add_argument("--out", required=True, help="output directory (keep large weights out of the repository)")
    p.add_argument("--init", default=None, help="warm start from this v1 or v2 directory")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--identity-steps", type=int, default=300)
    p.add_argument("--identity-batch", type=int, default=256)
    p.add_argument("--ema-decay", type=float, default=0.995)
    p.add_argument("--train-ref-encoder", action="store_true", help="train the reference encoder with the UNet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--time-budget", type=float, default=None, help="stop after this many seconds")
    a = p.parse_args(argv)
    stats = train_world_generator_v2(World.load(a.world), a.out, init=a.init, steps=a.steps, batch_size=a.batch_size, lr=a.lr,
                                     identity_steps=a.identity_steps, identity_batch=a.identity_batch,
                                     ema_decay=a.ema_decay, train_ref_encoder=a.train_ref_encoder, seed=a.seed,
                                     threads=a.threads, time_budget_s=a.time_budget)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
