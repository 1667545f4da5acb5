import uuid

import pytest
import redis

from services.jobs import JobNotFound, JobStore
from services.schemas import GenerationRequest, Job, JobStatus
from tests.conftest import TEST_REDIS


@pytest.fixture
def store():
    client = redis.Redis.from_url(f"redis://{TEST_REDIS}/0", decode_responses=True)
    yield JobStore(client, ttl_s=120)
    for pattern in ("realrag:*:t-*", "realrag:*:tenant-*", "realrag:*:tenant-*:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


def new_job(tenant: str = "local", job_id: str | None = None) -> Job:
    return Job(
        id=job_id or f"t-{uuid.uuid4()}",
        internal_id=f"t-{uuid.uuid4().hex}",
        tenant=tenant,
        model="tiny-sd",
        prompt="p",
        request=GenerationRequest(prompt="p"),
        request_hash="h",
    )


def test_create_is_exclusive_and_has_a_ttl(store):
    job = new_job()
    assert store.create(job).outcome == "created"
    again = store.create(job.model_copy(update={"internal_id": "t-other"}))
    assert (again.outcome, again.internal_id) == ("exists", job.internal_id), "the client id is bound already"
    assert 0 < store.redis.ttl(store.job_key(job.internal_id)) <= 120
    assert 0 < store.redis.ttl(store.job_id_key("local", job.id)) <= 120
    assert store.get(job.internal_id) == job
    assert store.find("local", job.id) == job


def test_records_written_before_tenants_read_as_the_local_tenant_by_their_id():
    old = Job.model_validate({"id": "x", "model": "m", "prompt": "p", "request": {"prompt": "p"}, "request_hash": "h"})
    assert (old.internal_id, old.tenant) == ("x", "local")


def test_client_ids_are_per_tenant(store):
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    mine, theirs = new_job(name, "same-id"), new_job(f"{name}-b", "same-id")
    assert store.create(mine) and store.create(theirs), "the same client id in two tenants: two jobs"
    assert store.find(name, "same-id") == mine and store.find(f"{name}-b", "same-id") == theirs
    assert store.find(f"{name}-c", "same-id") is None
    assert store.owner_of_output(mine.internal_id) == name
    assert store.owner_of_output("t-unknown") is None


def test_in_flight_limit_counts_unfinished_jobs_and_prunes_expired_ones(store):
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    first, second, third = new_job(name), new_job(name), new_job(name)
    assert store.create(first, max_in_flight=2) and store.create(second, max_in_flight=2)
    assert store.create(third, max_in_flight=2).outcome == "too_many_jobs"
    store.transition(first.internal_id, JobStatus.succeeded)  # a terminal write leaves the set
    assert store.in_flight(name) == {second.internal_id}
    assert store.create(third, max_in_flight=2)
    store.redis.delete(store.job_key(second.internal_id))  # expired unfinished (a lost worker, a TTL)
    assert store.create(new_job(name), max_in_flight=2), "a record that is gone no longer counts"
    assert second.internal_id not in store.in_flight(name)


def test_idempotency_keys_are_per_tenant_and_bounded(store):
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    first = new_job(name)
    assert store.create(first, "key-1", max_idempotency_keys=2)
    replay = store.create(new_job(name), "key-1", max_idempotency_keys=2)
    assert (replay.outcome, replay.internal_id) == ("exists", first.internal_id)
    assert store.find_by_idempotency_key(name, "key-1") == (first.internal_id, first)
    assert store.find_by_idempotency_key(f"{name}-b", "key-1") is None
    assert store.create(new_job(f"{name}-b"), "key-1", max_idempotency_keys=2), "another tenant's key is independent"
    assert store.create(new_job(name), "key-2", max_idempotency_keys=2)
    refused = store.create(new_job(name), "key-3", max_idempotency_keys=2)
    assert refused.outcome == "too_many_keys" and 0 < refused.retry_after_s <= 120
    assert store.create(new_job(name), max_idempotency_keys=2), "jobs without a key are not bounded by it"
    store.delete(first, "key-1")
    assert store.find_by_idempotency_key(name, "key-1") is None and store.find(name, first.id) is None
    assert store.create(new_job(name), "key-3", max_idempotency_keys=2), "a released key frees its slot"


def test_terminal_states_are_final(store):
    job = new_job()
    store.create(job)
    store.transition(job.internal_id, JobStatus.generating)
    done = store.transition(job.internal_id, JobStatus.canceled)
    assert done.status is JobStatus.canceled and done.finished_at is not None
    assert store.transition(job.internal_id, JobStatus.succeeded).status is JobStatus.canceled
    assert store.redis.ttl(store.job_key(job.internal_id)) > 0, "updates keep the TTL"


def test_update_unknown_job_raises(store):
    with pytest.raises(JobNotFound):
        store.update("missing", lambda j: j)


def test_concurrent_updates_do_not_lose_writes(store):
    import threading

    job = new_job()
    store.create(job)

    def bump():
        for _ in range(20):
            store.update(job.internal_id, lambda j: j.model_copy(update={"attempts": j.attempts + 1}))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(job.internal_id).attempts == 80


def test_delivery_counter_and_cancel_flag(store):
    job_id = f"t-{uuid.uuid4()}"
    assert [store.count_delivery(job_id) for _ in range(3)] == [1, 2, 3]
    assert not store.cancel_requested(job_id)
    store.request_cancel(job_id)
    assert store.cancel_requested(job_id)


def published(pubsub) -> list[str]:
    """Every message waiting on a subscription (the subscribe confirmation is skipped)."""
    messages = []
    while (message := pubsub.get_message(timeout=1.0)) is not None:
        if message["type"] == "message":
            messages.append(message["data"])
    return messages


def test_every_write_bumps_the_version_and_publishes_the_record(store):
    job = new_job()
    store.create(job)
    assert store.get(job.internal_id).version == 1
    pubsub = store.redis.pubsub()
    pubsub.subscribe(JobStore.events_channel(job.internal_id))
    try:
        started = store.transition(job.internal_id, JobStatus.generating)
        stepped = store.update(job.internal_id, lambda j: j.model_copy(update={"attempts": 1}))
        unchanged = store.update(job.internal_id, lambda j: None)  # a skipped change writes nothing
        done = store.transition(job.internal_id, JobStatus.succeeded)
        store.transition(job.internal_id, JobStatus.failed)  # terminal states are final: no write
        assert [started.version, stepped.version, unchanged.version, done.version] == [2, 3, 3, 4]
        assert store.get(job.internal_id) == done
        assert [Job.model_validate_json(m) for m in published(pubsub)] == [started, stepped, done]

        store.delete(job)
        assert published(pubsub) == [""], "deleting the record tells subscribers it is gone"
    finally:
        pubsub.close()
