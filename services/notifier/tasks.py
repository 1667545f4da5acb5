"""The delivery task: one signed attempt per run, retried with the configured backoff."""

from __future__ import annotations

import logging

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from services.queue import WEBHOOK_TASK
from services.settings import get_settings
from services.webhooks import Outcome, WebhookMessage, attempt, host_of

from .celery_app import app

log = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO; receivers' URLs may carry tokens in their path or query
logging.getLogger("httpx").setLevel(logging.WARNING)


@app.task(bind=True, name=WEBHOOK_TASK, ignore_result=True, max_retries=None)
def deliver(self: Task, message: dict) -> str:
    """Returns the outcome's name (delivered, final, or gave_up after the last retry)."""
    settings = get_settings()
    webhook = WebhookMessage.model_validate(message)
    try:
        outcome, reason = attempt(webhook, settings)
    except SoftTimeLimitExceeded:  # a receiver that trickles its answer past every httpx timeout
        outcome, reason = Outcome.retry, "attempt time limit"
    tries = self.request.retries + 1
    where = f"webhook {webhook.id} ({webhook.type} of job {webhook.data.get('id')}) to {host_of(webhook.url)}"
    if outcome is Outcome.delivered:
        log.info("%s delivered (%s) on try %d", where, reason, tries)
        return outcome.value
    if outcome is Outcome.final:
        log.warning("%s not delivered: %s (final, not retried)", where, reason)
        return outcome.value
    delays = settings.webhook_retry_delays_s
    if self.request.retries >= len(delays):
        log.warning("%s not delivered: %s; giving up after %d tries", where, reason, tries)
        return "gave_up"
    countdown = delays[self.request.retries]
    log.info("%s failed (%s) on try %d; retrying in %ds", where, reason, tries, countdown)
    raise self.retry(countdown=countdown)
