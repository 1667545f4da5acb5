"""The retriever app in-process (TestClient, lifespan run), tiny encoder, embedded index in a tmp dir."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.settings import get_settings
from tests.conftest import TINY_CLIP


@contextmanager
def retriever_client(data_dir: Path, **settings: str) -> Iterator[TestClient]:
    """`settings`: extra REALRAG_* values by lower-case name (e.g. retriever_token="t")."""
    from retriever_service.app import app

    values = {"data_dir": str(data_dir), "encoder_model": TINY_CLIP, "encoder_device": "cpu", **settings}
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in values.items():
                env.setenv(f"REALRAG_{name.upper()}", value)
            get_settings.cache_clear()
            with TestClient(app) as test_client:
                yield test_client
    finally:
        get_settings.cache_clear()
