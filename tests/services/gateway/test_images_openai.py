"""OpenAI-Images-compatible POST /v1/images/generations, driven by the official ``openai`` SDK.

The gateway runs under uvicorn on a loopback port (real HTTP, as the SDK's users reach it). Where a
job has to run, a thread takes the gateway's Celery messages off the test queue and calls the
worker's real job runner (tiny-sd on CPU), as the Celery task does. The SDK keeps its default
automatic retries (max_retries=2) unless a test says otherwise: the point is that they never submit
a second job.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import openai
import pytest
import redis
from openai.types import ImagesResponse
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from services.jobs import JobStore
from services.schemas import Job, JobStatus
from services.settings import Settings
from tests.conftest import TEST_REDIS

from .helpers import clean_redis, decode_task, environment, queued_messages, serve_in_thread, tenants_setting


@dataclass
class Served:
    url: str
    settings: Settings
    tasks_run: list[str] = field(default_factory=list)

    def client(self, api_key: str = "unused", **options) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, **options)


@contextmanager
def _worker(served: Served) -> Iterator[None]:
    """A one-thread stand-in for the Celery worker process: the same run_job on the same messages."""
    from generator_service.runner import run_job

    settings = served.settings
    jobs = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    stop, errors = threading.Event(), []

    def loop() -> None:
        while not stop.is_set():
            item = jobs.redis.brpop([settings.queue_name], timeout=0.2)
            if item is None:
                continue
            task = decode_task(item[1])
            job = jobs.get(task.job_id)  # the task names the internal id; tests compare client-facing ids
            served.tasks_run.append(job.id if job else task.job_id)
            try:
                run_job(task, jobs, settings)
            except Exception as exc:  # surfaced by the test, not lost in the thread
                errors.append(exc)

    thread = threading.Thread(target=loop, name="test-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
        jobs.redis.close()
    assert errors == []


# A database of its own: the other gateway tests clean up db 13 by deleting every key that appeared
# during a test, which would take this module's job records along when two sessions run at once.
REDIS_URL = f"redis://{TEST_REDIS}/11"


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    """This module's database; the keys a test creates go after it."""
    with clean_redis(REDIS_URL) as client:
        yield client


@pytest.fixture
def serve(retriever_url, redis_db, queue_name):
    """serve(worker=True, **settings) -> the gateway under uvicorn with these REALRAG_* settings."""

    @contextmanager
    def make(worker: bool = False, **settings: str) -> Iterator[Served]:
        values = {"REALRAG_RETRIEVER_URL": retriever_url, "REALRAG_QUEUE_NAME": queue_name, "REALRAG_REDIS_URL": REDIS_URL}
        values.update({f"REALRAG_{name.upper()}": value for name, value in settings.items()})
        with environment(values):
            from services.gateway.app import app

            with serve_in_thread(app) as url:
                served = Served(url, app.state.settings)
                if worker:
                    with _worker(served):
                        yield served
                else:
                    yield served

    return make


# Jobs are counted on this test's own queue (each created job is exactly one message there) and by
# the stand-in worker, never by scanning all of Redis.
def _queued_jobs(redis_db, queue_name: str) -> list[Job]:
    return [Job.model_validate_json(redis_db.get(JobStore.job_key(m["id"]))) for m in queued_messages(redis_db, queue_name)]


# --- success ------------------------------------------------------------------------------


def test_url_response_gives_absolute_urls_of_pngs_of_the_requested_size(serve, corpus, redis_db):
    with serve(worker=True, sync_wait_timeout_s="120") as served:
        result = served.client().images.generate(prompt="a red car", size="64x48", n=2, extra_body={"seed": 11})

        assert isinstance(result, ImagesResponse) and isinstance(result.created, int)
        assert result.size == "64x48" and result.output_format == "png" and result.usage is None
        assert len(result.data or []) == 2
        for image in result.data or []:
            assert image.url and image.url.startswith(f"{served.url}/v1/artifacts/outputs/")
            png = httpx.get(image.url)  # absolute: fetched as is, no base URL needed
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(png.content)).size == (64, 48)
        realrag = result.model_extra["realrag"]  # RealRAG's own fields parse as extras
        assert realrag["seeds"] == [11, 12] and len(realrag["references"]) == 1

        # the public job view names no worker; the Redis record keeps it
        view = httpx.get(f"{served.url}/v1/generations/{realrag['job_id']}").json()
    assert view["status"] == "succeeded" and "worker" not in view and "request_hash" not in view
    assert [o["uri"] for o in view["outputs"]] == [d.url.split("/v1/artifacts/")[1].split("?")[0] for d in result.data or []]
    record = JobStore(redis_db, ttl_s=600).find("local", realrag["job_id"])
    assert record is not None
    assert record.worker and record.worker.rsplit(":", 1)[1].isdigit()


