"""Stage 3, train: the text tower (and optionally the image tower) with the reflective InfoNCE.

One run per arm: ``reflective`` (in-batch + reflective negatives) or ``inbatch`` (the standard
contrastive baseline, same recipe). Each run lives in ``WORK/runs/<arm>-<fingerprint>/``; the
fingerprint covers everything the weights depend on, so a rerun with the same inputs is a cache hit.
The in-batch arm does not depend on the generator, so one baseline serves every generator.

Resumable: every ``checkpoint_every`` optimizer steps and at each epoch end, ``state.pt`` stores the
trainable weights, optimizer, schedule, scaler, RNG states and the position (epoch, micro-batch).
The data order derives from (seed, epoch) only, so a resumed run takes exactly the same steps as an
uninterrupted one.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from retriever_service.checkpoints import image_tower_fingerprint, tower_parameters
from services.files import atomic_path

from .cache import ProgressHook, StageTiming, progress, read_json, write_json
from .config import Negatives, TrainConfig, fingerprint
from .data import Dataset, Prompt, open_image
from .loss import reflective_info_nce
from .mine import Mined, build_encoder

# TrainConfig fields that do not change the trained weights of an arm
NOT_IN_RUN_KEY = {
    "work_dir", "output", "compare_standard", "eval_top_k", "generator_device", "encoder_batch_size",
    "negatives", "checkpoint_every",
    "data", "data_root",  # the data hash covers the content, wherever it lives
}
# ... and, for the in-batch arm, the generator side does not matter either
GENERATOR_FIELDS = {
    "generator", "samples_per_prompt", "sample_steps", "sample_guidance", "sample_width",
    "sample_height", "negatives_per_sample",
}


@dataclass
class TrainedRun:
    arm: Negatives
    run_dir: Path
    fingerprint: str
    towers: list[str]
    base_image_fingerprint: str
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def weights(self) -> Path:
        return self.run_dir / "final.safetensors"

    def load_into(self, model: torch.nn.Module) -> None:
        from safetensors.torch import load_file

        apply_tensors(model, load_file(str(self.weights)))


def apply_tensors(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))


def run_key(config: TrainConfig, arm: Negatives, dataset: Dataset, mined: Mined | None, image_key: str) -> str:
    excluded = NOT_IN_RUN_KEY | (GENERATOR_FIELDS if arm == "inbatch" else set())
    hyper = {k: v for k, v in config.hyperparameters().items() if k not in excluded}
    return fingerprint("train-v1", arm, hyper, dataset.data_hash, image_key, mined.fingerprint if arm == "reflective" else None)


def resolve_precision(config: TrainConfig, device: str) -> str:
    if config.precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("precision fp16 needs a CUDA device (loss scaling); use bf16 or fp32 on CPU")
    if config.precision != "auto":
        return config.precision
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress_ = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


class _Batcher:
    """Turns prompt positions into tensors: tokens, positive / negative image embeddings or pixels."""

    def __init__(self, config, arm, dataset, prompts, mined, corpus_vectors, encoder, device):
        self.config = config
        self.dataset = dataset
        self.prompts = prompts
        self.encoder = encoder
        self.device = device
        self.tokens = encoder.tokenizer([p.text for p in prompts])
        self.objects = np.array([p.object_id for p in prompts])
        self.positives = [[dataset.position(i) for i in p.positives] for p in prompts]
        self.negatives = [
            [dataset.position(i) for i in mined.image_ids(p.id)] if arm == "reflective" else [] for p in prompts
        ]
        self.corpus = torch.from_numpy(corpus_vectors).to(device)
        self.train_image = config.train_image_tower

    def choose_positives(self, epoch: int) -> list[int]:
        rng = np.random.default_rng([self.config.seed, epoch, 1])
        return [options[int(rng.integers(len(options)))] for options in self.positives]

    def image_embeddings(self, model, positions: list[int]) -> torch.Tensor:
        if not self.train_image:
            return self.corpus[positions]
        pixels = torch.stack(
            [self.encoder.preprocess(open_image(self.dataset.corpus[i].path)) for i in positions]
        ).to(self.device)
        return F.normalize(model.encode_image(pixels).float(), dim=-1)

    def loss(self, model, rows: np.ndarray, chosen: list[int], logit_scale) -> torch.Tensor:
        tokens = self.tokens[torch.as_tensor(rows)].to(self.device)
        queries = F.normalize(model.encode_text(tokens).float(), dim=-1)
        positives = self.image_embeddings(model, [chosen[r] for r in rows])
        objects = self.objects[rows]
        same = torch.from_numpy(objects[:, None] == objects[None, :]).to(self.device)
        width = max(len(self.negatives[r]) for r in rows)
        reflective = mask = None
        if width:
            flat = [i for r in rows for i in self.negatives[r]]
            vectors = self.image_embeddings(model, flat)
            reflective = torch.zeros(len(rows), width, vectors.shape[1], device=self.device)
            mask = torch.zeros(len(rows), width, dtype=torch.bool, device=self.device)
            offset = 0
            for b, r in enumerate(rows):
                count = len(self.negatives[r])
                reflective[b, :count] = vectors[offset : offset + count]
                mask[b, :count] = True
                offset += count
        return reflective_info_nce(
            queries,
            positives,
            logit_scale,
            reflective,
            mask,
            same if self.config.mask_same_object else None,
        )


def recall_at_1(model, encoder, prompts: list[Prompt], dataset: Dataset, gallery: torch.Tensor) -> float:
    """Object-level recall@1 of `prompts` against the gallery (one row per corpus image)."""
    if not prompts:
        return float("nan")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        tokens = encoder.tokenizer([p.text for p in prompts]).to(gallery.device)
        queries = F.normalize(model.encode_text(tokens).float(), dim=-1)
        best = (queries @ gallery.T).argmax(dim=1).cpu().numpy()
    model.train(was_training)
    objects = dataset.object_ids
    return float(np.mean([objects[b] == p.object_id for b, p in zip(best, prompts, strict=True)]))


def embed_gallery(model, encoder, dataset: Dataset, device: str) -> torch.Tensor:
    """All corpus images through the model's current image tower (only when it is trained)."""
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(dataset.corpus), encoder.batch_size):
            batch = dataset.corpus[start : start + encoder.batch_size]
            pixels = torch.stack([encoder.preprocess(open_image(i.path)) for i in batch]).to(device)
            out.append(F.normalize(model.encode_image(pixels).float(), dim=-1))
    model.train(was_training)
    return torch.cat(out)


