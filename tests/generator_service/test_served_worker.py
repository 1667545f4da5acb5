"""A real Celery worker process and REALRAG_SERVED_MODELS / REALRAG_DEVICE: it preloads the served
model, says so in Redis (what /v1/models reads) and in its heartbeat (what readiness reads), refuses
a job for any other model without loading it, and a worker told to use a GPU it lacks fails loudly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from generator_service import heartbeat
from services.jobs import JobStore
from services.queue import GENERATE_TASK, producer_app
from services.registry import loaded_workers
from services.schemas import GenerateTask, GenerationRequest, Job, JobStatus
from services.settings import Settings
from tests.conftest import REPO
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow  # starts a real worker process


class Worker:
    def __init__(self, tmp_path: Path, **settings: str) -> None:
        self.data = tmp_path / "data"
        self.data.mkdir(exist_ok=True)
        self.redis = RedisServer(tmp_path / "redis", persist=False).start()
        self.queue = f"realrag.served.{uuid.uuid4().hex[:8]}"
        values = {"REDIS_URL": self.redis.url, "DATA_DIR": str(self.data), "QUEUE_NAME": self.queue, "DEVICE": "cpu",
                  "WORKER_PRELOAD": "true", "DEFAULT_MODEL": "tiny-sd", **settings}
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith("REALRAG_")},
                    **{f"REALRAG_{k}": v for k, v in values.items()}, "REALRAG_ENV_FILE": "", "HF_HUB_OFFLINE": "1"}
        self.settings = Settings(redis_url=self.redis.url, data_dir=self.data, queue_name=self.queue)
        self.jobs = JobStore.from_url(self.redis.url, self.settings.job_ttl_s)
        self.log = self.data / "worker.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "generator_service", "worker", "--hostname", f"served-{uuid.uuid4().hex[:6]}@%h"],
            cwd=REPO, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_for(self, condition, what: str, deadline_s: float = 180):
        deadline = time.monotonic() + deadline_s
        while not (value := condition()):
            assert time.monotonic() < deadline, f"{what}; worker log:\n{self.log.read_text()[-3000:]}"
            time.sleep(0.2)
        return value

    def probe(self, mode: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "generator_service", "probe", mode], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=120)

    def submit(self, model: str) -> str:
        job_id = f"served-{uuid.uuid4().hex}"
        request = GenerationRequest(prompt="a car", model=model)
        assert self.jobs.create(Job(id=job_id, model=model, prompt="a car", request=request, request_hash="h", seeds=[7]))
        task = GenerateTask(job_id=job_id, model=model, prompt="a car", seeds=[7], steps=2, guidance=5.0, width=64, height=64, ip_scale=0.6)
        app = producer_app(self.settings)
        app.send_task(GENERATE_TASK, args=[task.model_dump(mode="json")], task_id=job_id, queue=self.queue)
        app.close()
        return job_id

    def finished(self, job_id: str) -> Job:
        return self.wait_for(lambda: (job := self.jobs.get(job_id)) and job.status.terminal and job, f"job {job_id} did not finish")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.jobs.redis.close()
        self.redis.stop()


@pytest.fixture
def worker(tmp_path):
    started = Worker(tmp_path)
    yield started
    started.stop()


def test_the_worker_preloads_the_served_model_and_refuses_the_others(worker):
    worker.wait_for(lambda: worker.probe("--readiness").returncode == 0, "the worker never became ready")
    beat = heartbeat.read(worker.settings.heartbeat_path) or {}
    assert beat["model_loaded"] is True and beat["device"] == "cpu"
    holders = worker.wait_for(lambda: loaded_workers(worker.jobs.redis, worker.queue, "tiny-sd"), "no loaded-model record in Redis")
    assert set(holders.values()) == {"cpu"}

    refused = worker.finished(worker.submit("tiny-sdxl"))
    assert refused.status is JobStatus.failed and refused.error is not None
    assert refused.error.code == "model_not_served" and "tiny-sd" in refused.error.message
    assert loaded_workers(worker.jobs.redis, worker.queue, "tiny-sdxl") == {}, "the refused model was not loaded"

    served = worker.finished(worker.submit("tiny-sd"))
    assert served.status is JobStatus.succeeded, served.error


def test_a_worker_told_to_use_a_missing_gpu_fails_loudly(tmp_path):
    import torch

    missing = f"cuda:{torch.cuda.device_count()}"  # no such device on this machine, GPU or not
    worker = Worker(tmp_path, DEVICE=missing)
    try:
        code = worker.wait_for(lambda: worker.process.poll(), "the worker kept running without its GPU", deadline_s=120)
        assert code != 0
        log = worker.log.read_text()
        assert f"worker cannot start: DeviceUnavailable: REALRAG_DEVICE={missing}" in log
        for mode in ("--liveness", "--readiness"):
            probe = worker.probe(mode)
            assert probe.returncode == 1 and probe.stdout.startswith("worker cannot start: DeviceUnavailable"), probe.stdout
    finally:
        worker.stop()
