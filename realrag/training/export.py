"""Stage 5, export: the trained towers as safetensors plus the JSON card, with the report beside them."""

from __future__ import annotations

import datetime as dt
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from retriever_service.checkpoints import save_retriever
from services.files import atomic_write_text

from .cache import StageTiming, write_json
from .config import TrainConfig
from .data import Dataset
from .evaluate import arm_encoder, render_markdown
from .train import TrainedRun

KIND_OF_ARM = {"reflective": "reflective", "inbatch": "standard"}


def _package_version() -> str | None:
    try:
        return version("realrag")
    except PackageNotFoundError:
        return None


def generator_identity(key: str) -> dict[str, Any]:
    from services.registry import get_spec

    spec = get_spec(key)
    return {"key": key, "family": spec.family, "source": spec.source, "revision": spec.revision}


def build_card(config: TrainConfig, dataset: Dataset, run: TrainedRun, report: dict[str, Any], encoder_id: str) -> dict[str, Any]:
    return {
        "kind": KIND_OF_ARM[run.arm],
        "negatives": run.arm,
        "base_encoder": {"model": config.encoder_model, "pretrained": config.encoder_pretrained, "id": encoder_id},
        "generator": generator_identity(config.generator),
        "data": dataset.summary(),
        "data_hash": dataset.data_hash,
        "hyperparameters": config.hyperparameters(),
        "training": run.summary,
        "run_fingerprint": run.fingerprint,
        "metrics": report["arms"].get(KIND_OF_ARM[run.arm]),
        "comparison": report["arms"],
        "mining": report["mining"],
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "realrag_version": _package_version(),
    }


def run_export(
    config: TrainConfig, dataset: Dataset, run: TrainedRun, report: dict[str, Any], out_dir: Path
) -> tuple[Path, StageTiming]:
    timing = StageTiming("export", "checkpoints")
    with timing:
        encoder = arm_encoder(config, run)
        card = build_card(config, dataset, run, report, encoder.id)
        weights = save_retriever(
            encoder.model,
            out_dir / "retriever.safetensors",
            card,
            towers=run.towers,
            base_image_fingerprint=run.base_image_fingerprint,
        )
        write_json(out_dir / "report.json", report)
        atomic_write_text(out_dir / "report.md", render_markdown(report))
        timing.done = 1
    return weights, timing
