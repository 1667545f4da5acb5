"""Recovery of jobs whose worker lost Redis or died (generator_service/recovery.py), on a private
redis-server, with real kombu messages left unacked by a consumer process that was SIGKILLed."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid

import pytest
import redis

from generator_service.recovery import Recovery, lease_key, leased_key
from generator_service.runner import run_job
from services.jobs import JobStore
from services.queue import GENERATE_TASK, producer_app
from services.schemas import GenerateTask, GenerationRequest, Job, JobStatus
from services.settings import Settings
from tests.conftest import REPO
from tests.redis_server import RedisServer

LEASE_S = 600.0  # the sweepers' own lease: long, so that only what a test does makes a lease lapse
VISIBILITY_S = 900

# A worker that takes one message with a late ack, leases it (unless the lease is 0: a worker that
# does not lease, e.g. an older version) and is SIGKILLed before acking it.
TAKE_LEASE_AND_DIE = """
import os, signal, sys
from generator_service.recovery import Recovery
from services.queue import producer_app
from services.settings import Settings
url, queue, lease_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
app = producer_app(Settings(redis_url=url, queue_name=queue))
message = app.amqp.queues[queue](app.connection_for_read().channel()).get(no_ack=False)
tag = message.delivery_tag
if lease_s:
    Recovery(app.connection_for_write, queue, "realrag.generate", lease_s, "dying-worker", 900, held=lambda: {tag}).run_once()
print(tag, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), persist=False).start()
    yield server
    server.stop()


@pytest.fixture
def queue() -> str:
    return f"recovery.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def app(broker, queue):
    return producer_app(Settings(redis_url=broker.url, queue_name=queue))


@pytest.fixture
def client(broker):
    with redis.Redis.from_url(broker.url, decode_responses=True) as c:
        yield c


