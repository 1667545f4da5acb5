"""Shared fixtures: a real stack (retriever + gateway under uvicorn, a Celery worker process, the
machine's Redis, embedded Qdrant), tiny models, isolated by a per-session queue and data dir."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = str(REPO / "retriever_service" / "configs" / "tiny-clip.json")

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests never read the developer's .env: REALRAG_ENV_FILE="" means no dotenv file
# (services/settings.py), here and in every process the tests start (they inherit it). Set before the
# first import of services.settings; the model_config line covers a plugin that imported it earlier.
os.environ["REALRAG_ENV_FILE"] = ""

from services.settings import Settings  # noqa: E402

Settings.model_config["env_file"] = None


# Where the tests' Redis server is (host:port); each test module uses a database of its own on it.
# Concurrent test sessions on one machine each set their own (e.g. a redis-server on another port).
TEST_REDIS = os.environ.get("REALRAG_TEST_REDIS", "127.0.0.1:6379")
# A Standard Webhooks secret ("whsec_" + base64 of the key) for the stack's notifier and its verifiers.
TEST_WEBHOOK_SECRET = "whsec_cmVhbHJhZyB0ZXN0IHdlYmhvb2sgc2VjcmV0IGtleSE="


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def stack_base_env(data_dir: Path, redis_db: int) -> dict[str, str]:
    """What every test stack needs: its own data dir, ports, queue and Redis database, tiny models."""
    from realrag.stack import free_port

    return {
        "REALRAG_DATA_DIR": str(data_dir),
        "REALRAG_ENCODER_MODEL": TINY_CLIP,
        "REALRAG_DEFAULT_MODEL": "tiny-sd",
        "REALRAG_SERVED_MODELS": '["tiny-sd"]',
        "REALRAG_QUEUE_NAME": f"realrag.test.{uuid.uuid4().hex[:8]}",
        "REALRAG_GATEWAY_PORT": str(free_port()),
        "REALRAG_RETRIEVER_PORT": str(free_port()),
        "REALRAG_REDIS_URL": f"redis://{TEST_REDIS}/{redis_db}",
        "REALRAG_EMBEDDED_REDIS": "never",
    }


@contextmanager
def running_stack(env: dict[str, str]) -> Iterator:
    """`realrag serve`'s supervisor (gateway, retriever, worker, notifier processes) with `env` set."""
    from realrag.stack import Stack
    from services.settings import Settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        settings = Settings()
        with Stack(settings, settings.data_dir / "logs").start() as running:
            yield running
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory) -> dict[str, str]:
    return {
        **stack_base_env(tmp_path_factory.mktemp("stack"), redis_db=0),
        # the tiny twin of every family (tests/e2e/test_families.py); anything else is refused
        "REALRAG_SERVED_MODELS": '["tiny-sd", "tiny-sdxl", "tiny-sd3", "tiny-flux", "tiny-omnigen"]',
        "REALRAG_MAX_DELIVERIES": "2",
        "REALRAG_WEBHOOK_ALLOW_PRIVATE": "true",
        "REALRAG_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "REALRAG_WEBHOOK_RETRY_DELAYS_S": "[1, 1]",
        "REALRAG_WEBHOOK_TIMEOUT_S": "30",  # a hung receiver holds the notifier, visibly, for the whole e2e test
    }


@pytest.fixture(scope="session")
def stack(stack_env):
    with running_stack(stack_env) as running:
        yield running


@pytest.fixture(scope="session")
def gateway(stack) -> httpx.Client:
    with httpx.Client(base_url=stack.gateway_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="session")
def corpus(gateway) -> dict[str, list[dict]]:
    """The sample corpus ingested through the gateway: object id -> its corpus records."""
    from realrag.sample_corpus import sample_corpus

    by_object: dict[str, list[dict]] = {}
    for item in sample_corpus():
        response = gateway.post(
            "/v1/corpus/images",
            files={"file": ("photo.png", png_bytes(item.image), "image/png")},
            data={"caption": item.caption, "object_id": item.object_id, "label": item.label},
        )
        assert response.status_code in (200, 201), response.text
        by_object.setdefault(item.object_id, []).append(response.json())
    return by_object
