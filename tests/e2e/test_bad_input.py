"""Missing dependencies give 503 and API keys are enforced, in a gateway process started by the CLI.

The request-level bad-input cases (validation 4xx, 404s, malformed JSON, bad uploads, corpus CRUD)
run in-process in tests/services/gateway/; these start a real `realrag gateway` process against the
machine's Redis. They need no worker and no retriever.
"""

import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from realrag.stack import free_port
from services.tenants import hash_key

pytestmark = pytest.mark.slow  # starts real processes: run with -m slow, skip with -m 'not slow'


def _start_gateway(env_overrides: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, **env_overrides, "REALRAG_GATEWAY_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "realrag.cli", "gateway"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("gateway did not start")


def test_retriever_unreachable_is_503_and_no_job_is_left(stack_env):
    proc, url = _start_gateway({**stack_env, "REALRAG_RETRIEVER_URL": f"http://127.0.0.1:{free_port()}"})
    try:
        import uuid

        key = f"k-503-{uuid.uuid4().hex}"
        response = httpx.post(f"{url}/v1/generations", json={"prompt": "ok", "seed": 1}, headers={"Idempotency-Key": key})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "retriever_unavailable"
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["retriever"]["status"] == "unavailable"
        # nothing was lost or half-created: the same key can be used again once the retriever is back
        import redis

        assert redis.Redis.from_url(stack_env["REALRAG_REDIS_URL"]).get(f"realrag:idem:local:{key}") is None
    finally:
        proc.kill()


def test_redis_unreachable_is_503(stack_env):
    proc, url = _start_gateway({**stack_env, "REALRAG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        # retrieval off: references are fetched before the job is stored, and this test is about Redis
        response = httpx.post(f"{url}/v1/generations", json={"prompt": "ok", "retrieval": {"enabled": False}})
        assert response.status_code == 503
        assert response.json()["error"]["code"] in ("redis_unavailable", "broker_unavailable")
        assert "Redis" in response.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/generations/x").status_code == 503
        assert httpx.get(f"{url}/readyz").status_code == 503
    finally:
        proc.kill()


def test_api_keys_are_enforced(stack_env):
    tenants = json.dumps([{"name": "alpha", "key_sha256": hash_key("s3cret")}])
    proc, url = _start_gateway({**stack_env, "REALRAG_TENANTS": tenants})
    try:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": hash_key("s3cret")}).status_code == 401, "the digest is no key"
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.kill()


def test_production_without_tenants_refuses_to_start(stack_env):
    env = {**os.environ, **stack_env, "REALRAG_ENVIRONMENT": "production", "REALRAG_GATEWAY_PORT": str(free_port())}
    env.pop("REALRAG_TENANTS", None)
    done = subprocess.run([sys.executable, "-m", "realrag.cli", "gateway"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "REALRAG_TENANTS" in done.stderr and "refusing to serve without auth" in done.stderr
