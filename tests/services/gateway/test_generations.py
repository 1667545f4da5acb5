"""/v1/generations: validation, job record + queue message, replay by id or Idempotency-Key,
status, cancel and events; bad input is a clear 4xx that leaves nothing behind."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.jobs import JobStore
from services.queue import GENERATE_TASK
from services.schemas import GenerateTask, Job, JobStatus

from .helpers import queued_messages

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


def job_keys(redis_db) -> set[str]:
    return set(redis_db.keys("realrag:job:*"))


def internal_id(redis_db, job_id: str) -> str:
    """The internal id of the local tenant's job `job_id` (its record, messages and outputs use it)."""
    found = JobStore(redis_db, ttl_s=600).internal_id("local", job_id)
    assert found, job_id
    return found


@pytest.mark.parametrize("body,status,code", BAD_BODIES)
def test_bad_generation_request_is_a_clear_4xx_and_leaves_nothing(gateway, corpus, redis_db, queue_name, body, status, code):
    before = job_keys(redis_db)
    response = gateway.post("/v1/generations", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert job_keys(redis_db) == before
    assert redis_db.llen(queue_name) == 0


def test_too_many_references_names_the_models_limit(gateway):
    error = gateway.post("/v1/generations", json={"prompt": "ok", "retrieval": {"top_k": 4}}).json()["error"]
    assert "at most 3" in error["message"] and "tiny-sd" in error["message"]
    unknown = gateway.post("/v1/generations", json={"prompt": "ok", "model": "nope"}).json()["error"]
    assert "tiny-sd" in unknown["details"]["available"]


def test_malformed_json_is_422(gateway):
    response = gateway.post("/v1/generations", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_unknown_job_is_404(gateway):
    for method, path in (("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/events")):
        response = gateway.request(method, f"/v1/generations/does-not-exist{path}")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == "job_not_found"


def test_create_records_the_job_and_enqueues_one_task(gateway, corpus, redis_db, queue_name):
    body = {"prompt": "a red car at night", "width": 96, "height": 64, "n": 2, "seed": 7, "retrieval": {"filter": {"object_id": "red-car"}}}
    response = gateway.post("/v1/generations", json=body)
    assert response.status_code == 202, response.text
    view = response.json()
    assert response.headers["location"] == f"/v1/generations/{view['id']}"
    assert view["status"] == "queued"
    assert view["seeds"] == [7, 8]
    assert [r["id"] for r in view["references"]] == [corpus["red-car"]["id"]]
    # signed, absolute under the request's base URL
    assert view["references"][0]["image_url"].startswith(f"http://testserver/v1/artifacts/{corpus['red-car']['image_uri']}?")
    assert view["retriever"]["kind"] == "zero-shot"
    assert not {"request_hash", "internal_id", "tenant", "worker"} & set(view)

    # the authoritative record, with a TTL, under a random internal id
    internal = internal_id(redis_db, view["id"])
    assert internal != view["id"]
    key = JobStore.job_key(internal)
    record = Job.model_validate_json(redis_db.get(key))
    assert record.status is JobStatus.queued and record.model == "tiny-sd" and record.prompt == body["prompt"]
    assert (record.id, record.internal_id, record.tenant) == (view["id"], internal, "local")
    assert 0 < redis_db.ttl(key) <= gateway.app.state.settings.job_ttl_s

    # exactly one message for the worker, by task name, with everything resolved
    [message] = queued_messages(redis_db, queue_name)
    assert message["task"] == GENERATE_TASK and message["id"] == internal
    task = GenerateTask.model_validate(message["args"][0])
    assert (task.job_id, task.model, task.width, task.height, task.seeds) == (internal, "tiny-sd", 96, 64, [7, 8])
    assert (task.steps, task.guidance) == (4, 5.0)  # tiny-sd's defaults from the registry
    assert task.reference_uris == [corpus["red-car"]["image_uri"]]
    assert task.reference_labels == ["red car"]

    fetched = gateway.get(f"/v1/generations/{view['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["id"] == view["id"] and fetched.json()["status"] == "queued"
    assert fetched.json()["progress"]["fraction"] == 0.0


def test_concurrent_submissions_are_each_enqueued_once(gateway, redis_db, queue_name):
    """Tasks that wait while a batch is sent go in the next batch (one pipeline): none lost, none twice."""
    body = {"prompt": "a red car", "retrieval": {"enabled": False}}
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda seed: gateway.post("/v1/generations", json={**body, "seed": seed}), range(48)))
    assert [r.status_code for r in responses] == [202] * 48
    internal_ids = {internal_id(redis_db, r.json()["id"]) for r in responses}
    messages = queued_messages(redis_db, queue_name)
    assert len(messages) == 48 and {m["id"] for m in messages} == internal_ids
    assert sorted(GenerateTask.model_validate(m["args"][0]).seeds[0] for m in messages) == list(range(48))


def test_retrieval_off_and_explicit_references(gateway, corpus, redis_db, queue_name):
    plain = gateway.post("/v1/generations", json={"prompt": "anything", "retrieval": {"enabled": False}}).json()
    assert plain["references"] == [] and plain["retriever"] is None
    ids = [corpus["blue-sky"]["id"], corpus["green-tree"]["id"]]
    explicit = gateway.post("/v1/generations", json={"prompt": "sky and tree", "reference_ids": ids}).json()
    assert [r["id"] for r in explicit["references"]] == ids
    assert explicit["retriever"]["kind"] == "explicit"
    tasks = [GenerateTask.model_validate(m["args"][0]) for m in queued_messages(redis_db, queue_name)]
    assert [t.reference_uris for t in tasks] == [[], [corpus["blue-sky"]["image_uri"], corpus["green-tree"]["image_uri"]]]


def test_idempotency_key_replays_the_same_job(gateway, corpus, redis_db, queue_name):
    headers = {"Idempotency-Key": f"idem-{queue_name}"}
    body = {"prompt": "a green tree", "seed": 1}
    first = gateway.post("/v1/generations", json=body, headers=headers)
    again = gateway.post("/v1/generations", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    assert redis_db.llen(queue_name) == 1, "a replay enqueues nothing"

    conflict = gateway.post("/v1/generations", json={**body, "seed": 2}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert redis_db.llen(queue_name) == 1


def test_put_with_client_id_is_idempotent_and_conflicts_on_a_different_body(gateway, corpus, redis_db, queue_name):
    job_id = f"client-{queue_name.rsplit('.', 1)[-1]}"
    body = {"prompt": "a blue sky", "seed": 3}
    created = gateway.put(f"/v1/generations/{job_id}", json=body)
    assert created.status_code == 202 and created.json()["id"] == job_id
    replay = gateway.put(f"/v1/generations/{job_id}", json=body)
    assert replay.status_code == 200 and replay.json()["created_at"] == created.json()["created_at"]
    conflict = gateway.put(f"/v1/generations/{job_id}", json={**body, "prompt": "something else"})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"
    assert [m["id"] for m in queued_messages(redis_db, queue_name)] == [internal_id(redis_db, job_id)]

    invalid = gateway.put("/v1/generations/not.a.valid.id", json=body)
    assert invalid.status_code == 422 and invalid.json()["error"]["code"] == "invalid_job_id"


def test_cancel_a_queued_job(gateway, corpus, redis_db):
    job_id = gateway.post("/v1/generations", json={"prompt": "cancel me"}).json()["id"]
    canceled = gateway.delete(f"/v1/generations/{job_id}")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled" and canceled.json()["cancel_requested"] is True
    assert canceled.json()["finished_at"] is not None
    assert redis_db.exists(JobStore.cancel_key(internal_id(redis_db, job_id))), "the worker skips a flagged job it later receives"
    # idempotent, and the POST alias answers the same
    again = gateway.post(f"/v1/generations/{job_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "canceled"
    assert again.json()["finished_at"] == canceled.json()["finished_at"]


def test_cancel_a_running_job_flags_it_for_the_worker(gateway, corpus, redis_db):
    job_id = gateway.post("/v1/generations", json={"prompt": "running"}).json()["id"]
    internal = internal_id(redis_db, job_id)
    JobStore(redis_db, ttl_s=600).transition(internal, JobStatus.generating)  # what the worker does when it starts
    response = gateway.delete(f"/v1/generations/{job_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "generating", "a running job stops at its next step, not here"
    assert response.json()["cancel_requested"] is True
    assert redis_db.exists(JobStore.cancel_key(internal))


def test_cancel_of_a_finished_job_changes_nothing(gateway, corpus, redis_db):
    job_id = gateway.post("/v1/generations", json={"prompt": "done"}).json()["id"]
    internal = internal_id(redis_db, job_id)
    JobStore(redis_db, ttl_s=600).transition(internal, JobStatus.succeeded)
    response = gateway.delete(f"/v1/generations/{job_id}")
    assert response.json()["status"] == "succeeded" and response.json()["cancel_requested"] is False
    assert not redis_db.exists(JobStore.cancel_key(internal))


def test_events_stream_ends_with_the_terminal_state(gateway, corpus):
    job_id = gateway.post("/v1/generations", json={"prompt": "stream"}).json()["id"]
    gateway.delete(f"/v1/generations/{job_id}")
    response = gateway.get(f"/v1/generations/{job_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = response.text.splitlines()
    assert lines[0].startswith("id: ") and lines[1] == "event: canceled" and lines[2].startswith("data: {")
    assert json.loads(lines[2].removeprefix("data: "))["id"] == job_id
    assert lines[3:] == [""], "one event: the terminal state, then the stream ends"


def test_queue_full_is_429_with_retry_after(make_gateway, corpus, redis_db, queue_name):
    with make_gateway(max_queue_depth="1") as gateway:
        assert gateway.post("/v1/generations", json={"prompt": "first"}).status_code == 202
        response = gateway.post("/v1/generations", json={"prompt": "second"})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "queue_full"
    assert response.headers["retry-after"] == "10"
    assert redis_db.llen(queue_name) == 1


def test_retriever_unreachable_is_503_and_no_job_is_left(make_gateway, redis_db, queue_name):
    from realrag.stack import free_port

    key = f"k-503-{queue_name}"
    before = job_keys(redis_db)
    with make_gateway(retriever_url=f"http://127.0.0.1:{free_port()}") as gateway:
        response = gateway.post("/v1/generations", json={"prompt": "ok", "seed": 1}, headers={"Idempotency-Key": key})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "retriever_unavailable"
        # nothing was lost or half-created: no record, no message, and the key can be used again
        assert job_keys(redis_db) == before
        assert redis_db.llen(queue_name) == 0
        assert redis_db.get(JobStore.idempotency_key("local", key)) is None
        assert not redis_db.keys("realrag:jobid:*") and not redis_db.zcard(JobStore.idempotency_keys_key("local"))
        # retrieval off needs no retriever: the same key now creates a job
        ok = gateway.post("/v1/generations", json={"prompt": "ok", "retrieval": {"enabled": False}}, headers={"Idempotency-Key": key})
        assert ok.status_code == 202


def test_redis_unreachable_is_503(make_gateway):
    from realrag.stack import free_port

    with make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0") as gateway:
        response = gateway.post("/v1/generations", json={"prompt": "ok"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] in ("redis_unavailable", "broker_unavailable")
        assert "Redis" in response.json()["error"]["message"]
        assert gateway.get("/v1/generations/x").status_code == 503
        assert gateway.get("/v1/generations/x").json()["error"]["code"] == "redis_unavailable"
