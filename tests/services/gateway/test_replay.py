"""A retry of an accepted request is answered with its job even when the queue is full: the
idempotent replay (same Idempotency-Key or same PUT id, same body) comes before the 429 check."""

from __future__ import annotations

from services.jobs import JobStore

from .helpers import queued_messages


def test_replays_are_answered_before_the_queue_full_check(make_gateway, corpus, redis_db, queue_name):
    suffix = queue_name.rsplit(".", 1)[-1]
    keyed = {"prompt": "accepted with a key", "seed": 1}
    headers = {"Idempotency-Key": f"replay-{suffix}"}
    put_id, put_body = f"replay-{suffix}", {"prompt": "accepted with my own id", "seed": 2}

    with make_gateway(max_queue_depth="2") as gateway:
        first = gateway.post("/v1/generations", json=keyed, headers=headers)
        second = gateway.put(f"/v1/generations/{put_id}", json=put_body)
        assert (first.status_code, second.status_code) == (202, 202)
        full = gateway.post("/v1/generations", json={"prompt": "one too many"})
        assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full", "the queue is full"

        replay_keyed = gateway.post("/v1/generations", json=keyed, headers=headers)
        replay_put = gateway.put(f"/v1/generations/{put_id}", json=put_body)
        assert replay_keyed.status_code == 200 and replay_keyed.json()["id"] == first.json()["id"]
        assert replay_keyed.headers["location"] == f"/v1/generations/{first.json()['id']}"
        assert replay_put.status_code == 200 and replay_put.json()["id"] == put_id
        assert replay_put.json()["created_at"] == second.json()["created_at"]

        # the same key or id with another body is the client's mistake, whatever the queue says
        other_body = gateway.post("/v1/generations", json={**keyed, "seed": 9}, headers=headers)
        assert other_body.status_code == 409 and other_body.json()["error"]["code"] == "idempotency_conflict"
        other_put = gateway.put(f"/v1/generations/{put_id}", json={**put_body, "seed": 9})
        assert other_put.status_code == 409 and other_put.json()["error"]["code"] == "idempotency_conflict"

    store = JobStore(redis_db, ttl_s=600)
    queued = [store.internal_id("local", job_id) for job_id in (first.json()["id"], put_id)]
    assert [m["id"] for m in queued_messages(redis_db, queue_name)] == queued, "nothing enqueued twice"
