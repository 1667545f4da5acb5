"""Gateway unit tests: the real gateway app in-process (FastAPI TestClient), the machine's Redis on
a dedicated database, and the real retriever app (tiny open_clip encoder, embedded Qdrant in a tmp
dir) served on loopback from a thread, so the gateway's retriever client makes real HTTP calls.

No worker runs: tests read the job records and the Celery messages the gateway leaves in Redis.
Each test gets its own queue name, and every Redis key a test creates is deleted after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from tests.conftest import TINY_CLIP

from .helpers import REDIS_URL, clean_redis, environment, serve_in_thread, solid_png

# three plain photos in the corpus, addressed by object id in retrieval filters
CORPUS = {"red-car": (200, 30, 30), "green-tree": (30, 180, 40), "blue-sky": (40, 60, 220)}


@pytest.fixture(scope="package")
def base_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    data = tmp_path_factory.mktemp("gateway-unit")
    values = {
        "REALRAG_ENVIRONMENT": "test",
        "REALRAG_DATA_DIR": str(data),
        "REALRAG_REDIS_URL": REDIS_URL,
        "REALRAG_ENCODER_MODEL": TINY_CLIP,
        "REALRAG_ENCODER_DEVICE": "cpu",
        "REALRAG_DEVICE": "cpu",
        "REALRAG_DEFAULT_MODEL": "tiny-sd",
        "REALRAG_SERVED_MODELS": "[]",  # the default model only, whatever a session-wide stack fixture exported
        "REALRAG_QUEUE_NAME": f"realrag.unit.{uuid.uuid4().hex[:8]}",
    }
    with environment(values):
        yield values


@pytest.fixture(scope="package")
def retriever_url(base_env) -> Iterator[str]:
    from retriever_service.app import app

    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="package")
def corpus(retriever_url) -> dict[str, dict]:
    """Object id -> corpus record, ingested straight into the retriever."""
    records = {}
    with httpx.Client(base_url=retriever_url, timeout=60) as client:
        for object_id, color in CORPUS.items():
            response = client.post(
                "/v1/images",
                files={"file": (f"{object_id}.png", solid_png(color), "image/png")},
                data={"object_id": object_id, "label": object_id.replace("-", " "), "caption": f"a photo of a {object_id}"},
            )
            assert response.status_code in (200, 201), response.text
            records[object_id] = response.json()
    return records


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """The test database; keys the test creates are removed after it."""
    with clean_redis(REDIS_URL) as client:
        yield client


@pytest.fixture
def queue_name() -> str:
    return f"realrag.unit.{uuid.uuid4().hex[:12]}"


GatewayFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def make_gateway(retriever_url, redis_db, queue_name) -> GatewayFactory:
    """make_gateway(tenants=tenants_setting(("a", "key-a")), ...) -> a context manager running the gateway app (lifespan
    included) under these REALRAG_* settings on top of the package's. One gateway at a time: the
    app is a module-level object and its lifespan rebinds app.state."""

    @contextmanager
    def make(**settings: str) -> Iterator[TestClient]:
        values = {"REALRAG_RETRIEVER_URL": retriever_url, "REALRAG_QUEUE_NAME": queue_name}
        values.update({f"REALRAG_{name.upper()}": value for name, value in settings.items()})
        with environment(values):
            from services.gateway.app import app

            with TestClient(app) as client:
                yield client

    return make


@pytest.fixture
def gateway(make_gateway) -> Iterator[TestClient]:
    with make_gateway() as client:
        yield client
