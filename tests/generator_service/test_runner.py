"""run_job without Celery: the tiny-sd generator on CPU, the machine's Redis, a tmp artefact store."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image

from generator_service import heartbeat
from generator_service.runner import run_job
from services.artifacts import LocalArtifactStore
from services.jobs import JobStore
from services.schemas import GenerateTask, GenerationRequest, Job, JobStatus
from services.settings import Settings
from tests.conftest import TEST_REDIS, png_bytes

REDIS_URL = f"redis://{TEST_REDIS}/14"  # a database of its own; every key a test makes is deleted


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, redis_url=REDIS_URL, device="cpu", max_deliveries=2)


JOB_PREFIX = f"runner-{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def jobs(settings):
    store = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    yield store
    for key in store.redis.scan_iter(f"realrag:*:{JOB_PREFIX}*"):  # job records, cancel flags, delivery counters
        store.redis.delete(key)
    store.redis.close()


def new_job(jobs: JobStore, **task_fields) -> GenerateTask:
    """A job as the gateway leaves it (the queued record in Redis) and the task message it sent."""
    fields = {"model": "tiny-sd", "prompt": "a red car", "seeds": [3, 4], "steps": 3, "guidance": 5.0, "width": 64, "height": 48}
    fields = {"ip_scale": 0.6, **fields, **task_fields}
    job_id = f"{JOB_PREFIX}{uuid.uuid4().hex}"
    request = GenerationRequest(prompt=fields["prompt"])
    job = Job(id=job_id, model=fields["model"], prompt=fields["prompt"], request=request, request_hash="h", seeds=fields["seeds"])
    assert jobs.create(job)
    return GenerateTask(job_id=job_id, **fields)


def output_files(settings: Settings, job_id: str) -> list[str]:
    folder = settings.artifact_root / "outputs" / job_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_job_succeeds_with_pngs_of_the_requested_size(settings, jobs):
    store = LocalArtifactStore(settings.artifact_root)
    reference = store.put("corpus/ref.png", png_bytes(Image.new("RGB", (40, 40), (200, 20, 20))))
    task = new_job(jobs, reference_uris=[reference], reference_labels=["red car"])

    assert run_job(task, jobs, settings) is JobStatus.succeeded
    job = jobs.get(task.job_id)
    assert job.status is JobStatus.succeeded and job.error is None
    assert [(o.index, o.seed, o.width, o.height) for o in job.outputs] == [(0, 3, 64, 48), (1, 4, 64, 48)]
    for out in job.outputs:
        assert out.uri == f"outputs/{task.job_id}/{out.index}.png"
        image = Image.open(io.BytesIO(store.get(out.uri)))
        assert image.format == "PNG" and image.size == (64, 48)
    assert (job.progress.step, job.progress.total) == (3, 3) and job.progress.fraction == 1.0
    assert job.attempts == 1 and job.worker and job.started_at <= job.finished_at
    timings = job.timings
    assert None not in (timings.queue_ms, timings.load_ms, timings.generation_ms, timings.store_ms, timings.total_ms)
    assert heartbeat.read(settings.heartbeat_path)["model_loaded"] is True


def test_redelivered_finished_job_is_not_run_again(settings, jobs):
    task = new_job(jobs, steps=1, seeds=[1])
    assert run_job(task, jobs, settings) is JobStatus.succeeded
    first = jobs.get(task.job_id)
    assert run_job(task, jobs, settings) is JobStatus.succeeded
    assert jobs.get(task.job_id) == first, "a duplicate delivery changes nothing"


def test_job_canceled_before_it_starts_stores_nothing(settings, jobs):
    task = new_job(jobs)
    jobs.request_cancel(task.job_id)
    assert run_job(task, jobs, settings) is JobStatus.canceled
    job = jobs.get(task.job_id)
    assert job.status is JobStatus.canceled and job.outputs == [] and job.started_at is None
    assert output_files(settings, task.job_id) == []


class CancelAfterFirstProgress(JobStore):
    """The real store; the first progress write is followed by a client's cancel, as a DELETE
    arriving while the job runs would (a fixed point in the run instead of a race)."""

    def update(self, job_id, change):
        job = super().update(job_id, change)
        if job.status is JobStatus.generating and job.progress.step >= 1:
            self.request_cancel(job_id)
        return job


def test_job_canceled_while_generating_stops_at_the_next_step_and_stores_nothing(settings, jobs):
    task = new_job(jobs, steps=4)
    canceling = CancelAfterFirstProgress(jobs.redis, jobs.ttl_s)
    assert run_job(task, canceling, settings) is JobStatus.canceled
    job = jobs.get(task.job_id)
    assert job.status is JobStatus.canceled and job.outputs == [] and job.finished_at is not None
    assert (job.progress.step, job.progress.total) == (1, 4), "progress was recorded up to the cancel"
    assert output_files(settings, task.job_id) == []


def test_unknown_or_expired_job_is_dropped(settings, jobs):
    fields = {"model": "tiny-sd", "prompt": "x", "seeds": [1], "steps": 1, "guidance": 1.0, "width": 64, "height": 64, "ip_scale": 0.0}
    task = GenerateTask(job_id=f"{JOB_PREFIX}gone", **fields)
    assert run_job(task, jobs, settings) is None
    assert jobs.get(task.job_id) is None
    assert not jobs.redis.exists(JobStore.deliveries_key(task.job_id))
    assert output_files(settings, task.job_id) == []


def test_redelivery_cap_fails_the_job(settings, jobs):
    task = new_job(jobs)
    for _ in range(settings.max_deliveries):  # earlier deliveries whose worker died mid-job
        jobs.count_delivery(task.job_id)
    assert run_job(task, jobs, settings) is JobStatus.failed
    job = jobs.get(task.job_id)
    assert job.error.code == "redelivery_cap" and str(settings.max_deliveries + 1) in job.error.message
    assert output_files(settings, task.job_id) == []


def test_inputs_the_family_refuses_fail_as_invalid_request(settings, jobs):
    task = new_job(jobs, width=60)  # not a multiple of the VAE's 8
    assert run_job(task, jobs, settings) is JobStatus.failed
    job = jobs.get(task.job_id)
    assert job.error.code == "invalid_request" and "width=60" in job.error.message
    assert job.outputs == [] and output_files(settings, task.job_id) == []


def test_unknown_model_fails_as_generation_error(settings, jobs):
    task = new_job(jobs, model="no-such-model")
    assert run_job(task, jobs, settings) is JobStatus.failed
    job = jobs.get(task.job_id)
    assert job.error.code == "generation_error" and "KeyError" in job.error.message
