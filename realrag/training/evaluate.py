"""Stage 4, evaluate: zero-shot vs standard vs reflective retrievers on held-out prompts.

For every prompt the gallery is the whole corpus (all objects). Metrics per split:

* ``recall@k``: the top k images contain one of the prompt's object (object-level recall);
* ``margin``: mean over prompts of  mean_p q·p − mean_r q·r, p the prompt's positive images and r its
  reflective negatives (mined from the target generator's renders of that prompt);
* ``reflective_above_positive``: share of prompts whose best reflective negative outscores every
  positive (the retriever would hand the generator what it already draws);
* ``top1_is_reflective``: share of prompts whose top-1 image is one of their reflective negatives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .cache import StageTiming
from .config import TrainConfig
from .data import Dataset, Prompt
from .mine import Mined, build_encoder, embed_files
from .train import TrainedRun

ARMS = {"zero-shot": None, "standard": "inbatch", "reflective": "reflective"}
SPLITS = ("held_out", "val", "train")


def split_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    prompts: list[Prompt],
    dataset: Dataset,
    mined: Mined,
    top_k: list[int],
    block: int = 256,
) -> dict[str, Any]:
    objects = dataset.object_ids
    ks = sorted(set(top_k))
    depth = min(max(ks), len(gallery))
    hits: dict[int, list[bool]] = {k: [] for k in ks}
    margins, above, top1_reflective = [], [], []
    for start in range(0, len(prompts), block):  # bounded memory: block x gallery scores at a time
        scores = queries[start : start + block] @ gallery.T
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable"), 1)
        for row, p in enumerate(prompts[start : start + block]):
            for k in ks:
                hits[k].append(bool((objects[top[row, :k]] == p.object_id).any()))
            negatives = [dataset.position(n) for n in mined.image_ids(p.id)]
            if not negatives:
                continue
            positives = [dataset.position(x) for x in p.positives]
            margins.append(float(scores[row, positives].mean() - scores[row, negatives].mean()))
            above.append(bool(scores[row, negatives].max() > scores[row, positives].max()))
            top1_reflective.append(int(top[row, 0]) in negatives)
    result: dict[str, Any] = {"prompts": len(prompts)}
    for k in ks:
        result[f"recall@{k}"] = round(float(np.mean(hits[k])), 4) if hits[k] else None
    result["margin"] = round(float(np.mean(margins)), 5) if margins else None
    result["reflective_above_positive"] = round(float(np.mean(above)), 4) if above else None
    result["top1_is_reflective"] = round(float(np.mean(top1_reflective)), 4) if top1_reflective else None
    return result


def arm_encoder(config: TrainConfig, run: TrainedRun | None):
    encoder = build_encoder(config)
    if run is not None:
        run.load_into(encoder.model)
    encoder.model.eval()
    return encoder


def evaluate_arm(
    config: TrainConfig,
    dataset: Dataset,
    mined: Mined,
    corpus_vectors: np.ndarray,
    run: TrainedRun | None,
) -> dict[str, Any]:
    encoder = arm_encoder(config, run)
    gallery = corpus_vectors
    if run is not None and "image" in run.towers:
        cache = Path(config.work_dir) / "embeddings" / f"run-{run.fingerprint}" / f"corpus-{dataset.data_hash}"
        gallery = embed_files(encoder, [i.path for i in dataset.corpus], cache, f"embed corpus ({run.arm})")
    metrics = {}
    for split in SPLITS:
        prompts = dataset.split(split)
        if not prompts:
            continue
        queries = encoder.encode_text([p.text for p in prompts])
        metrics[split] = split_metrics(queries, gallery, prompts, dataset, mined, config.eval_top_k)
    return metrics


def run_evaluate(
    config: TrainConfig,
    dataset: Dataset,
    mined: Mined,
    corpus_vectors: np.ndarray,
    runs: dict[str, TrainedRun],
) -> tuple[dict[str, Any], StageTiming]:
    """Metrics of every available arm: zero-shot always, standard / reflective when trained."""
    timing = StageTiming("evaluate", "prompts")
    arms: dict[str, Any] = {}
    with timing:
        for name, negatives in ARMS.items():
            if negatives is not None and negatives not in runs:
                continue
            arms[name] = evaluate_arm(config, dataset, mined, corpus_vectors, runs.get(negatives))
            timing.done += sum(len(dataset.split(s)) for s in SPLITS)
    return arms, timing


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Reflective retriever report: generator `{report['generator']}`",
        "",
        f"Base encoder `{report['base_encoder']['id']}`; exported arm **{report['exported_arm']}**; "
        f"data hash `{report['data']['data_hash']}` ({report['data']['images']} images, "
        f"{report['data']['objects']} objects).",
        "",
    ]
    top_k = sorted(set(report["config"]["eval_top_k"]))
    columns = [f"recall@{k}" for k in top_k] + ["margin", "reflective_above_positive", "top1_is_reflective"]
    for split in SPLITS:
        rows = [(name, metrics[split]) for name, metrics in report["arms"].items() if split in metrics]
        if not rows:
            continue
        lines += [
            f"## {split.replace('_', '-')} prompts ({rows[0][1]['prompts']})",
            "",
            "| retriever | " + " | ".join(columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        lines += [f"| {name} | " + " | ".join(_fmt(m.get(c)) for c in columns) + " |" for name, m in rows]
        lines.append("")
    lines += ["## Training", "", "| arm | steps | first loss | last loss | logit scale | precision |", "|---|---:|---:|---:|---:|---|"]
    for arm, summary in report["training"].items():
        lines.append(
            f"| {arm} | {summary['steps']} | {_fmt(summary['first_loss'])} | {_fmt(summary['last_loss'])} | "
            f"{_fmt(summary['logit_scale'])} | {summary['precision']} |"
        )
    lines += ["", "## Mining", ""]
    lines += [f"- {k}: {_fmt(v)}" for k, v in report["mining"].items()]
    lines += [
        "", "## Stage throughput (this run; setup = model loading, excluded from the rate)", "",
        "| stage | done | cached | seconds | setup s | per second |", "|---|---:|---:|---:|---:|---:|",
    ]
    for t in report["throughput"]:
        rate = f"{t['per_second']:.2f} {t['unit']}/s" if t.get("per_second") else "–"
        lines.append(
            f"| {t['stage']} | {t['done']} {t['unit']} | {t['cached']} | {t['seconds']:.2f} | "
            f"{t.get('setup_seconds', 0):.2f} | {rate} |"
        )
    return "\n".join(lines) + "\n"
