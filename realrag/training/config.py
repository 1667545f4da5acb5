"""TrainConfig: every choice of the reflective-retriever recipe, logged with each trained checkpoint.

Defaults follow docs/reference method.md §9 (text tower only, frozen mining encoder, mined once
offline, one sample per prompt, skip same-object neighbours, learnable temperature from the
checkpoint's logit scale, text→image loss only, AdamW with warm-up).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Negatives = Literal["reflective", "inbatch"]


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # --- data ---------------------------------------------------------------------------------
    data: Path = Field(description="folder tree (one sub-folder per object) or a .jsonl/.csv manifest")
    data_root: Path | None = Field(
        None, description="base for relative image paths in a manifest; default: the manifest's folder"
    )
    prompt_source: Literal["templates", "captions"] = "templates"
    templates: list[str] = Field(default_factory=lambda: ["a photo of a {label}"])
    held_out_fraction: float = Field(0.2, ge=0.0, lt=1.0, description="objects held out for evaluation")
    held_out_objects: list[str] | None = Field(None, description="explicit held-out object ids")
    val_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="training objects kept aside to monitor early stopping"
    )

    # --- generator (frozen) and sampling ----------------------------------------------------------
    generator: str = Field(description="model key of the target generator (generator_service registry)")
    generator_device: str = "auto"
    samples_per_prompt: int = Field(1, ge=1)
    sample_steps: int | None = Field(None, ge=1, description="default: the model's default_steps")
    sample_guidance: float | None = None
    sample_width: int | None = None
    sample_height: int | None = None

    # --- base encoder and mining ------------------------------------------------------------------
    encoder_model: str | None = Field(None, description="open_clip name or config JSON; default: settings")
    encoder_pretrained: str | None = Field(None, description="open_clip tag or file; default: settings")
    encoder_batch_size: int = Field(64, ge=1)
    negatives: Negatives = "reflective"
    negatives_per_sample: int = Field(1, ge=1)

    # --- training -----------------------------------------------------------------------------
    train_image_tower: bool = False
    temperature: float | None = Field(
        None, gt=0, description="fixed τ; default: learnable, initialised from the logit scale"
    )
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    grad_accum_steps: int = Field(1, ge=1)
    lr: float = Field(1e-5, gt=0)
    temperature_lr: float | None = Field(None, gt=0, description="default: lr")
    weight_decay: float = Field(0.1, ge=0)
    warmup_steps: int | None = Field(None, ge=0, description="default: 10% of the optimizer steps")
    schedule: Literal["cosine", "constant"] = "cosine"
    max_grad_norm: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    mask_same_object: bool = Field(
        True, description="drop in-batch negatives of the query's own object (false negatives)"
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="epochs without a better monitor recall@1 before stopping"
    )
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between resumable checkpoints")
    device: str = "auto"
    seed: int = 0

    # --- pipeline -----------------------------------------------------------------------------
    work_dir: Path = Path(".realrag/train")
    output: Path | None = Field(None, description="export directory; default: WORK/export/GEN-NEGATIVES")
    compare_standard: bool = Field(
        True, description="with reflective negatives, also train the in-batch baseline for the report"
    )
    eval_top_k: list[int] = Field(default_factory=lambda: [1, 5])

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.prompt_source == "templates":
            if not self.templates:
                raise ValueError("prompt_source 'templates' needs at least one template")
            for template in self.templates:
                if "{label}" not in template and "{object_id}" not in template:
                    raise ValueError(f"template {template!r} names neither {{label}} nor {{object_id}}")
        if self.early_stopping_patience is not None and self.val_fraction == 0:
            raise ValueError(
                "early_stopping_patience monitors recall@1 on validation objects: set val_fraction > 0"
            )
        if any(k < 1 for k in self.eval_top_k):
            raise ValueError("eval_top_k values must be >= 1")
        return self

    def resolved(self) -> TrainConfig:
        """Fill the encoder from the one Settings object, so the retriever matches the service's."""
        if self.encoder_model is not None:
            return self
        from services.settings import get_settings

        settings = get_settings()
        update: dict[str, Any] = {"encoder_model": settings.encoder_model}
        if "encoder_pretrained" not in self.model_fields_set:
            update["encoder_pretrained"] = settings.encoder_pretrained
        return self.model_copy(update=update)

    def hyperparameters(self) -> dict[str, Any]:
        return json.loads(self.model_dump_json())


def fingerprint(*parts: Any) -> str:
    """Short stable hash of JSON-able parts: names cache directories by what they depend on."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
