"""Generation jobs: validate against limits, retrieve references, record the job, enqueue.

Order matters for "loses nothing": the job record exists before anything can fail, and if the
retriever or the broker refuses, the record is removed again and the client gets a 503.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass

import redis
from celery import Celery

from services.errors import ApiError
from services.jobs import JobStore
from services.queue import GENERATE_TASK
from services.registry import ModelSpec, load_registry, served_model_keys
from services.schemas import (
    GenerateTask,
    GenerationRequest,
    Job,
    JobStatus,
    Reference,
    RetrieverInfo,
    SearchRequest,
    Timings,
)
from services.settings import Settings
from services.webhooks import WebhookRejected, check_target, notify_job

from .retriever_client import RetrieverClient

# \A...\Z: a full match whether used with .match or .fullmatch (`$` also matches before a final "\n")
JOB_ID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")


@dataclass
class Resolved:
    spec: ModelSpec
    width: int
    height: int
    steps: int
    guidance: float
    ip_scale: float
    top_k: int
    seeds: list[int]


def request_hash(body: GenerationRequest) -> str:
    return hashlib.sha256(body.model_dump_json(exclude_none=True).encode()).hexdigest()


def _size(body: GenerationRequest, spec: ModelSpec) -> tuple[int, int]:
    if body.size:
        match = re.fullmatch(r"(\d{1,5})x(\d{1,5})", body.size)
        if not match:
            raise ApiError(422, "invalid_size", "size must look like '512x512'")
        return int(match.group(1)), int(match.group(2))
    return body.width or spec.default_width, body.height or spec.default_height


def resolve(body: GenerationRequest, settings: Settings) -> Resolved:
    """Check every limit; each violation is a 4xx naming the field, nothing is clamped silently."""
    prompt = body.prompt.strip()
    if not prompt:
        raise ApiError(422, "empty_prompt", "prompt must not be empty")
    if len(body.prompt) > settings.max_prompt_chars:
        raise ApiError(422, "prompt_too_long", f"prompt is longer than {settings.max_prompt_chars} characters")
    if body.negative_prompt and len(body.negative_prompt) > settings.max_prompt_chars:
        raise ApiError(422, "prompt_too_long", f"negative_prompt is longer than {settings.max_prompt_chars} characters")
    models = load_registry(settings)
    key = body.model or settings.default_model
    if key not in models:
        raise ApiError(422, "unknown_model", f"unknown model {key!r}", available=served_model_keys(settings))
    served = served_model_keys(settings)
    if key not in served:
        raise ApiError(422, "model_not_served", f"model {key!r} is not served here; served: {', '.join(served)}", served=served)
    spec = models[key]
    if not 1 <= body.n <= settings.max_n:
        raise ApiError(422, "n_out_of_range", f"n must be between 1 and {settings.max_n}")
    width, height = _size(body, spec)
    for name, value in (("width", width), ("height", height)):
        if not settings.min_size <= value <= settings.max_size:
            raise ApiError(422, "invalid_size", f"{name} must be between {settings.min_size} and {settings.max_size}")
        if value % spec.size_multiple:
            raise ApiError(422, "invalid_size", f"{name} must be a multiple of {spec.size_multiple} for {key}")
    steps = body.steps if body.steps is not None else spec.default_steps
    if not 1 <= steps <= settings.max_steps:
        raise ApiError(422, "steps_out_of_range", f"steps must be between 1 and {settings.max_steps}")
    guidance = body.guidance if body.guidance is not None else spec.default_guidance
    if not 0 <= guidance <= settings.max_guidance:
        raise ApiError(422, "guidance_out_of_range", f"guidance must be between 0 and {settings.max_guidance}")
    if body.reference_ids is not None:
        top_k = len(body.reference_ids)
    elif body.retrieval.enabled:
        top_k = settings.default_top_k if body.retrieval.top_k is None else body.retrieval.top_k
    else:
        top_k = 0
    if top_k > settings.max_top_k:
        raise ApiError(422, "too_many_references", f"at most {settings.max_top_k} references per request")
    if top_k > spec.max_references:
        raise ApiError(
            422,
            "too_many_references",
            f"model {key!r} ({spec.family}) accepts at most {spec.max_references} reference image(s)",
        )
    kind = body.retrieval.retriever
    if kind not in (None, "zero-shot") and kind not in spec.retrievers:
        raise ApiError(422, "unknown_retriever", f"model {key!r} has no {kind!r} retriever configured")
    if body.webhook_url:
        try:
            check_target(body.webhook_url, settings.webhook_allow_private)
        except WebhookRejected as exc:
            raise ApiError(422, "invalid_webhook_url", str(exc)) from exc
    if body.seed is not None:
        seeds = [(body.seed + i) % 2**63 for i in range(body.n)]
    else:
        seeds = [secrets.randbelow(2**31) for _ in range(body.n)]
    ip_scale = body.ip_scale if body.ip_scale is not None else spec.default_ip_scale
    return Resolved(spec, width, height, steps, guidance, ip_scale, top_k, seeds)


class GenerationService:
    def __init__(self, settings: Settings, jobs: JobStore, retriever: RetrieverClient, celery: Celery) -> None:
        self.settings = settings
        self.jobs = jobs
        self.retriever = retriever
        self.celery = celery

    def submit(
        self, body: GenerationRequest, job_id: str | None = None, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Create and enqueue a job; returns (job, created). Replays return the existing job.

        A replay (same Idempotency-Key or same id, same body) is answered first, before the limits
        and the queue-depth check, so a retry of an accepted request gets its job, never a 429."""
        digest = request_hash(body)
        replayed = self._existing(job_id, idempotency_key)
        if replayed is not None:
            return self._replay(replayed, digest), False
        resolved = resolve(body, self.settings)
        job_id = job_id or str(uuid.uuid4())
        self._check_queue_depth()
        if idempotency_key:
            bound = self.jobs.claim_idempotency_key(idempotency_key, job_id)
            if bound != job_id:
                return self._replay(bound, digest), False
        job = Job(
            id=job_id,
            status=JobStatus.retrieving,
            model=resolved.spec.key,
            prompt=body.prompt,
            request=body,
            request_hash=digest,
            seeds=resolved.seeds,
        )
        if not self.jobs.create(job):
            return self._replay(job_id, digest), False
        try:
            references, info, retrieval_ms = self._references(body, resolved)
            task = GenerateTask(
                job_id=job_id,
                model=resolved.spec.key,
                prompt=body.prompt,
                negative_prompt=body.negative_prompt,
                reference_uris=[r.image_uri for r in references],
                reference_labels=[r.label for r in references],
                seeds=resolved.seeds,
                steps=resolved.steps,
                guidance=resolved.guidance,
                width=resolved.width,
                height=resolved.height,
                ip_scale=resolved.ip_scale,
            )
            job = self.jobs.transition(
                job_id,
                JobStatus.queued,
                references=references,
                retriever=info,
                timings=Timings(retrieval_ms=retrieval_ms),
            )
            self.celery.send_task(
                GENERATE_TASK, args=[task.model_dump(mode="json")], task_id=job_id, queue=self.settings.queue_name
            )
        except Exception as exc:
            self.jobs.delete(job_id)
            if idempotency_key:
                self.jobs.release_idempotency_key(idempotency_key, job_id)
            if isinstance(exc, (redis.RedisError, OSError)) or type(exc).__module__.startswith("kombu"):
                raise ApiError(503, "broker_unavailable", "the job queue (Redis) is unreachable") from exc
            raise
        return job, True

    def _existing(self, job_id: str | None, idempotency_key: str | None) -> str | None:
        """The id of the job this request would replay, if it was accepted before."""
        if idempotency_key:
            return self.jobs.idempotency_binding(idempotency_key)
        if job_id and self.jobs.redis.exists(self.jobs.job_key(job_id)):
            return job_id
        return None

    def _replay(self, job_id: str, digest: str) -> Job:
        existing = self.jobs.get(job_id)
        if existing is None:
            raise ApiError(409, "job_conflict", f"job {job_id} is being created; retry shortly")
        if existing.request_hash != digest:
            raise ApiError(409, "idempotency_conflict", "this id or idempotency key was used with a different request")
        return existing

    def _check_queue_depth(self) -> None:
        depth = self.jobs.redis.llen(self.settings.queue_name)
        if depth >= self.settings.max_queue_depth:
            error = ApiError(429, "queue_full", f"{depth} jobs are waiting; try again later")
            error.headers["Retry-After"] = "10"
            raise error

    def _references(self, body: GenerationRequest, resolved: Resolved) -> tuple[list[Reference], RetrieverInfo | None, float | None]:
        started = time.perf_counter()
        if body.reference_ids is not None:
            references = []
            for image_id in body.reference_ids:
                image = self.retriever.get_image(image_id)
                if image is None:
                    raise ApiError(422, "unknown_reference", f"no corpus image {image_id}")
                references.append(
                    Reference(id=image.id, caption=image.caption, object_id=image.object_id, label=image.label, image_uri=image.image_uri)
                )
            return references, RetrieverInfo(kind="explicit"), (time.perf_counter() - started) * 1000
        if resolved.top_k == 0:
            return [], None, None
        result = self.retriever.search(
            SearchRequest(
                query=body.retrieval.query or body.prompt,
                top_k=resolved.top_k,
                filter=body.retrieval.filter,
                retriever=body.retrieval.retriever,
                model=resolved.spec.key,
            )
        )
        references = [
            Reference(id=h.id, score=h.score, caption=h.caption, object_id=h.object_id, label=h.label, image_uri=h.image_uri)
            for h in result.hits
        ]
        return references, result.retriever, (time.perf_counter() - started) * 1000

    def cancel(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        if job.status.terminal:
            return job
        self.jobs.request_cancel(job_id)
        if job.status in (JobStatus.queued, JobStatus.retrieving):
            job = self.jobs.transition(job_id, JobStatus.canceled, cancel_requested=True)
            if job.request.webhook_url:  # the worker will skip this job, so it cannot notify
                threading.Thread(target=notify_job, args=(job, self.settings), daemon=True).start()
            return job
        return self.jobs.update(job_id, lambda j: None if j.status.terminal else j.model_copy(update={"cancel_requested": True}))
