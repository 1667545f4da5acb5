"""Celery tasks: tiny bodies, the work lives in runner.py."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading

import redis
from celery import signals
from celery.exceptions import Reject

from services.jobs import JobStore
from services.queue import enqueue_webhook
from services.registry import record_loaded, served_model_keys
from services.schemas import GenerateTask, JobError, JobStatus
from services.settings import Settings, get_settings

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

    settings = get_settings()
    try:
        served = served_model_keys(settings)
        if task.model not in served:  # the gateway rejects these; a stale or foreign message still must not load it
            return _refuse_unserved(task, served)
        status = run_job(task, job_store(), settings)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        # The job store is unreachable: that is no verdict on the job. Put the message back (or, with
        # the broker down too, leave it to recovery.py) instead of acking a job nobody will finish.
        log.warning("job %s: Redis unreachable (%s); requeueing it", task.job_id, exc)
        raise Reject(f"job store unreachable: {exc}", requeue=True) from exc
    finally:
        _publish_loaded()
    return status.value if status else None


def _refuse_unserved(task: GenerateTask, served: list[str]) -> str | None:
    jobs = job_store()
    job = jobs.get(task.job_id)
    if job is None or job.status.terminal:
        return job.status.value if job else None
    message = f"model {task.model!r} is not served by this worker; served: {', '.join(served)}"
    log.warning("job %s: %s", task.job_id, message)
    job = jobs.transition(task.job_id, JobStatus.failed, error=JobError(code="model_not_served", message=message))
    enqueue_webhook(job, get_settings())
    return job.status.value


@app.task(name=HEARTBEAT_TASK, ignore_result=True, acks_late=False)
def heartbeat_task() -> None:
    heartbeat.touch(get_settings().heartbeat_path)


@signals.worker_init.connect
def _reset_heartbeat(**_) -> None:
    heartbeat.reset(get_settings().heartbeat_path)


@signals.worker_process_init.connect
def _start_child(**_) -> None:
    """A pool child starts: check the device (an explicit ``cuda`` without a usable GPU is fatal),
    load every served model with REALRAG_WORKER_PRELOAD, and publish what it holds to Redis. A child
    that cannot start records ``fatal`` in the heartbeat (both probes fail) and takes the worker down
    (non-zero exit), instead of failing every job later."""
    settings = get_settings()
    try:
        if settings.worker_preload:
            from .loader import get_generator, loaded_devices

            for key in served_model_keys(settings):
                _generator, load_s = get_generator(key, settings)
                log.info("preloaded %s on %s in %.1fs", key, loaded_devices()[key], load_s)
            heartbeat.touch(settings.heartbeat_path, model_loaded=True, device=loaded_devices()[settings.default_model])
        elif settings.device.startswith("cuda"):
            from .loader import worker_device

            worker_device(settings)
    except Exception as exc:
        _die(settings, f"{type(exc).__name__}: {exc}")
        return
    threading.Thread(target=_publish_loop, args=(settings,), name="realrag-loaded-models", daemon=True).start()


def _die(settings: Settings, reason: str) -> None:
    log.critical("worker cannot start: %s", reason)
    heartbeat.touch(settings.heartbeat_path, fatal=reason)
    # Take the whole worker down (the container restarts, CrashLoopBackOff shows the log above). Not a
    # Celery shutdown: the pool would respawn this child, which fails again, and a warm shutdown waits
    # on it forever, a cold one for the soft-shutdown timeout. Nothing runs yet: a child starts first.
    os.kill(os.getppid(), signal.SIGKILL)
    os._exit(1)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _publish_loaded() -> None:
    """Tell the gateway (/v1/models) which models this process holds, for REALRAG_WORKER_LEASE_S."""
    from .loader import loaded_devices

    models = loaded_devices()
    if not models:
        return
    try:
        settings = get_settings()
        record_loaded(job_store().redis, settings.queue_name, worker_id(), models, ttl_s=settings.worker_lease_s)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        log.warning("cannot record loaded models: %s", exc)


def _publish_loop(settings: Settings) -> None:
    stop = threading.Event()
    _publish_loaded()
    while not stop.wait(settings.worker_lease_s / 3):
        _publish_loaded()


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
