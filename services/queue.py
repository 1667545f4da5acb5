"""The queue contract between the gateway (producer) and the GPU worker (consumer).

Task names, the Celery configuration derived from the one Settings object, and a producer app for
the gateway that knows no task code (it sends by name). Torch-free and worker-free.

Reliability: one task reserved per process (prefetch 1 + late ack), a message whose worker child
died is requeued, and the job store caps redeliveries (runner.py). A message whose whole worker
died or lost Redis is requeued by the workers' lease sweep within seconds
(generator_service/recovery.py); Redis itself redelivers unacked messages only after the visibility
timeout, the last resort, so Settings insists it exceeds the hard time limit.
"""

from __future__ import annotations

from celery import Celery

from services.schemas import Job
from services.settings import Settings
from services.webhooks import job_message

GENERATE_TASK = "realrag.generate"
WEBHOOK_TASK = "realrag.webhook"  # consumed by the notifier (services/notifier) on settings.webhook_queue
APP_NAME = "realrag"


def celery_config(settings: Settings) -> dict:
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    return {
        "broker_url": settings.redis_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "task_ignore_result": True,  # our job store is the source of truth, not Celery results
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_default_queue": settings.queue_name,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": settings.task_soft_time_limit_s,
        "task_time_limit": settings.task_time_limit_s,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Model loads happen on the first task in the child, not in worker_process_init, but a
        # preload (REALRAG_WORKER_PRELOAD) may take minutes on real weights.
        "worker_proc_alive_timeout": 600.0 if settings.worker_preload else 60.0,
        # on SIGTERM a running job gets its whole time limit before it is requeued
        "worker_soft_shutdown_timeout": float(settings.task_time_limit_s),
        "worker_enable_soft_shutdown_on_idle": True,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_direct": True,  # per-worker queue for the consumption heartbeat
    }


def producer_app(settings: Settings) -> Celery:
    """A Celery app that only sends: the gateway enqueues by task name, never importing tasks."""
    app = Celery(APP_NAME)
    app.conf.update(celery_config(settings))
    return app


_producers: dict[str, Celery] = {}


def enqueue_webhook(job: Job, settings: Settings, producer: Celery | None = None) -> bool:
    """Queue `generation.<status>` for the notifier if the finished job has a webhook_url.

    Only a message to Redis: delivery, its retries and a slow or dead receiver never hold the
    caller (a GPU job slot, a gateway request). `producer` defaults to one per broker URL and process."""
    message = job_message(job)
    if message is None:
        return False
    if producer is None:
        producer = _producers.get(settings.redis_url)
        if producer is None:
            producer = _producers[settings.redis_url] = producer_app(settings)
    producer.send_task(WEBHOOK_TASK, args=[message.model_dump(mode="json")], queue=settings.webhook_queue)
    return True
