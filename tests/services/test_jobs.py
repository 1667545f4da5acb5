import uuid

import pytest
import redis

from services.jobs import JobNotFound, JobStore
from services.schemas import GenerationRequest, Job, JobStatus


@pytest.fixture
def store():
    return JobStore(redis.Redis(decode_responses=True), ttl_s=120)


def new_job() -> Job:
    return Job(id=f"t-{uuid.uuid4()}", model="tiny-sd", prompt="p", request=GenerationRequest(prompt="p"), request_hash="h")


def test_create_is_exclusive_and_has_a_ttl(store):
    job = new_job()
    assert store.create(job) is True
    assert store.create(job) is False
    assert 0 < store.redis.ttl(store.job_key(job.id)) <= 120
    assert store.get(job.id) == job


def test_terminal_states_are_final(store):
    job = new_job()
    store.create(job)
    store.transition(job.id, JobStatus.generating)
    done = store.transition(job.id, JobStatus.canceled)
    assert done.status is JobStatus.canceled and done.finished_at is not None
    assert store.transition(job.id, JobStatus.succeeded).status is JobStatus.canceled
    assert store.redis.ttl(store.job_key(job.id)) > 0, "updates keep the TTL"


def test_update_unknown_job_raises(store):
    with pytest.raises(JobNotFound):
        store.update("missing", lambda j: j)


def test_concurrent_updates_do_not_lose_writes(store):
    import threading

    job = new_job()
    store.create(job)

    def bump():
        for _ in range(20):
            store.update(job.id, lambda j: j.model_copy(update={"attempts": j.attempts + 1}))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(job.id).attempts == 80


def test_delivery_counter_cancel_flag_and_idempotency(store):
    job_id = f"t-{uuid.uuid4()}"
    assert [store.count_delivery(job_id) for _ in range(3)] == [1, 2, 3]
    assert not store.cancel_requested(job_id)
    store.request_cancel(job_id)
    assert store.cancel_requested(job_id)
    key = f"k-{uuid.uuid4()}"
    assert store.claim_idempotency_key(key, "a") == "a"
    assert store.claim_idempotency_key(key, "b") == "a"
    store.release_idempotency_key(key, "b")
    assert store.claim_idempotency_key(key, "c") == "a"
    store.release_idempotency_key(key, "a")
    assert store.claim_idempotency_key(key, "c") == "c"


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
    assert store.get(job.id).version == 1
    pubsub = store.redis.pubsub()
    pubsub.subscribe(JobStore.events_channel(job.id))
    try:
        started = store.transition(job.id, JobStatus.generating)
        stepped = store.update(job.id, lambda j: j.model_copy(update={"attempts": 1}))
        unchanged = store.update(job.id, lambda j: None)  # a skipped change writes nothing
        done = store.transition(job.id, JobStatus.succeeded)
        store.transition(job.id, JobStatus.failed)  # terminal states are final: no write
        assert [started.version, stepped.version, unchanged.version, done.version] == [2, 3, 3, 4]
        assert store.get(job.id) == done
        assert [Job.model_validate_json(m) for m in published(pubsub)] == [started, stepped, done]

        store.delete(job.id)
        assert published(pubsub) == [""], "deleting the record tells subscribers it is gone"
    finally:
        pubsub.close()


def test_idempotency_binding_reads_without_binding(store):
    key = f"k-{uuid.uuid4()}"
    assert store.idempotency_binding(key) is None
    assert store.claim_idempotency_key(key, "a") == "a"
    assert store.idempotency_binding(key) == "a"
    store.release_idempotency_key(key, "a")
