"""Generation jobs: answer replays, validate against limits, retrieve references, record the job, enqueue.

Order matters for "loses nothing": the references are retrieved before anything is stored, so a job
never exists without the references it asked for, and a retriever that is down leaves nothing behind
(503). The record is then created already queued, references included, in one atomic step that also
checks the queue depth and the tenant's limits; if the broker then refuses the message, the record is
removed again and the client gets a 503.

The request path is asynchronous (redis.asyncio, httpx.AsyncClient); only Celery's `send_task` is
synchronous, so it runs on a thread of its own, and the tasks that wait while one batch is sent go
together in the next, in one Redis pipeline (kombu's `Producer.batch`). Cancelling, rare and racing
the worker, stays on the synchronous `JobStore` (optimistic WATCH/MULTI).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass

import redis
from celery import Celery

from services.batching import MicroBatcher
from services.errors import ApiError
from services.jobs import AsyncJobStore, Created, JobStore
from services.queue import GENERATE_TASK, enqueue_webhook
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
from services.tenants import Tenant
from services.webhooks import WebhookRejected, check_target

from .rate_limits import TenantRateLimits, too_many
from .retriever_client import AsyncRetrieverClient, RetrieverClient

# \A...\Z: a full match whether used with .match or .fullmatch (`$` also matches before a final "\n")
JOB_ID = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")
IN_FLIGHT_RETRY_S = 10  # a guess: when one of the tenant's jobs may have finished
QUEUE_FULL_RETRY_S = 10
SEND_BATCH_MAX = 64  # tasks per broker pipeline; more simply wait for the next one


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
    metadata_bytes = len(json.dumps(body.metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if metadata_bytes > settings.max_metadata_bytes:
        raise ApiError(
            422,
            "metadata_too_large",
            f"metadata is {metadata_bytes} bytes as compact JSON; at most {settings.max_metadata_bytes}",
            limit_bytes=settings.max_metadata_bytes,
        )
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
        # the request path's own async clients (made here: the event loop that runs them makes them)
        self.store = AsyncJobStore.from_url(settings.redis_url, settings.job_ttl_s, socket_connect_timeout=2, socket_timeout=5)
        self.references = AsyncRetrieverClient.from_settings(settings)
        self.rate_limits = TenantRateLimits(settings, self.store.redis)
        # Celery's send_task blocks (kombu, redis-py): it runs off the event loop, on one thread of its
        # own, a batch of tasks per broker round trip (one blocked sender per task cost more in GIL
        # hand-offs than the sends themselves)
        self._sender: MicroBatcher[GenerateTask, None] = MicroBatcher(self._send_all, SEND_BATCH_MAX, "celery-send")

    async def aclose(self) -> None:
        self._sender.close()
        await self.references.aclose()
        await self.store.aclose()

    async def find(self, tenant: Tenant, job_id: str) -> Job:
        """The tenant's job `job_id`; 404 for an unknown id and for any other tenant's job alike."""
        return _found(await self.store.find(tenant.name, job_id), job_id)

    async def submit(
        self, body: GenerationRequest, tenant: Tenant, job_id: str | None = None, idempotency_key: str | None = None
    ) -> tuple[Job, bool]:
        """Create and enqueue a job of `tenant`; returns (job, created). Replays return the existing job.

        A replay (same Idempotency-Key or same id, same body, same tenant) is answered first, before
        the rate limit, the other limits and the queue-depth check, so a retry of an accepted request
        gets its job, never a 429. Ids and keys are the tenant's own: another tenant's are unknown here."""
        digest = request_hash(body)
        replayed = await self._existing(tenant, job_id, idempotency_key)
        if replayed is not None:
            return self._replay(replayed, digest), False
        await self.rate_limits.hit(tenant)
        resolved = resolve(body, self.settings)
        references, info, retrieval_ms = await self._references(body, resolved, tenant)
        job = Job(
            id=job_id or str(uuid.uuid4()),
            internal_id=uuid.uuid4().hex,
            tenant=tenant.name,
            status=JobStatus.queued,
            model=resolved.spec.key,
            prompt=body.prompt,
            request=body,
            request_hash=digest,
            seeds=resolved.seeds,
            references=references,
            retriever=info,
            timings=Timings(retrieval_ms=retrieval_ms),
        )
        created = await self.store.create(
            job,
            idempotency_key,
            max_in_flight=tenant.max_jobs_in_flight if self.settings.auth_enabled else 0,
            max_idempotency_keys=self.settings.max_idempotency_keys_per_tenant,
            queue=self.settings.queue_name,
            max_queue_depth=self.settings.max_queue_depth,
        )
        if created.outcome == "exists":
            return self._replay((created.internal_id, await self.store.get(created.internal_id)), digest), False
        self._refused(created, tenant)
        task = GenerateTask(
            job_id=job.internal_id,
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
        try:
            # shielded: a client that hangs up must not leave its stored job unsent
            await asyncio.shield(self._sender.submit(task))
        except Exception as exc:
            await self.store.delete(job, idempotency_key)
            if isinstance(exc, (redis.RedisError, OSError)) or type(exc).__module__.startswith("kombu"):
                raise ApiError(503, "broker_unavailable", "the job queue (Redis) is unreachable") from exc
            raise
        return job, True

    def _send_all(self, tasks: list[GenerateTask]) -> list[None]:
        """One pipeline for the batch; if the broker fails, every job of the batch is answered 503."""
        with self.celery.producer_or_acquire() as producer, producer.batch():
            for task in tasks:
                # argsrepr: Celery would otherwise saferepr() the whole task for its logs on every submission
                self.celery.send_task(
                    GENERATE_TASK,
                    args=[task.model_dump(mode="json")],
                    task_id=task.job_id,
                    queue=self.settings.queue_name,
                    producer=producer,
                    argsrepr=f"[{task.model} job {task.job_id}]",
                    kwargsrepr="{}",
                )
        return [None] * len(tasks)

    def _refused(self, created: Created, tenant: Tenant) -> None:
        """The 429 for a create that a limit refused (nothing was stored)."""
        if created.outcome == "queue_full":
            raise too_many("queue_full", f"{created.queue_depth} jobs are waiting; try again later", QUEUE_FULL_RETRY_S)
        if created.outcome == "too_many_jobs":
            raise too_many(
                "too_many_jobs_in_flight",
                f"{tenant.max_jobs_in_flight} jobs are already queued or running for this API key; retry when one finishes",
                IN_FLIGHT_RETRY_S,
                limit=tenant.max_jobs_in_flight,
            )
        if created.outcome == "too_many_keys":
            raise too_many(
                "too_many_idempotency_keys",
                f"this API key holds {self.settings.max_idempotency_keys_per_tenant} idempotency keys; they expire "
                f"{self.settings.job_ttl_s} s after use",
                created.retry_after_s,
                limit=self.settings.max_idempotency_keys_per_tenant,
            )

    async def _existing(self, tenant: Tenant, job_id: str | None, idempotency_key: str | None) -> tuple[str, Job | None] | None:
        """(internal id, record) of the tenant's job this request would replay, if it was accepted before."""
        if idempotency_key:
            return await self.store.find_by_idempotency_key(tenant.name, idempotency_key)
        if job_id:
            job = await self.store.find(tenant.name, job_id)
            return (job.internal_id, job) if job is not None else None
        return None

    def _replay(self, existing: tuple[str, Job | None], digest: str) -> Job:
        job = existing[1]
        if job is None:
            raise ApiError(409, "job_conflict", "the job of this id or idempotency key is being created or removed; retry shortly")
        if job.request_hash != digest:
            raise ApiError(409, "idempotency_conflict", "this id or idempotency key was used with a different request")
        return job

    async def _references(
        self, body: GenerationRequest, resolved: Resolved, tenant: Tenant
    ) -> tuple[list[Reference], RetrieverInfo | None, float | None]:
        """The references, from the corpus `tenant` sees: the shared one and its own private images."""
        started = time.perf_counter()
        if body.reference_ids is not None:
            references = []
            for image_id in body.reference_ids:
                image = await self.references.get_image(image_id, tenant=tenant.name)
                if image is None:
                    raise ApiError(422, "unknown_reference", f"no corpus image {image_id}")
                references.append(
                    Reference(id=image.id, caption=image.caption, object_id=image.object_id, label=image.label, image_uri=image.image_uri)
                )
            return references, RetrieverInfo(kind="explicit"), (time.perf_counter() - started) * 1000
        if resolved.top_k == 0:
            return [], None, None
        result = await self.references.search(
            SearchRequest(
                query=body.retrieval.query or body.prompt,
                top_k=resolved.top_k,
                filter=body.retrieval.filter,
                retriever=body.retrieval.retriever,
                model=resolved.spec.key,
            ),
            tenant=tenant.name,
        )
        references = [
            Reference(id=h.id, score=h.score, caption=h.caption, object_id=h.object_id, label=h.label, image_uri=h.image_uri)
            for h in result.hits
        ]
        return references, result.retriever, (time.perf_counter() - started) * 1000

    def cancel(self, tenant: Tenant, job_id: str) -> Job:
        """Synchronous (JobStore): the route runs it in a worker thread."""
        job = _found(self.jobs.find(tenant.name, job_id), job_id)
        if job.status.terminal:
            return job
        internal_id = job.internal_id
        self.jobs.request_cancel(internal_id)
        if job.status in (JobStatus.queued, JobStatus.retrieving):
            job = self.jobs.transition(internal_id, JobStatus.canceled, cancel_requested=True)
            enqueue_webhook(job, self.settings, self.celery)  # the worker will skip this job, so it cannot notify
            return job
        return self.jobs.update(internal_id, lambda j: None if j.status.terminal else j.model_copy(update={"cancel_requested": True}))


def _found(job: Job | None, job_id: str) -> Job:
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return job
