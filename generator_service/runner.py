"""Run one generation job: check the record, load references, generate, store, record.

Plain functions, testable without Celery; the Celery task only calls ``run_job``.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import time

import redis
from PIL import Image

from services.artifacts import ArtifactStore, artifact_store
from services.jobs import JobStore
from services.queue import enqueue_webhook
from services.schemas import GenerateTask, Job, JobError, JobStatus, OutputImage, Progress
from services.settings import Settings

from . import heartbeat
from .families.base import GenerationInputs, JobCanceled
from .loader import get_generator
from .reference_cache import ReferenceEmbeddingCache

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.1  # progress writes per job are throttled; the cancel check runs every step


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _fail(store: JobStore, job_id: str, code: str, message: str) -> Job:
    return store.transition(job_id, JobStatus.failed, error=JobError(code=code, message=message))


def _load_references(store: ArtifactStore, uris: list[str]) -> list[Image.Image]:
    return [Image.open(io.BytesIO(store.get(uri))).convert("RGB") for uri in uris]


def run_job(task: GenerateTask, jobs: JobStore, settings: Settings) -> JobStatus | None:
    """Execute `task` at most once to completion; returns the job's final status (None: gone)."""
    job = jobs.get(task.job_id)
    if job is None:
        log.warning("job %s expired or unknown; dropping the message", task.job_id)
        return None
    if job.status.terminal:  # a redelivered duplicate of a finished job
        return job.status
    deliveries = jobs.count_delivery(task.job_id)
    if deliveries > settings.max_deliveries:
        job = _fail(
            jobs,
            task.job_id,
            "redelivery_cap",
            f"the job was delivered {deliveries} times without finishing (cap {settings.max_deliveries}); "
            "the worker probably crashed on it",
        )
        enqueue_webhook(job, settings)
        return job.status
    if jobs.cancel_requested(task.job_id):
        job = jobs.transition(task.job_id, JobStatus.canceled)
        enqueue_webhook(job, settings)
        return job.status

    started = time.time()
    job = jobs.update(
        task.job_id,
        lambda j: None
        if j.status.terminal
        else j.model_copy(
            update={
                "status": JobStatus.generating,
                "started_at": started,
                "attempts": deliveries,
                "worker": _worker_name(),
                "progress": Progress(step=0, total=task.steps),
                "timings": j.timings.model_copy(update={"queue_ms": (started - task.enqueued_at) * 1000}),
            }
        ),
    )
    if job.status.terminal:
        return job.status
    heartbeat.touch(settings.heartbeat_path)

    try:
        job = _generate(task, jobs, settings, job)
    except (redis.ConnectionError, redis.TimeoutError):
        raise  # Redis is unreachable: the job is not failed, its message goes back (tasks.generate)
    except JobCanceled:
        job = jobs.transition(task.job_id, JobStatus.canceled)
    except ValueError as exc:  # the family refused the inputs (size, reference count, ...)
        job = _fail(jobs, task.job_id, "invalid_request", str(exc))
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            job = _fail(jobs, task.job_id, "timeout", "generation exceeded the time limit")
        else:
            log.exception("job %s failed", task.job_id)
            job = _fail(jobs, task.job_id, "generation_error", f"generation failed ({type(exc).__name__})")
    enqueue_webhook(job, settings)
    return job.status


def _generate(task: GenerateTask, jobs: JobStore, settings: Settings, job: Job) -> Job:
    artifacts = artifact_store(settings)
    generator, load_s = get_generator(task.model, settings)
    heartbeat.touch(settings.heartbeat_path, model_loaded=True)
    references = _load_references(artifacts, task.reference_uris)
    reference_embeds = None
    if references and generator.image_encoder_id:
        # adapter embeddings are cached per (encoder, image): a warm corpus skips the image encoder
        cache = ReferenceEmbeddingCache(settings.artifact_root / "embeds")
        reference_embeds = cache.embeddings_for(generator, references)

    last_write = [0.0]

    def on_step(done: int, total: int) -> None:
        heartbeat.touch(settings.heartbeat_path)
        if jobs.cancel_requested(task.job_id):
            raise JobCanceled(task.job_id)
        now = time.monotonic()
        if now - last_write[0] < PROGRESS_EVERY_S and done < total:
            return
        last_write[0] = now
        jobs.update(
            task.job_id,
            lambda j: None if j.status.terminal else j.model_copy(update={"progress": Progress(step=done, total=total)}),
        )

    gen_started = time.perf_counter()
    images = generator.generate(
        GenerationInputs(
            prompt=task.prompt,
            negative_prompt=task.negative_prompt,
            seeds=task.seeds,
            steps=task.steps,
            guidance=task.guidance,
            width=task.width,
            height=task.height,
            references=references,
            reference_labels=task.reference_labels,
            reference_embeds=reference_embeds,
            ip_scale=task.ip_scale,
            on_step=on_step,
        )
    )
    generation_ms = (time.perf_counter() - gen_started) * 1000
    if jobs.cancel_requested(task.job_id):  # canceled after the last step: store nothing
        raise JobCanceled(task.job_id)

    if len(images) != len(task.seeds):  # a family bug, not a bad request: fail before storing anything
        raise RuntimeError(f"model {task.model!r} returned {len(images)} images for {len(task.seeds)} seeds")

    store_started = time.perf_counter()
    outputs = []
    for index, (seed, image) in enumerate(zip(task.seeds, images, strict=True)):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        uri = artifacts.put(f"outputs/{task.job_id}/{index}.png", buf.getvalue())
        outputs.append(OutputImage(index=index, seed=seed, uri=uri, width=image.width, height=image.height))
    store_ms = (time.perf_counter() - store_started) * 1000

    def finish(j: Job) -> Job | None:
        if j.status.terminal:
            return None
        timings = j.timings.model_copy(
            update={
                "load_ms": load_s * 1000,
                "generation_ms": generation_ms,
                "store_ms": store_ms,
                "total_ms": (time.time() - j.created_at) * 1000,
            }
        )
        return j.model_copy(
            update={
                "status": JobStatus.succeeded,
                "outputs": outputs,
                "timings": timings,
                "finished_at": time.time(),
                "progress": Progress(step=task.steps, total=task.steps),
            }
        )

    return jobs.update(task.job_id, finish)