def orphan(app, url: str, queue: str, lease_s: float, task: str = GENERATE_TASK) -> tuple[str, str]:
    """Send a job message that a worker takes, leases for `lease_s` and dies on; (job id, delivery tag)."""
    job_id = f"job-{uuid.uuid4().hex}"
    app.send_task(task, args=[{"job_id": job_id}], task_id=job_id, queue=queue)
    taken = subprocess.run(
        [sys.executable, "-c", TAKE_LEASE_AND_DIE, url, queue, str(lease_s)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert taken.returncode == -9, taken.stderr
    return job_id, taken.stdout.strip()


def wait_lease_lapsed(client, tag: str) -> None:
    for _ in range(200):
        if not client.exists(lease_key(tag)):
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"the lease on {tag} did not expire")


def sweeper(app, queue: str, owner: str = "sweeper", held=lambda: set(), **kwargs) -> Recovery:
    return Recovery(app.connection_for_write, queue, GENERATE_TASK, LEASE_S, owner, VISIBILITY_S, held=held, **kwargs)


def queued_task_ids(client, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange(queue, 0, -1)]


def test_a_dead_workers_job_is_requeued_once_its_lease_lapses(app, broker, queue, client):
    job_id, tag = orphan(app, broker.url, queue, lease_s=1.0)
    assert client.hexists("unacked", tag) and queued_task_ids(client, queue) == []
    assert client.get(lease_key(tag)) == "dying-worker" and client.exists(leased_key(tag))
    recovery = sweeper(app, queue)
    try:
        assert recovery.run_once() == [], "a live lease: the job is its worker's"
        wait_lease_lapsed(client, tag)
        assert recovery.run_once() == [job_id]
        assert queued_task_ids(client, queue) == [job_id], "the same message (task id = job id) is back in the queue"
        assert not client.hexists("unacked", tag) and not client.exists(leased_key(tag))
        assert recovery.run_once() == [], "nothing is requeued twice"
        assert queued_task_ids(client, queue) == [job_id]
    finally:
        recovery.close()


def test_a_delivery_never_leased_is_left_to_the_visibility_timeout(app, broker, queue, client):
    """A worker that does not lease (an older version mid-upgrade) is never raced by the sweep."""
    _, tag = orphan(app, broker.url, queue, lease_s=0)
    recovery = sweeper(app, queue)
    try:
        assert recovery.run_once() == []
    finally:
        recovery.close()
    assert client.hexists("unacked", tag) and queued_task_ids(client, queue) == []


def test_a_worker_leases_what_it_holds_and_requeues_what_it_lost_at_once(app, broker, queue, client):
    """The reconnect case: the worker's own delivery, no longer held (its connection dropped and
    Celery terminated the task) yet still unacked, is requeued without waiting for its lease."""
    job_id, tag = orphan(app, broker.url, queue, lease_s=0)
    holding = {tag}
    recovery = sweeper(app, queue, owner="worker-a:7", held=lambda: set(holding), settle_s=0.0)
    try:
        assert recovery.run_once() == []
        assert client.get(lease_key(tag)) == "worker-a:7"
        assert 0 < client.pttl(lease_key(tag)) <= LEASE_S * 1000
        holding.clear()
        assert recovery.run_once() == [job_id]
        assert queued_task_ids(client, queue) == [job_id]
        assert not client.exists(lease_key(tag)), "the spent delivery's lease is dropped"
    finally:
        recovery.close()


def test_another_worker_leaves_a_released_delivery_alone_while_its_lease_runs(app, broker, queue, client):
    job_id, tag = orphan(app, broker.url, queue, lease_s=0)
    holding = {tag}
    owner = sweeper(app, queue, owner="worker-a:7", held=lambda: set(holding))  # settles for a cycle
    other = sweeper(app, queue, owner="worker-b:8")
    try:
        assert owner.run_once() == []
        holding.clear()
        assert owner.run_once() == [], "a released delivery gets a cycle for its ack to land"
        assert other.run_once() == [], "the lease still runs"
        assert client.hexists("unacked", tag)
    finally:
        owner.close()
        other.close()


def test_concurrent_sweepers_requeue_an_orphan_exactly_once(app, broker, queue, client):
    job_id, tag = orphan(app, broker.url, queue, lease_s=1.0)
    wait_lease_lapsed(client, tag)
    sweepers = [sweeper(app, queue, owner=f"sweeper-{i}") for i in range(4)]
    start = threading.Barrier(len(sweepers))
    results: list[list[str]] = []

    def sweep(recovery: Recovery) -> None:
        start.wait()
        results.append(recovery.run_once())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        for recovery in sweepers:
            recovery.close()
    assert sorted(results, key=len) == [[], [], [], [job_id]]
    assert queued_task_ids(client, queue) == [job_id]


def test_other_queues_and_other_tasks_are_not_touched(app, broker, queue, client):
    elsewhere = producer_app(Settings(redis_url=broker.url, queue_name="someone.else"))
    _, other_queue_tag = orphan(elsewhere, broker.url, "someone.else", lease_s=1.0)
    _, other_task_tag = orphan(app, broker.url, queue, lease_s=1.0, task="realrag.not-a-generation")
    for tag in (other_queue_tag, other_task_tag):
        wait_lease_lapsed(client, tag)
    recovery = sweeper(app, queue)
    try:
        assert recovery.run_once() == []
    finally:
        recovery.close()
    assert client.hexists("unacked", other_queue_tag) and client.hexists("unacked", other_task_tag)


def test_a_cycle_that_meets_a_dead_broker_fails_and_the_next_recovers(tmp_path, queue):
    server = RedisServer(tmp_path / "redis", persist=True).start()
    app = producer_app(Settings(redis_url=server.url, queue_name=queue))
    recovery = sweeper(app, queue)
    try:
        job_id, tag = orphan(app, server.url, queue, lease_s=1.0)
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            wait_lease_lapsed(client, tag)
        server.crash()
        with pytest.raises(redis.ConnectionError):
            recovery.run_once()
        recovery.close()  # what the loop does after a failed cycle
        server.start()
        assert recovery.run_once() == [job_id]
    finally:
        recovery.close()
        server.stop()


def test_run_job_leaves_the_job_to_redelivery_when_redis_goes_away(tmp_path):
    """A Redis crash mid-generation is no verdict on the job: run_job raises (the task then requeues
    the message) and the record still says `generating`, never `failed`."""
    server = RedisServer(tmp_path / "redis", persist=True).start()
    settings = Settings(data_dir=tmp_path, redis_url=server.url, device="cpu")
    jobs = JobStore.from_url(server.url, settings.job_ttl_s)
    job_id = f"job-{uuid.uuid4().hex}"
    job = Job(id=job_id, model="tiny-sd", prompt="x", request=GenerationRequest(prompt="x"), request_hash="h", seeds=[1])
    assert jobs.create(job)
    task = GenerateTask(
        job_id=job_id, model="tiny-sd", prompt="x", seeds=[1], steps=900, guidance=5.0, width=128, height=128, ip_scale=0.6
    )

    crashed = threading.Event()

    def crash_on_first_progress() -> None:
        with redis.Redis.from_url(server.url) as probe:
            while not crashed.is_set():
                raw = probe.get(JobStore.job_key(job_id))
                if raw and Job.model_validate_json(raw).progress.step >= 1:
                    server.crash()
                    crashed.set()
                    return
                threading.Event().wait(0.02)

    watcher = threading.Thread(target=crash_on_first_progress, daemon=True)
    watcher.start()
    try:
        with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
            run_job(task, jobs, settings)
        watcher.join(timeout=30)
        assert crashed.is_set()
        server.start()  # the same data: Redis restarted, not wiped
        after = jobs.get(job_id)
        assert after is not None and after.status is JobStatus.generating and after.error is None, after
        assert not (settings.artifact_root / "outputs" / job_id).exists()
    finally:
        crashed.set()
        server.stop()
