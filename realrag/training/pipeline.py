"""`realrag train-retriever` as a library: data → sample → mine → train → evaluate → export.

    from realrag.training import TrainConfig, run
    export_dir = run(TrainConfig(data="data/cars", generator="tiny-sd", work_dir="runs/cars"))

Every stage caches its output under ``config.work_dir`` keyed by what it depends on, so a rerun
skips finished work and an interrupted stage resumes where it stopped. Two configs that differ only
in ``negatives`` share the samples and mined negatives; the in-batch baseline is shared by every
generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from services.files import atomic_write_text

from .cache import ProgressHook, StageTiming, write_json
from .config import TrainConfig
from .data import Dataset, load_dataset
from .evaluate import render_markdown, run_evaluate
from .export import KIND_OF_ARM, run_export
from .mine import Mined, build_encoder, embed_corpus, encoder_key, run_mine
from .sample import Samples, run_sample
from .train import TrainedRun, run_train

log = logging.getLogger("realrag.train")

Stage = Literal["data", "sample", "mine", "train", "evaluate", "export"]
STAGES: tuple[Stage, ...] = ("data", "sample", "mine", "train", "evaluate", "export")


@dataclass
class PipelineResult:
    config: TrainConfig
    dataset: Dataset
    samples: Samples | None = None
    mined: Mined | None = None
    corpus_vectors: np.ndarray | None = None
    runs: dict[str, TrainedRun] = field(default_factory=dict)
    report: dict[str, Any] | None = None
    export_dir: Path | None = None
    weights: Path | None = None
    timings: list[StageTiming] = field(default_factory=list)


def default_output(config: TrainConfig) -> Path:
    return Path(config.work_dir) / "export" / f"{config.generator}-{KIND_OF_ARM[config.negatives]}"


def _note(timing: StageTiming) -> StageTiming:
    rate = f", {timing.per_second:.2f} {timing.unit}/s" if timing.per_second else ""
    log.info("%s: %d %s done, %d cached, %.2fs%s", timing.stage, timing.done, timing.unit, timing.cached, timing.seconds, rate)
    return timing


def run_pipeline(
    config: TrainConfig, until: Stage = "export", hook: ProgressHook | None = None, generator=None
) -> PipelineResult:
    """Run the stages up to and including `until`. `generator` overrides loading the model key
    (the eval harness may pass an already loaded one)."""
    if until not in STAGES:
        raise ValueError(f"unknown stage {until!r}; one of {STAGES}")
    stop = STAGES.index(until)
    config = config.resolved()
    from services.registry import get_spec

    try:
        get_spec(config.generator)  # fail before any work on a typo
    except KeyError:
        raise ValueError(f"unknown generator model key {config.generator!r} (see services/models.toml)") from None
    work = Path(config.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    timing = StageTiming("data", "images")
    with timing:
        dataset = load_dataset(config)
        write_json(work / "data" / f"{dataset.data_hash}.json", dataset.to_json())
        timing.done = len(dataset.corpus)
    result = PipelineResult(config, dataset, timings=[_note(timing)])
    log.info("data: %s", dataset.summary())
    if stop < 1:
        return result

    result.samples, timing = run_sample(config, dataset, generator=generator, hook=hook)
    result.timings.append(_note(timing))
    if stop < 2:
        return result

    encoder = build_encoder(config)
    result.corpus_vectors, timing = embed_corpus(config, dataset, encoder, hook=hook)
    result.timings.append(_note(timing))
    result.mined, timing = run_mine(config, dataset, result.samples, encoder, result.corpus_vectors, hook=hook)
    result.timings.append(_note(timing))
    if stop < 3:
        return result

    arms = [config.negatives]
    if config.negatives == "reflective" and config.compare_standard:
        arms.append("inbatch")
    image_key = encoder_key(encoder)
    for arm in arms:
        result.runs[arm], timing = run_train(
            config, dataset, result.mined, result.corpus_vectors, arm, image_key, hook=hook
        )
        result.timings.append(_note(timing))
    if stop < 4:
        return result

    arms_metrics, timing = run_evaluate(config, dataset, result.mined, result.corpus_vectors, result.runs)
    result.timings.append(_note(timing))
    result.report = {
        "generator": config.generator,
        "exported_arm": KIND_OF_ARM[config.negatives],
        "base_encoder": {"model": config.encoder_model, "pretrained": config.encoder_pretrained, "id": encoder.id},
        "data": dataset.summary(),
        "mining": result.mined.stats,
        "arms": arms_metrics,
        "training": {KIND_OF_ARM[arm]: run.summary for arm, run in result.runs.items()},
        "config": config.hyperparameters(),
        "throughput": [t.as_dict() for t in result.timings],
    }
    if stop < 5:
        return result

    result.export_dir = Path(config.output or default_output(config))
    result.weights, timing = run_export(config, dataset, result.runs[config.negatives], result.report, result.export_dir)
    result.timings.append(_note(timing))
    result.report["throughput"] = [t.as_dict() for t in result.timings]
    write_json(result.export_dir / "report.json", result.report)
    atomic_write_text(result.export_dir / "report.md", render_markdown(result.report))
    log.info("exported %s (report: %s)", result.weights, result.export_dir / "report.md")
    return result


def run(config: TrainConfig, hook: ProgressHook | None = None) -> Path:
    """Train, evaluate and export; return the export directory (retriever.safetensors + card + report)."""
    result = run_pipeline(config, hook=hook)
    assert result.export_dir is not None
    return result.export_dir
