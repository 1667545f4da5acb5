"""Tenants (#10.1, #10.6): each API key owns its jobs, ids and idempotency keys; per-tenant limits.

The in-process gateway with two tenants, `alpha` and `beta`, and no worker (jobs stay queued). The
output-artefact and corpus parts of the isolation matrix are in test_artifacts.py / test_corpus.py.
"""

from __future__ import annotations

import json
import logging

import pytest

from services.jobs import JobStore
from services.settings import Settings
from services.tenants import AuthNotConfigured, check_auth_mode, find_tenant, hash_key

from .helpers import queued_messages, tenants_setting

ALPHA, BETA = "key-alpha", "key-beta"
A = {"Authorization": f"Bearer {ALPHA}"}
B = {"Authorization": f"Bearer {BETA}"}
BODY = {"prompt": "a red car at night", "seed": 1, "retrieval": {"enabled": False}}


def two_tenants(**limits: int) -> str:
    return tenants_setting(("alpha", ALPHA), ("beta", BETA), **limits)


@pytest.fixture
def gateway(make_gateway):
    with make_gateway(tenants=two_tenants()) as client:
        yield client


def not_found(response, job_id: str) -> bool:
    error = response.json()["error"]
    return response.status_code == 404 and error["code"] == "job_not_found" and error["message"] == f"no job {job_id}"


def test_another_tenants_job_is_invisible(gateway, redis_db, queue_name):
    job_id = "alpha-own-id"
    mine = gateway.put(f"/v1/generations/{job_id}", json=BODY, headers=A)
    assert mine.status_code == 202, mine.text

    # read, events, cancel (both forms): the same 404 as an id nobody used, never a 403
    for method, path in (("GET", ""), ("GET", "/events"), ("DELETE", ""), ("POST", "/cancel")):
        theirs = gateway.request(method, f"/v1/generations/{job_id}{path}", headers=B)
        unknown = gateway.request(method, f"/v1/generations/never-used{path}", headers=B)
        assert not_found(theirs, job_id) and not_found(unknown, "never-used"), (method, path)
        assert theirs.json()["error"].get("details") == unknown.json()["error"].get("details")

    own = gateway.get(f"/v1/generations/{job_id}", headers=A)
    assert own.status_code == 200 and own.json()["status"] == "queued", "beta's cancel did not touch it"
    assert not {"tenant", "internal_id"} & set(own.json())


def test_put_with_another_tenants_id_creates_a_separate_job(gateway, redis_db, queue_name):
    job_id = "shared-id"
    alpha = gateway.put(f"/v1/generations/{job_id}", json=BODY, headers=A)
    # beta, same id: with the same body and with another one, a job of its own (no 200 replay, no 409 oracle)
    beta = gateway.put(f"/v1/generations/{job_id}", json={**BODY, "prompt": "beta's own"}, headers=B)
    assert (alpha.status_code, beta.status_code) == (202, 202), beta.text
    assert beta.json()["id"] == job_id and beta.json()["prompt"] == "beta's own"
    assert gateway.get(f"/v1/generations/{job_id}", headers=A).json()["prompt"] == BODY["prompt"]
    assert gateway.get(f"/v1/generations/{job_id}", headers=B).json()["prompt"] == "beta's own"

    store = JobStore(redis_db, ttl_s=600)
    internal = {store.internal_id("alpha", job_id), store.internal_id("beta", job_id)}
    assert len(internal) == 2 and job_id not in internal, "two jobs, neither named by the client's id"
    assert {m["id"] for m in queued_messages(redis_db, queue_name)} == internal
    assert {store.owner_of_output(i) for i in internal} == {"alpha", "beta"}

    # beta canceling "its" shared-id cancels its own job only
    assert gateway.delete(f"/v1/generations/{job_id}", headers=B).json()["status"] == "canceled"
    assert gateway.get(f"/v1/generations/{job_id}", headers=A).json()["status"] == "queued"


