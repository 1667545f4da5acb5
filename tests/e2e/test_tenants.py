"""The isolation matrix of #10 for jobs, on the real stack (uvicorn gateway and retriever, Celery worker,
Redis, embedded Qdrant) with two tenants, after their jobs have really run: read, events, cancel, PUT
with the other's id, Idempotency-Key reuse; and the per-tenant rate limit. Outputs and corpus are in
test_tenant_artifacts.py.

The multi-tenant stack is tests/e2e/conftest.py's `tenant_stack`.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis

from services.jobs import JobStore

from .helpers import TENANT_REDIS_URL, wait_for

pytestmark = pytest.mark.slow  # starts real processes

BODY = {"prompt": "a small red car", "width": 64, "height": 64, "steps": 2, "seed": 1, "retrieval": {"enabled": False}}


@pytest.fixture(scope="module")
def clients(tenant_clients) -> dict[str, httpx.Client]:
    return tenant_clients


@pytest.fixture(scope="module")
def jobs_of_a(clients) -> dict[str, dict]:
    """Two finished jobs of tenant a: one under its own id (PUT), one with an Idempotency-Key."""
    a = clients["a"]
    job_id, key = f"a-{uuid.uuid4().hex[:12]}", f"a-key-{uuid.uuid4().hex[:12]}"
    put = a.put(f"/v1/generations/{job_id}", json=BODY)
    keyed = a.post("/v1/generations", json={**BODY, "seed": 2}, headers={"Idempotency-Key": key})
    assert (put.status_code, keyed.status_code) == (202, 202), (put.text, keyed.text)
    done = {"put": wait_for(a, job_id, timeout=240), "keyed": wait_for(a, keyed.json()["id"], timeout=240)}
    assert all(job["status"] == "succeeded" for job in done.values()), done
    return {**done, "key": {"id": key}}


def events(client: httpx.Client, job_id: str) -> tuple[int, list[str]]:
    response = client.get(f"/v1/generations/{job_id}/events")
    return response.status_code, [line.removeprefix("event: ") for line in response.text.splitlines() if line.startswith("event: ")]


def is_not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and response.json()["error"]["code"] == "job_not_found"


def test_read_events_and_cancel_of_another_tenants_job_are_404(clients, jobs_of_a):
    a, b = clients["a"], clients["b"]
    job_id = jobs_of_a["put"]["id"]
    assert a.get(f"/v1/generations/{job_id}").json()["status"] == "succeeded"
    assert events(a, job_id) == (200, ["succeeded"])
    assert is_not_found(b.get(f"/v1/generations/{job_id}"))
    assert is_not_found(b.get(f"/v1/generations/{job_id}/events"))
    assert is_not_found(b.delete(f"/v1/generations/{job_id}"))
    assert is_not_found(b.post(f"/v1/generations/{job_id}/cancel"))
    view = a.get(f"/v1/generations/{job_id}").json()
    assert (view["status"], view["version"]) == ("succeeded", jobs_of_a["put"]["version"]), "nothing b did changed a's job"
    assert not {"tenant", "internal_id"} & set(view)


def test_put_with_another_tenants_id_is_a_separate_job(clients, jobs_of_a):
    a, b = clients["a"], clients["b"]
    job_id = jobs_of_a["put"]["id"]
    assert a.put(f"/v1/generations/{job_id}", json=BODY).status_code == 200, "a's own replay"
    theirs = b.put(f"/v1/generations/{job_id}", json={**BODY, "prompt": "b's own car"})
    assert theirs.status_code == 202 and theirs.json()["id"] == job_id, theirs.text
    done = wait_for(b, job_id, timeout=240)
    assert done["status"] == "succeeded" and done["prompt"] == "b's own car"
    assert {o["uri"] for o in done["outputs"]}.isdisjoint(o["uri"] for o in jobs_of_a["put"]["outputs"])
    assert all(job_id not in o["uri"] for o in done["outputs"]), "output paths are not the client's id"
    mine = a.get(f"/v1/generations/{job_id}").json()
    assert (mine["prompt"], mine["version"]) == (BODY["prompt"], jobs_of_a["put"]["version"])

    store = JobStore(redis.Redis.from_url(TENANT_REDIS_URL, decode_responses=True), ttl_s=60)
    internal_a, internal_b = store.internal_id("a", job_id), store.internal_id("b", job_id)
    assert internal_a and internal_b and internal_a != internal_b
    assert (store.owner_of_output(internal_a), store.owner_of_output(internal_b)) == ("a", "b")


def test_idempotency_keys_are_per_tenant(clients, jobs_of_a):
    a, b = clients["a"], clients["b"]
    key = {"Idempotency-Key": jobs_of_a["key"]["id"]}
    replay = a.post("/v1/generations", json={**BODY, "seed": 2}, headers=key)
    assert replay.status_code == 200 and replay.json()["id"] == jobs_of_a["keyed"]["id"]
    theirs = b.post("/v1/generations", json={**BODY, "seed": 3}, headers=key)
    assert theirs.status_code == 202 and theirs.json()["id"] != jobs_of_a["keyed"]["id"], theirs.text
    assert wait_for(b, theirs.json()["id"], timeout=240)["seeds"] == [3]
    assert is_not_found(b.get(f"/v1/generations/{jobs_of_a['keyed']['id']}"))


def test_rate_limit_is_429_with_retry_after(clients):
    slow, a = clients["slow"], clients["a"]
    statuses = [slow.get("/v1/models").status_code for _ in range(5)]
    limited = slow.get("/v1/models")
    assert statuses == [200] * 5
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert a.get("/v1/models").status_code == 200, "other tenants are not limited by it"