def _save_state(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _trainable_state(params: dict[str, torch.nn.Parameter]) -> dict[str, torch.Tensor]:
    return {name: p.detach().to("cpu").clone() for name, p in params.items()}


def run_train(
    config: TrainConfig,
    dataset: Dataset,
    mined: Mined | None,
    corpus_vectors: np.ndarray,
    arm: Negatives,
    image_key: str,
    hook: ProgressHook | None = None,
) -> tuple[TrainedRun, StageTiming]:
    """Train one arm from the base encoder (a fresh copy: the caller's encoder stays frozen).

    `image_key` is ``mine.encoder_key`` of the base encoder (names the frozen image space).
    """
    from safetensors.torch import save_file

    if arm == "reflective" and mined is None:
        raise ValueError("the reflective arm needs mined negatives")
    key = run_key(config, arm, dataset, mined, image_key)
    run_dir = Path(config.work_dir) / "runs" / f"{arm}-{key}"
    towers = ["temperature", "text"] + (["image"] if config.train_image_tower else [])
    prompts = dataset.split("train")
    timing = StageTiming(f"train-{arm}", "steps")

    done = read_json(run_dir / "done.json")
    if done is not None and (run_dir / "final.safetensors").is_file():
        timing.cached = done["summary"]["steps"]
        return (
            TrainedRun(arm, run_dir, key, towers, done["base_image_fingerprint"], done["history"], done["summary"]),
            timing,
        )
    if not prompts:
        raise ValueError("no training prompts (every object is held out)")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", {"arm": arm, "fingerprint": key, "config": config.hyperparameters()})
    encoder = build_encoder(config)
    base_fp = image_tower_fingerprint(encoder.model)

    device = encoder.device
    precision = resolve_precision(config, device)
    model = encoder.model
    model.requires_grad_(False)
    params = tower_parameters(model, [t for t in towers if t != "temperature"])
    for p in params.values():
        p.requires_grad_(True)
    if config.temperature is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(1.0 / config.temperature))
    else:
        model.logit_scale.requires_grad_(True)
        params["logit_scale"] = model.logit_scale
    model.train()

    decay = [p for n, p in params.items() if p.ndim >= 2 and n != "logit_scale"]
    no_decay = [p for n, p in params.items() if p.ndim < 2 and n != "logit_scale"]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr": config.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": config.lr},
    ]
    if "logit_scale" in params:
        groups.append({"params": [model.logit_scale], "weight_decay": 0.0, "lr": config.temperature_lr or config.lr})
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], betas=(0.9, 0.98), eps=1e-6)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    autocast = (
        torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        if precision in ("bf16", "fp16")
        else nullcontext()
    )

    micro_per_epoch = math.ceil(len(prompts) / config.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / config.grad_accum_steps)
    total_steps = steps_per_epoch * config.epochs
    warmup = config.warmup_steps if config.warmup_steps is not None else max(1, round(0.1 * total_steps))

    batcher = _Batcher(config, arm, dataset, prompts, mined, corpus_vectors, encoder, device)
    monitor = dataset.split("val") if config.early_stopping_patience else []

    state_path = run_dir / "state.pt"
    step, start_epoch, start_micro = 0, 0, 0
    history: list[dict[str, Any]] = []
    best = {"recall_at_1": -1.0, "epoch": None, "bad_epochs": 0}
    torch.manual_seed(config.seed)
    if state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") == key:
            apply_tensors(model, state["weights"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["torch_rng"])
            step, start_epoch, start_micro = state["step"], state["epoch"], state["micro"]
            history, best = state["history"], state["best"]
            timing.cached = step

    def checkpoint(epoch: int, micro: int) -> None:
        _save_state(
            state_path,
            {
                "fingerprint": key,
                "weights": _trainable_state(params),
                "optimizer": optimizer.state_dict(),
                "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "step": step,
                "epoch": epoch,
                "micro": micro,
                "history": history,
                "best": best,
            },
        )

    def logit_scale() -> torch.Tensor:
        return model.logit_scale.exp().clamp(max=100.0)

    stopped_early = bool(best.get("stopped"))
    seen = 0
    bar = progress(total=total_steps, desc=f"train {arm}", unit="step", initial=step)
    with timing:
        for epoch in range(start_epoch, start_epoch if stopped_early else config.epochs):
            order = np.random.default_rng([config.seed, epoch]).permutation(len(prompts))
            chosen = batcher.choose_positives(epoch)
            batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
            group_losses: list[float] = []
            for micro in range(start_micro if epoch == start_epoch else 0, len(batches)):
                group_start = micro - micro % config.grad_accum_steps
                group_size = min(config.grad_accum_steps, len(batches) - group_start)
                with autocast:
                    loss = batcher.loss(model, batches[micro], chosen, logit_scale())
                scaler.scale(loss / group_size).backward()
                group_losses.append(float(loss.detach()))
                seen += len(batches[micro])
                if micro + 1 - group_start < group_size:
                    continue
                for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
                    group["lr"] = base_lr * lr_factor(step, warmup, total_steps, config.schedule)
                if config.max_grad_norm:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(list(params.values()), config.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                history.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": float(np.mean(group_losses)),
                        "lr": optimizer.param_groups[0]["lr"],
                        "logit_scale": float(logit_scale().detach()),
                    }
                )
                group_losses = []
                timing.done += 1
                bar.update(1)
                bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
                if step % config.checkpoint_every == 0 and micro + 1 < len(batches):
                    checkpoint(epoch, micro + 1)
                if hook:
                    hook("train", step)
            if monitor:
                gallery = embed_gallery(model, encoder, dataset, device) if config.train_image_tower else batcher.corpus
                recall = recall_at_1(model, encoder, monitor, dataset, gallery)
                history[-1]["val_recall_at_1"] = recall
                if recall > best["recall_at_1"]:
                    best = {"recall_at_1": recall, "epoch": epoch, "bad_epochs": 0}
                    save_file(_trainable_state(params), str(run_dir / "best.safetensors"))
                else:
                    best["bad_epochs"] += 1
                if best["bad_epochs"] >= config.early_stopping_patience:
                    stopped_early = best["stopped"] = True
            checkpoint(epoch + 1, 0)
            if hook:
                hook("train-epoch", epoch + 1)
            if stopped_early:
                break
    bar.close()

    final = _trainable_state(params)
    if monitor and (run_dir / "best.safetensors").is_file():
        from safetensors.torch import load_file

        final = load_file(str(run_dir / "best.safetensors"))
    save_file({k: v.contiguous() for k, v in final.items()}, str(run_dir / "final.safetensors"))
    losses = [h["loss"] for h in history]
    summary = {
        "steps": step,
        "epochs_run": (history[-1]["epoch"] + 1) if history else 0,
        "stopped_early": stopped_early,
        "best_epoch": best["epoch"],
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "precision": precision,
        "device": device,
        "warmup_steps": warmup,
        "train_prompts": len(prompts),
        "logit_scale": history[-1]["logit_scale"] if history else None,
    }
    write_json(run_dir / "done.json", {"history": history, "summary": summary, "base_image_fingerprint": base_fp})
    state_path.unlink(missing_ok=True)  # the optimizer state is large; the run is final
    timing.extra = {"prompts": seen, "prompts_per_second": round(seen / timing.seconds, 2) if seen else None}
    return TrainedRun(arm, run_dir, key, towers, base_fp, history, summary), timing
