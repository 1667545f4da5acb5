"""The notifier's Celery configuration: the shared one (services.queue), on the webhooks queue.

Retries wait in the worker as ETA messages, unacknowledged, for up to the longest retry delay. The
Redis transport redelivers an unacknowledged message after its visibility timeout, so the notifier
keeps its own unacked keys (the GPU workers' shorter timeout never touches them) and a timeout
longer than any delay: a notifier that dies loses no message, it comes back after the timeout.
"""

from __future__ import annotations

from services.queue import celery_config
from services.settings import Settings

UNACKED_PREFIX = "realrag.notifier.unacked"


def attempt_time_limit_s(settings: Settings) -> int:
    """Hard limit of one delivery attempt: connect, send and read the status line, with slack."""
    return int(settings.webhook_timeout_s * 4) + 10


def visibility_timeout_s(settings: Settings) -> int:
    return max(settings.webhook_retry_delays_s, default=0) + attempt_time_limit_s(settings) + 600


def notifier_config(settings: Settings) -> dict:
    config = celery_config(settings)
    limit = attempt_time_limit_s(settings)
    config.update(
        {
            "task_default_queue": settings.webhook_queue,
            "broker_transport_options": {
                "visibility_timeout": visibility_timeout_s(settings),
                "unacked_key": UNACKED_PREFIX,
                "unacked_index_key": f"{UNACKED_PREFIX}.index",
                "unacked_mutex_key": f"{UNACKED_PREFIX}.mutex",
            },
            "task_soft_time_limit": limit - 5,
            "task_time_limit": limit,
            "worker_soft_shutdown_timeout": float(limit),
            "worker_proc_alive_timeout": 60.0,
            "worker_direct": False,
        }
    )
    return config
