"""Model registry: model key -> family, weights, adapter, encoder and defaults.

Read from the packaged ``models.toml`` plus an optional user file (``REALRAG_MODELS_FILE``) whose
entries add to or replace the packaged ones. Torch-free, on the floor: the gateway validates requests
with it; the worker maps a family to its module (``generator_service.families.family_module``).
"""

from __future__ import annotations

import json
import time
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import redis
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


# --- Served models: what this deployment serves, and which workers have them loaded ---------------

SERVE_ALL = "*"


def served_model_keys(settings: Settings | None = None) -> list[str]:
    """The model keys this deployment serves (``REALRAG_SERVED_MODELS``), default model first.

    Empty: the default model only. ``["*"]``: every registry model (development). Raises ValueError
    for a key the registry does not know or a default model that is not served, so a misconfigured
    process fails at start-up instead of on a request."""
    settings = settings or get_settings()
    models = load_registry(settings)
    wanted = list(settings.served_models) or [settings.default_model]
    if SERVE_ALL in wanted:
        if wanted != [SERVE_ALL]:
            raise ValueError(f"served_models: {SERVE_ALL!r} stands alone, got {wanted}")
        wanted = list(models)
    unknown = [key for key in wanted if key not in models]
    if unknown:
        raise ValueError(f"served_models names unknown model(s) {unknown}; the registry has {sorted(models)}")
    if settings.default_model not in wanted:
        raise ValueError(f"default_model {settings.default_model!r} is not in served_models {wanted}")
    rest = [key for key in dict.fromkeys(wanted) if key != settings.default_model]
    return [settings.default_model, *rest]


LOADED_PREFIX = "realrag:worker-model:"


def loaded_key(queue: str, model: str, worker: str) -> str:
    """Per queue: deployments sharing one Redis under different queues do not see each other's workers."""
    return f"{LOADED_PREFIX}{queue}:{model}:{worker}"


def record_loaded(client: redis.Redis, queue: str, worker: str, models: dict[str, str], ttl_s: float) -> None:
    """A worker consuming ``queue`` says it holds these models (key -> device) for the next ``ttl_s``
    seconds; its publishing loop repeats this, so a dead worker's entries expire on their own."""
    pipe = client.pipeline(transaction=False)
    for model, device in models.items():
        pipe.set(loaded_key(queue, model, worker), json.dumps({"device": device, "ts": time.time()}), px=int(ttl_s * 1000))
    pipe.execute()


def loaded_workers(client: redis.Redis, queue: str, model: str) -> dict[str, str]:
    """Worker -> device of the live workers on ``queue`` that hold ``model`` loaded."""
    prefix = loaded_key(queue, model, "")
    keys = [key.decode() if isinstance(key, bytes) else key for key in client.scan_iter(match=f"{prefix}*", count=500)]
    found: dict[str, str] = {}
    for key, raw in zip(keys, client.mget(keys) if keys else [], strict=True):
        if raw is not None:
            found[key[len(prefix):]] = json.loads(raw).get("device", "")
    return found
