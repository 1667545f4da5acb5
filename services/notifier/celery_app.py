"""The notifier's Celery app (``services.notifier.celery_app:app``); its task lives in ``tasks``."""

from __future__ import annotations

from celery import Celery

from services.queue import APP_NAME
from services.settings import get_settings

from .config import notifier_config

app = Celery(APP_NAME, include=["services.notifier.tasks"])
app.conf.update(notifier_config(get_settings()))