def test_b64_json_with_size_auto_and_an_idempotent_replay(serve, redis_db):
    with serve(worker=True, sync_wait_timeout_s="120") as served:
        client = served.client()
        request = {
            "prompt": "a blue sky",
            "size": "auto",  # the model's default size: 64x64 for tiny-sd
            "response_format": "b64_json",
            "extra_body": {"seed": 5, "retrieval": {"enabled": False}},
            "extra_headers": {"Idempotency-Key": f"openai-{served.settings.queue_name}"},
        }
        first = client.images.generate(**request)
        again = client.images.generate(**request)  # the same key: the finished job, not a second run

    [image] = first.data or []
    png = base64.b64decode(image.b64_json or "")
    decoded = Image.open(io.BytesIO(png))
    assert decoded.format == "PNG" and decoded.size == (64, 64) and first.size == "64x64"
    assert image.url is None and first.model_extra["realrag"]["references"] == []
    assert again.model_extra["realrag"]["job_id"] == first.model_extra["realrag"]["job_id"]
    assert base64.b64decode((again.data or [])[0].b64_json or "") == png
    assert served.tasks_run == [first.model_extra["realrag"]["job_id"]]


def test_public_base_url_prefixes_the_urls(serve, redis_db):
    with serve(worker=True, sync_wait_timeout_s="120", public_base_url="https://images.example.test/rr/") as served:
        result = served.client().images.generate(prompt="a green tree", extra_body={"retrieval": {"enabled": False}})
    [image] = result.data or []
    assert image.url and image.url.startswith("https://images.example.test/rr/v1/artifacts/outputs/")


# --- errors, mapped to the SDK's classes ------------------------------------------------------


@pytest.mark.parametrize(
    "request_fields,code,param",
    [
        ({"prompt": "ok", "n": 9}, "n_out_of_range", "n"),
        ({"prompt": "ok", "size": "1x1"}, "invalid_size", "size"),
        ({"prompt": "ok", "size": "big"}, "invalid_size", "size"),
        ({"prompt": "ok", "n": 0}, "n_out_of_range", "n"),
        ({"prompt": ""}, "empty_prompt", "prompt"),
        ({"prompt": " "}, "empty_prompt", "prompt"),
        ({"prompt": "ok", "model": "no-such-model"}, "unknown_model", "model"),
        ({"prompt": "ok", "model": "sd15"}, "model_not_served", "model"),  # known, but not REALRAG_SERVED_MODELS
        ({"prompt": "ok", "style": "vivid"}, "invalid_request", "style"),  # refused, not ignored
        ({"prompt": "ok", "response_format": "jpeg"}, "invalid_request", "response_format"),
        ({"prompt": "ok", "extra_body": {"seed": -1}}, "invalid_request", "seed"),
        ({"prompt": "ok", "extra_body": {"retrieval": {"top_k": 99}}}, "too_many_references", "retrieval"),
    ],
)
def test_bad_input_is_bad_request_and_creates_nothing(serve, redis_db, queue_name, request_fields, code, param):
    with serve() as served, pytest.raises(openai.BadRequestError) as raised:
        served.client().images.generate(**request_fields)
    error = raised.value
    assert error.status_code == 400 and error.code == code and error.param == param
    assert error.type == "invalid_request_error" and error.message
    assert redis_db.llen(queue_name) == 0


