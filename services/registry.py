"""Model registry: model key -> family, weights, adapter, encoder and defaults.

Read from the packaged ``models.toml`` plus an optional user file (``REALRAG_MODELS_FILE``) whose
entries add to or replace the packaged ones. Torch-free, on the floor: the gateway validates requests
with it; the worker maps a family to its module (``generator_service.families.family_module``).
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.settings import Settings, get_settings

PACKAGED_MODELS = Path(__file__).with_name("models.toml")

Family = Literal["sd", "sdxl", "sd3", "flux", "omnigen", "world"]


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str
    family: Family
    description: str = ""
    # HF id or local directory of the base pipeline; "tiny" builds random tiny components offline.
    source: str
    revision: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    adapter: str | None = Field(None, description="IP-Adapter repo/path (or 'random' for tiny twins)")
    adapter_subfolder: str | None = None
    adapter_weight_name: str | None = None
    adapter_variant: Literal["base", "plus"] = "base"
    image_encoder: str | None = None
    image_encoder_subfolder: str | None = None
    max_references: int = Field(1, ge=0)
    default_steps: int = 30
    default_guidance: float = 7.0
    default_ip_scale: float = 0.6
    default_width: int = 512
    default_height: int = 512
    size_multiple: int = 8
    # Retriever checkpoints trained for this generator, by kind ("reflective", "standard"); the
    # zero-shot base encoder needs no entry. Requests pick a kind; default: reflective if present.
    retrievers: dict[str, str] = Field(default_factory=dict)
    offload: Literal["none", "model", "sequential"] = "none"
    options: dict[str, Any] = Field(default_factory=dict)

    @property
    def default_retriever(self) -> str:
        return "reflective" if "reflective" in self.retrievers else "zero-shot"


def _read(path: Path) -> dict[str, ModelSpec]:
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    return {key: ModelSpec(key=key, **body) for key, body in raw.get("models", {}).items()}


@lru_cache(maxsize=8)
def _load(user_file: str | None) -> dict[str, ModelSpec]:
    models = _read(PACKAGED_MODELS)
    if user_file:
        models.update(_read(Path(user_file)))
    return models


def load_registry(settings: Settings | None = None) -> dict[str, ModelSpec]:
    settings = settings or get_settings()
    return _load(str(settings.models_file) if settings.models_file else None)


def get_spec(key: str, settings: Settings | None = None) -> ModelSpec:
    models = load_registry(settings)
    if key not in models:
        raise KeyError(key)
    return models[key]
