"""The worker's Celery app (``generator_service.celery_app:app``); its tasks live in ``tasks``."""

from __future__ import annotations

from celery import Celery

from services.queue import APP_NAME, GENERATE_TASK, celery_config
from services.settings import get_settings

from .recovery import WakeRecoveryOnConnect

__all__ = ["GENERATE_TASK", "app"]

app = Celery(APP_NAME, include=["generator_service.tasks"])
app.conf.update(celery_config(get_settings()))
app.steps["consumer"].add(WakeRecoveryOnConnect)  # orphaned jobs are requeued on every (re)connection
