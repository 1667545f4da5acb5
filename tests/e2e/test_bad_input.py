"""Bad input gets a clear, machine-readable 4xx and loses nothing; missing dependencies give 503."""

import os
import subprocess
import sys
import time

import httpx
import pytest

from realrag.stack import free_port

BAD_BODIES = [
    ({"prompt": ""}, 422, "empty_prompt"),
    ({"prompt": "   "}, 422, "empty_prompt"),
    ({"prompt": "x" * 1001}, 422, "prompt_too_long"),
    ({"prompt": "ok", "n": 5}, 422, "n_out_of_range"),
    ({"prompt": "ok", "n": 0}, 422, "n_out_of_range"),
    ({"prompt": "ok", "width": 4096}, 422, "invalid_size"),
    ({"prompt": "ok", "width": 70}, 422, "invalid_size"),
    ({"prompt": "ok", "size": "big"}, 422, "invalid_size"),
    ({"prompt": "ok", "steps": 1000}, 422, "steps_out_of_range"),
    ({"prompt": "ok", "guidance": 99}, 422, "guidance_out_of_range"),
    ({"prompt": "ok", "model": "no-such-model"}, 422, "unknown_model"),
    ({"prompt": "ok", "retrieval": {"top_k": 4}}, 422, "too_many_references"),
    ({"prompt": "ok", "retrieval": {"retriever": "reflective"}}, 422, "unknown_retriever"),
    ({"prompt": "ok", "reference_ids": ["00000000-0000-0000-0000-000000000000"]}, 422, "unknown_reference"),
    ({"prompt": "ok", "webhook_url": "ftp://example.com/x"}, 422, "invalid_webhook_url"),
    ({"prompt": "ok", "unknown_field": 1}, 422, "invalid_request"),
    ({"prompt": 12}, 422, "invalid_request"),
]


@pytest.mark.parametrize("body,status,code", BAD_BODIES)
def test_bad_generation_request_is_a_clear_4xx(gateway, corpus, body, status, code):
    response = gateway.post("/v1/generations", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_too_many_references_names_the_models_limit(gateway):
    message = gateway.post("/v1/generations", json={"prompt": "ok", "retrieval": {"top_k": 4}}).json()["error"]["message"]
    assert "at most" in message


def test_unknown_job_is_404(gateway):
    for method in ("GET", "DELETE"):
        response = gateway.request(method, "/v1/generations/does-not-exist")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "job_not_found"


def test_malformed_json_is_422(gateway):
    response = gateway.post("/v1/generations", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_bad_uploads(gateway):
    junk = gateway.post("/v1/corpus/images", files={"file": ("x.png", b"not an image", "image/png")})
    assert junk.status_code == 422 and junk.json()["error"]["code"] == "invalid_image"
    gif = gateway.post("/v1/corpus/images", files={"file": ("x.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif")})
    assert gif.status_code == 422
    assert gateway.get("/v1/corpus/images/not-a-uuid").status_code == 404
    assert gateway.get("/v1/artifacts/../../etc/passwd").status_code == 404


def test_corpus_crud_and_duplicates(gateway, corpus):
    from PIL import Image

    from tests.conftest import png_bytes

    data = png_bytes(Image.new("RGB", (40, 30), (1, 2, 3)))
    created = gateway.post("/v1/corpus/images", files={"file": ("a.png", data, "image/png")}, data={"object_id": "tmp", "label": "Tmp"})
    assert created.status_code == 201
    image = created.json()
    dup = gateway.post("/v1/corpus/images", files={"file": ("b.png", data, "image/png")})
    assert dup.status_code == 200 and dup.json()["duplicate"] is True and dup.json()["id"] == image["id"]
    assert gateway.get(f"/v1/corpus/images/{image['id']}").json()["label"] == "Tmp"
    hits = gateway.post("/v1/corpus/search", json={"query": "tmp", "top_k": 5, "filter": {"object_id": "tmp"}}).json()["hits"]
    assert [h["id"] for h in hits] == [image["id"]]
    assert gateway.delete(f"/v1/corpus/images/{image['id']}").status_code == 204
    assert gateway.get(f"/v1/corpus/images/{image['id']}").status_code == 404
    assert gateway.delete(f"/v1/corpus/images/{image['id']}").status_code == 404


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


def test_retriever_unreachable_is_503_and_no_job_is_left(stack_env, stack):
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

        assert redis.Redis().get(f"realrag:idem:{key}") is None
    finally:
        proc.kill()


def test_redis_unreachable_is_503(stack_env, stack):
    proc, url = _start_gateway({**stack_env, "REALRAG_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    try:
        response = httpx.post(f"{url}/v1/generations", json={"prompt": "ok"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] in ("redis_unavailable", "broker_unavailable")
        assert "Redis" in response.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/generations/x").status_code == 503
        assert httpx.get(f"{url}/readyz").status_code == 503
    finally:
        proc.kill()


def test_api_keys_are_enforced(stack_env, stack):
    proc, url = _start_gateway({**stack_env, "REALRAG_API_KEYS": '["s3cret"]'})
    try:
        assert httpx.get(f"{url}/v1/models").status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{url}/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200
    finally:
        proc.kill()
