"""Celery tasks: tiny bodies, the work lives in runner.py."""

from __future__ import annotations

import logging
import threading

import redis
from celery import signals
from celery.exceptions import Reject

from services.jobs import JobStore
from services.schemas import GenerateTask
from services.settings import get_settings

from . import heartbeat, recovery
from .celery_app import GENERATE_TASK, app

log = logging.getLogger(__name__)
HEARTBEAT_TASK = "realrag.heartbeat"
HEARTBEAT_EVERY_S = 30.0

_jobs: JobStore | None = None


def job_store() -> JobStore:
    global _jobs
    if _jobs is None:  # created in the child after the fork
        settings = get_settings()
        _jobs = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    return _jobs


@app.task(name=GENERATE_TASK, pydantic=True)
def generate(task: GenerateTask) -> str | None:
    from .runner import run_job  # imports torch; only ever in the worker

    try:
        status = run_job(task, job_store(), get_settings())
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # The job store is unreachable: that is no verdict on the job. Put the message back (or, with
        # the broker down too, leave it to recovery.py) instead of acking a job nobody will finish.
        log.warning("job %s: Redis unreachable (%s); requeueing it", task.job_id, exc)
        raise Reject(f"job store unreachable: {exc}", requeue=True) from exc
    return status.value if status else None


@app.task(name=HEARTBEAT_TASK, ignore_result=True, acks_late=False)
def heartbeat_task() -> None:
    heartbeat.touch(get_settings().heartbeat_path)


@signals.worker_init.connect
def _reset_heartbeat(**_) -> None:
    heartbeat.reset(get_settings().heartbeat_path)


@signals.worker_process_init.connect
def _preload_model(**_) -> None:
    settings = get_settings()
    if settings.worker_preload:
        from .loader import get_generator

        get_generator(settings.default_model, settings)
        heartbeat.touch(settings.heartbeat_path, model_loaded=True)


@signals.worker_ready.connect
def _start_heartbeat(sender=None, **_) -> None:
    """Send a no-op to this worker's own direct queue every 30 s: it is only executed (and the
    file touched) if the worker really consumes."""
    settings = get_settings()
    heartbeat.touch(settings.heartbeat_path, consuming=True)
    hostname = sender.hostname if sender is not None else None
    if not hostname:
        return

    def loop() -> None:
        stop = threading.Event()
        while not stop.wait(HEARTBEAT_EVERY_S):
            try:
                app.send_task(HEARTBEAT_TASK, queue=f"{hostname}.dq2", expires=HEARTBEAT_EVERY_S * 2)
            except Exception as exc:  # broker down: the heartbeat simply ages
                log.warning("heartbeat send failed: %s", exc)

    threading.Thread(target=loop, name="realrag-heartbeat", daemon=True).start()


@signals.worker_ready.connect
def _start_recovery(sender=None, **_) -> None:
    """Lease the messages this worker holds and requeue orphaned ones (recovery.py): now, on every
    reconnection and every REALRAG_WORKER_LEASE_S / 5 seconds."""
    settings = get_settings()
    hostname = getattr(sender, "hostname", None) or "worker"
    recovery.start(
        app, settings.queue_name, GENERATE_TASK, settings.worker_lease_s, settings.visibility_timeout_s, hostname
    )


@signals.task_received.connect
def _on_received(**_) -> None:
    heartbeat.touch(get_settings().heartbeat_path, consuming=True)
    recovery.wake()  # lease the new message now