def test_idempotency_keys_are_per_tenant(gateway, redis_db, queue_name):
    key = {"Idempotency-Key": f"same-key-{queue_name}"}
    alpha = gateway.post("/v1/generations", json=BODY, headers={**A, **key})
    replay = gateway.post("/v1/generations", json=BODY, headers={**A, **key})
    beta = gateway.post("/v1/generations", json={**BODY, "seed": 2}, headers={**B, **key})
    assert (alpha.status_code, replay.status_code, beta.status_code) == (202, 200, 202), beta.text
    assert replay.json()["id"] == alpha.json()["id"] != beta.json()["id"]
    assert beta.json()["seeds"] == [2], "beta's own job, not a conflict with alpha's body"
    assert gateway.get(f"/v1/generations/{alpha.json()['id']}", headers=B).status_code == 404
    assert redis_db.llen(queue_name) == 2


def test_rate_limit_is_429_with_retry_after_per_tenant(make_gateway, redis_db, queue_name):
    with make_gateway(tenants=two_tenants(requests_per_minute=3)) as gateway:
        key = {"Idempotency-Key": f"rate-{queue_name}"}
        accepted = gateway.post("/v1/generations", json=BODY, headers={**A, **key})
        assert accepted.status_code == 202
        assert [gateway.get("/v1/models", headers=A).status_code for _ in range(2)] == [200, 200]
        limited = gateway.get("/v1/models", headers=A)
        assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["retry-after"]) <= 60
        for method, path in (("GET", f"/v1/generations/{accepted.json()['id']}"), ("POST", "/v1/generations")):
            assert gateway.request(method, path, json=BODY, headers=A).status_code == 429, (method, path)
        # a retry of the accepted request is answered, not refused
        replay = gateway.post("/v1/generations", json=BODY, headers={**A, **key})
        assert replay.status_code == 200 and replay.json()["id"] == accepted.json()["id"]
        assert gateway.get("/v1/models", headers=B).status_code == 200, "beta has its own budget"
    assert redis_db.llen(queue_name) == 1


def test_jobs_in_flight_are_limited_per_tenant(make_gateway, redis_db, queue_name):
    with make_gateway(tenants=two_tenants(max_jobs_in_flight=2)) as gateway:
        first, second = (gateway.put(f"/v1/generations/job-{i}", json=BODY, headers=A) for i in range(2))
        assert (first.status_code, second.status_code) == (202, 202)
        refused = gateway.put("/v1/generations/job-2", json=BODY, headers=A)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_jobs_in_flight"
        assert int(refused.headers["retry-after"]) >= 1
        assert gateway.put("/v1/generations/job-0", json=BODY, headers=A).status_code == 200, "a replay is answered"
        assert gateway.put("/v1/generations/job-0", json=BODY, headers=B).status_code == 202, "beta has its own count"
        # a finished job leaves the count
        assert gateway.delete("/v1/generations/job-0", headers=A).json()["status"] == "canceled"
        assert gateway.put("/v1/generations/job-2", json=BODY, headers=A).status_code == 202
        assert JobStore(redis_db, ttl_s=600).in_flight("alpha") == {
            JobStore(redis_db, ttl_s=600).internal_id("alpha", f"job-{i}") for i in (1, 2)
        }
    assert redis_db.llen(queue_name) == 4


def test_idempotency_keys_per_tenant_are_bounded(make_gateway, redis_db, queue_name):
    with make_gateway(tenants=two_tenants(), max_idempotency_keys_per_tenant="2") as gateway:
        answers = [
            gateway.post("/v1/generations", json=BODY, headers={**A, "Idempotency-Key": f"k{i}-{queue_name}"}) for i in range(3)
        ]
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert answers[2].json()["error"]["code"] == "too_many_idempotency_keys"
        assert 1 <= int(answers[2].headers["retry-after"]) <= gateway.app.state.settings.job_ttl_s
        replay = gateway.post("/v1/generations", json=BODY, headers={**A, "Idempotency-Key": f"k0-{queue_name}"})
        assert replay.status_code == 200, "the keys held still replay"
        assert gateway.post("/v1/generations", json=BODY, headers=A).status_code == 202, "no key: not bounded by it"
        beta = gateway.post("/v1/generations", json=BODY, headers={**B, "Idempotency-Key": f"k2-{queue_name}"})
        assert beta.status_code == 202
    assert redis_db.llen(queue_name) == 4


