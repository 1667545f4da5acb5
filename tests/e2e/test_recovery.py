"""Failure drills with a real Celery worker process on a private redis-server: Redis crashes and
restarts mid-job, and a whole worker dies mid-job. The in-flight job must reach a terminal state
soon after (not after the 900 s visibility timeout), exactly once: one delivery more, one set of
outputs, one job record, nothing left in the queue.

What the Redis drill simulates: the Redis process is SIGKILLed (a crash, or a container restart)
and comes back on the same port ~8 s later with its data, kept in an append-only file fsynced on
every write. A Redis that comes back empty has lost the queue and the job records: another failure.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from services.jobs import JobStore
from services.queue import GENERATE_TASK, producer_app
from services.schemas import GenerateTask, GenerationRequest, Job, JobStatus
from services.settings import Settings
from tests.conftest import REPO
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow  # starts real processes: run with -m slow, skip with -m 'not slow'

OUTAGE_S = 8.0
JOB_STEPS = 60  # at 256x256: ~1 s of tiny-sd on an idle CPU, long enough to fail mid-job
RECOVERY_DEADLINE_S = 60.0  # the job must be terminal this long after Redis (or a worker) is back


class Drill:
    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir()
        self.redis = RedisServer(tmp_path / "redis", persist=True).start()
        self.queue = f"realrag.drill.{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "REALRAG_REDIS_URL": self.redis.url,
            "REALRAG_DATA_DIR": str(self.data),
            "REALRAG_QUEUE_NAME": self.queue,
            "REALRAG_DEVICE": "cpu",
            # a replacement child loads the model while Redis is away, as production workers do
            "REALRAG_WORKER_PRELOAD": "true",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        self.settings = Settings(redis_url=self.redis.url, data_dir=self.data, queue_name=self.queue)
        self.jobs = JobStore.from_url(self.redis.url, self.settings.job_ttl_s)
        self.workers: list[subprocess.Popen] = []

    def start_worker(self) -> subprocess.Popen:
        heartbeat = self.settings.heartbeat_path
        heartbeat.unlink(missing_ok=True)
        log = open(self.data / f"worker-{len(self.workers)}.log", "ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "generator_service", "worker", "--concurrency", "1", "--hostname", f"drill-{uuid.uuid4().hex[:6]}@%h"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.workers.append(worker)
        deadline = time.monotonic() + 120
        while not self._ready(heartbeat):
            assert worker.poll() is None and time.monotonic() < deadline, f"worker did not start; see {log.name}"
            time.sleep(0.2)
        return worker

    @staticmethod
    def _ready(heartbeat: Path) -> bool:
        beat = json.loads(heartbeat.read_text() or "{}") if heartbeat.exists() else {}
        return bool(beat.get("consuming") and beat.get("model_loaded"))

    def submit(self, steps: int) -> str:
        """What the gateway does: a queued record, then the task message sent by name with the job id."""
        job_id = f"drill-{uuid.uuid4().hex}"
        job = Job(id=job_id, model="tiny-sd", prompt="a drill", request=GenerationRequest(prompt="a drill"), request_hash="h", seeds=[7])
        assert self.jobs.create(job)
        task = GenerateTask(
            job_id=job_id, model="tiny-sd", prompt="a drill", seeds=[7], steps=steps, guidance=5.0, width=256, height=256, ip_scale=0.6
        )
        app = producer_app(self.settings)
        app.send_task(GENERATE_TASK, args=[task.model_dump(mode="json")], task_id=job_id, queue=self.queue)
        app.close()
        return job_id

    def wait(self, job_id: str, until, deadline_s: float, what: str) -> Job:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                job = self.jobs.get(job_id)
            except redis.ConnectionError:
                job = None
            if job is not None and until(job):
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: job {job_id} is {job.status if job else None} after {deadline_s:.0f}s; logs in {self.data}")
            time.sleep(0.1)

    def assert_exactly_once(self, job: Job) -> None:
        assert job.status is JobStatus.succeeded, job.error
        assert job.attempts == 2, "one delivery before the failure, one after it"
        assert len(job.outputs) == 1
        assert sorted(p.name for p in (self.settings.artifact_root / "outputs" / job.id).iterdir()) == ["0.png"]
        client = self.jobs.redis
        assert list(client.scan_iter("realrag:job:*")) == [JobStore.job_key(job.id)], "no duplicate job"
        deadline = time.monotonic() + 10  # the worker acks just after the job's final write
        while client.hlen("unacked") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.hlen("unacked") == 0 and client.llen(self.queue) == 0, "no message left to run the job again"

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        self.jobs.redis.close()
        self.redis.stop()


@pytest.fixture
def drill(tmp_path):
    running = Drill(tmp_path)
    yield running
    running.close()


def running_job(drill: Drill, job_id: str) -> Job:
    return drill.wait(job_id, lambda j: j.status is JobStatus.generating and j.progress.step >= 3, 180, "job never started")


def test_redis_crash_and_restart_mid_job_recovers_the_job_in_seconds(drill):
    drill.start_worker()
    job_id = drill.submit(steps=JOB_STEPS)
    running_job(drill, job_id)
    drill.redis.crash()
    time.sleep(OUTAGE_S)
    drill.redis.start()
    back = time.monotonic()
    final = drill.wait(job_id, lambda j: j.status.terminal, RECOVERY_DEADLINE_S, "not recovered after Redis came back")
    print(f"\nRedis drill: {OUTAGE_S:.0f}s outage; job terminal {time.monotonic() - back:.1f}s after Redis was back")
    drill.assert_exactly_once(final)


def test_a_killed_worker_s_job_is_requeued_for_another_worker(drill):
    """The whole worker (main process and child) SIGKILLed: nothing is left to requeue its message
    but the other workers' recovery sweep, once the dead worker's lease has lapsed."""
    first = drill.start_worker()
    job_id = drill.submit(steps=JOB_STEPS)
    running_job(drill, job_id)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    drill.start_worker()
    back = time.monotonic()
    final = drill.wait(job_id, lambda j: j.status.terminal, RECOVERY_DEADLINE_S, "not recovered by the new worker")
    print(f"\nworker drill: job terminal {time.monotonic() - back:.1f}s after a new worker was ready")
    drill.assert_exactly_once(final)
