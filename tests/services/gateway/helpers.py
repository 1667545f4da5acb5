"""Helpers for the gateway tests: settings from the environment, a real app served from a thread,
small PNGs, and a reader of the Celery messages the gateway leaves in Redis."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
import uvicorn
from PIL import Image

from services.schemas import GenerateTask
from services.settings import get_settings
from tests.conftest import TEST_REDIS, png_bytes

TEST_REDIS_DB = 13  # dedicated to these tests; the e2e stack and the dev server use db 0
REDIS_URL = f"redis://{TEST_REDIS}/{TEST_REDIS_DB}"


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set REALRAG_* variables the way a deployment does; get_settings() re-reads them inside and after."""
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in values.items():
                patch.setenv(name, value)
            get_settings.cache_clear()
            yield
    finally:
        get_settings.cache_clear()


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a loopback port from a thread (lifespan included)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the app failed to start; see the log above")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def solid_png(color: tuple[int, int, int], size: tuple[int, int] = (40, 32)) -> bytes:
    return png_bytes(Image.new("RGB", size, color))


def queued_messages(client: redis.Redis, queue: str) -> list[dict]:
    """The Celery messages waiting in `queue`, oldest first (kombu LPUSHes and BRPOPs)."""
    messages = []
    for raw in reversed(client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append({"task": message["headers"]["task"], "id": message["headers"]["id"], "args": args, "kwargs": kwargs})
    return messages


def decode_task(raw: str) -> GenerateTask:
    args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
    return GenerateTask.model_validate(args[0])


@contextmanager
def clean_redis(url: str) -> Iterator[redis.Redis]:
    """A client on a test database; the keys created while it is open (job records, cancel flags,
    queues, idempotency keys) are removed afterwards."""
    client = redis.Redis.from_url(url, decode_responses=True)
    before = set(client.keys("*"))
    try:
        yield client
    finally:
        created = set(client.keys("*")) - before
        if created:
            client.delete(*created)
        client.close()


def tenants_setting(*tenants: tuple[str, str] | tuple[str, str, str], **limits: int) -> str:
    """REALRAG_TENANTS for (name, key[, role]) tuples, with `limits` (requests_per_minute, ...) on each."""
    from services.tenants import hash_key

    entries = [{"name": t[0], "key_sha256": hash_key(t[1]), "role": t[2] if len(t) > 2 else "user", **limits} for t in tenants]
    return json.dumps(entries)