def test_metadata_is_bounded_as_compact_json(make_gateway, redis_db, queue_name):
    with make_gateway(max_metadata_bytes="64") as gateway:
        fits = {"order": "x" * 40}  # {"order":"xxx…"} is 52 bytes
        assert len(json.dumps(fits, separators=(",", ":"))) <= 64
        assert gateway.post("/v1/generations", json={**BODY, "metadata": fits}).status_code == 202
        too_big = gateway.post("/v1/generations", json={**BODY, "metadata": {"order": "é" * 40}})  # 2 bytes each in UTF-8
        assert too_big.status_code == 422, too_big.text
        error = too_big.json()["error"]
        assert error["code"] == "metadata_too_large" and error["details"]["limit_bytes"] == 64
    assert redis_db.llen(queue_name) == 1


def test_headers_are_bounded_431(make_gateway):
    with make_gateway(max_header_bytes="2048") as gateway:
        assert gateway.get("/v1/models", headers={"X-Padding": "x" * 1000}).status_code == 200
        response = gateway.get("/v1/models", headers={"X-Padding": "x" * 3000})
        assert response.status_code == 431
        assert response.json()["error"]["code"] == "headers_too_large"
        assert gateway.get("/healthz", headers={"X-Padding": "x" * 3000}).status_code == 431


def test_keys_are_configured_hashed(make_gateway):
    with make_gateway(tenants=two_tenants()) as gateway:
        assert gateway.get("/v1/models", headers={"X-API-Key": ALPHA}).status_code == 200
        assert gateway.get("/v1/models", headers={"X-API-Key": hash_key(ALPHA)}).status_code == 401, "the digest is no key"
        assert gateway.get("/v1/models", headers={"Authorization": f"Bearer {hash_key(ALPHA)}"}).status_code == 401
    plain = Settings(tenants=[{"name": "oops", "key_sha256": hash_key("x")}])
    assert find_tenant(plain, "x") is not None and find_tenant(plain, hash_key("x")) is None
    with pytest.raises(ValueError):
        Settings(tenants=[{"name": "oops", "key_sha256": "a plain key, not a digest"}])


def test_auth_off_is_loud_and_refused_in_production(make_gateway, caplog):
    with caplog.at_level(logging.WARNING):
        check_auth_mode(Settings(environment="development"), logging.getLogger("test"))
    assert "AUTH IS OFF" in caplog.text
    with pytest.raises(AuthNotConfigured, match="REALRAG_TENANTS"):
        check_auth_mode(Settings(environment="production"), logging.getLogger("test"))
    with pytest.raises(AuthNotConfigured), make_gateway(environment="production"):
        pass
    with make_gateway(environment="production", tenants=two_tenants()) as gateway:
        assert gateway.get("/v1/models", headers=A).status_code == 200


def test_tenants_add_prints_a_key_and_its_hashed_entry(capsys):
    from realrag.cli import main

    assert main(["tenants", "add", "acme", "--role", "admin"]) == 0
    out = capsys.readouterr().out.splitlines()
    key = out[0].rsplit(" ", 1)[1]
    entry = json.loads(out[-1])
    assert entry == {"name": "acme", "key_sha256": hash_key(key), "role": "admin"}
    assert key not in out[-1]
    tenant = find_tenant(Settings(tenants=[entry]), key)
    assert tenant is not None and tenant.name == "acme" and tenant.is_admin