@pytest.mark.parametrize("name", ["prompt", "negative_prompt", "user"])
def test_lone_surrogates_are_bad_request(serve, redis_db, queue_name, name):
    # the SDK cannot even encode one; other clients send JSON's escape, as json.dumps does
    body = json.dumps({"prompt": "ok", name: "a \ud800 b"})
    assert "\\ud800" in body
    with serve() as served:
        response = httpx.post(f"{served.url}/v1/images/generations", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_unicode" and response.json()["error"]["param"] == name
    assert redis_db.llen(queue_name) == 0


def test_wrong_api_key_is_authentication_error(serve, redis_db, queue_name):
    with serve(tenants=tenants_setting(("alpha", "sk-right"))) as served:
        with pytest.raises(openai.AuthenticationError) as raised:
            served.client("sk-wrong").images.generate(prompt="a red car")
        assert raised.value.status_code == 401 and raised.value.code == "unauthorized"
        with pytest.raises(openai.BadRequestError):  # the right key gets past auth, to the limits
            served.client("sk-right").images.generate(prompt="a red car", n=99)
    assert redis_db.llen(queue_name) == 0


def test_image_operations_we_do_not_serve_are_not_found(serve):
    with serve() as served, pytest.raises(openai.NotFoundError) as raised:
        served.client().images.edit(image=("a.png", b"not read", "image/png"), prompt="make it blue")
    assert raised.value.status_code == 404


def test_full_queue_is_rate_limit_error_with_retry_after(serve, redis_db, queue_name):
    redis_db.lpush(queue_name, "a message nobody consumes")
    with serve(max_queue_depth="1") as served, pytest.raises(openai.RateLimitError) as raised:
        served.client(max_retries=0).images.generate(prompt="a red car", extra_body={"retrieval": {"enabled": False}})
    assert raised.value.status_code == 429 and raised.value.code == "queue_full"
    assert raised.value.response.headers["retry-after"]
    assert redis_db.llen(queue_name) == 1  # the placeholder only


# --- a job exists: the SDK's retries must not submit another -----------------------------------


def test_failed_generation_is_one_job_despite_the_sdks_retries(serve, redis_db, tmp_path):
    """A model whose weights are missing fails in the worker; the SDK (max_retries=2) gets one 500."""
    (tmp_path / "weights").mkdir()
    models = tmp_path / "models.toml"
    models.write_text(
        f'[models.broken-sd]\nfamily = "sd"\nsource = "{tmp_path / "weights"}"\ndefault_steps = 2\n'
        "default_width = 64\ndefault_height = 64\n"
    )
    with serve(worker=True, sync_wait_timeout_s="120", models_file=str(models), served_models='["tiny-sd", "broken-sd"]') as served:
        client = served.client()
        assert client.max_retries == 2
        with pytest.raises(openai.InternalServerError) as raised:
            client.images.generate(prompt="a red car", model="broken-sd", extra_body={"retrieval": {"enabled": False}})

    error = raised.value
    assert error.status_code == 500 and error.code == "generation_failed" and error.type == "server_error"
    assert error.response.headers["x-should-retry"] == "false"
    assert isinstance(error.body, dict) and error.body["details"]["reason"] == "generation_error"
    # one job ran, once: the worker got one message, and no other was left queued
    assert served.tasks_run == [error.body["details"]["job_id"]] and redis_db.llen(served.settings.queue_name) == 0
    job = JobStore(redis_db, ttl_s=600).find("local", served.tasks_run[0])
    assert job is not None and job.status is JobStatus.failed and job.error and job.error.code == "generation_error"


def test_job_canceled_while_the_call_waits_is_a_conflict(serve, redis_db, queue_name):
    with serve(sync_wait_timeout_s="120") as served, ThreadPoolExecutor(1) as pool:
        call = pool.submit(served.client().images.generate, prompt="a red car", extra_body={"retrieval": {"enabled": False}})
        while not (jobs := _queued_jobs(redis_db, queue_name)):  # no worker: the job stays queued
            assert not call.done(), call.exception()
            time.sleep(0.05)
        canceled = httpx.delete(f"{served.url}/v1/generations/{jobs[0].id}")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
        with pytest.raises(openai.ConflictError) as raised:
            call.result(timeout=60)
    assert raised.value.status_code == 409 and raised.value.code == "job_canceled"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert [job.id for job in _queued_jobs(redis_db, queue_name)] == [jobs[0].id]


def test_still_running_is_a_504_naming_the_job_and_not_retried(serve, redis_db, queue_name):
    with serve(sync_wait_timeout_s="0.5") as served, pytest.raises(openai.InternalServerError) as raised:
        served.client().images.generate(prompt="nobody home", extra_body={"retrieval": {"enabled": False}})
    error = raised.value
    assert error.status_code == 504 and error.code == "timeout"
    assert error.response.headers["x-should-retry"] == "false"
    # one job, not lost: still queued for a worker, and the error says where to poll it
    [job] = _queued_jobs(redis_db, queue_name)
    assert job.status is JobStatus.queued
    assert isinstance(error.body, dict) and error.body["details"]["job_id"] == job.id and job.id in error.message


def test_client_timeouts_retried_with_an_idempotency_key_wait_on_one_job(serve, redis_db, queue_name):
    """A client-side timeout carries no answer to obey, so the SDK retries; the key makes it a replay."""
    with serve(sync_wait_timeout_s="120") as served:
        abandoned = _abandoned_calls(served.url)
        with pytest.raises(openai.APITimeoutError):
            served.client(timeout=1.0, max_retries=2).images.generate(
                prompt="nobody home",
                extra_body={"retrieval": {"enabled": False}},
                extra_headers={"Idempotency-Key": f"timeouts-{queue_name}"},
            )
        [job] = _queued_jobs(redis_db, queue_name)
        assert job.status is JobStatus.queued
        # the gateway stops waiting for each caller that hung up (counted as 499); the job goes on
        deadline = time.monotonic() + 60
        while _abandoned_calls(served.url) < abandoned + 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _abandoned_calls(served.url) == abandoned + 3


def _abandoned_calls(url: str) -> float:
    """realrag_http_requests_total of the route with status 499, from the gateway's /metrics."""
    for family in text_string_to_metric_families(httpx.get(f"{url}/metrics").text):
        for sample in family.samples:
            if sample.name == "realrag_http_requests_total" and sample.labels == {
                "method": "POST", "route": "/v1/images/generations", "status": "499"
            }:
                return sample.value
    return 0.0
