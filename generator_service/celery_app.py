"""The Celery app (``generator_service.celery_app:app``). Torch-free: the gateway imports it to
enqueue; only the worker imports ``generator_service.tasks`` (and with it torch)."""

from __future__ import annotations

from celery import Celery

from services.settings import get_settings

from .celeryconfig import celery_config

GENERATE_TASK = "realrag.generate"

app = Celery("realrag", include=["generator_service.tasks"])
app.conf.update(celery_config(get_settings()))
