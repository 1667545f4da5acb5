"""OpenAI-Images-compatible POST /v1/images/generations: synchronous over the async jobs.

The success cases need something to run the job: a thread takes the gateway's Celery messages off
the test queue and calls the worker's real job runner (tiny-sd on CPU), as the Celery task does.
"""

from __future__ import annotations

import base64
import io
import threading

import pytest
from PIL import Image

from services.jobs import JobStore
from services.schemas import Job, JobStatus

from .helpers import decode_task


@pytest.fixture
def worker(make_gateway, corpus):
    """The gateway plus a one-thread stand-in for the Celery worker process (same run_job)."""
    from generator_service.runner import run_job

    with make_gateway(sync_wait_timeout_s="120") as gateway:
        settings = gateway.app.state.settings
        jobs = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
        stop, errors = threading.Event(), []

        def loop() -> None:
            while not stop.is_set():
                item = jobs.redis.brpop([settings.queue_name], timeout=0.2)
                if item is None:
                    continue
                try:
                    run_job(decode_task(item[1]), jobs, settings)
                except Exception as exc:  # surfaced by the test, not lost in the thread
                    errors.append(exc)

        thread = threading.Thread(target=loop, name="test-worker", daemon=True)
        thread.start()
        try:
            yield gateway
        finally:
            stop.set()
            thread.join(timeout=60)
        assert errors == []


def test_url_response_points_at_pngs_of_the_requested_size(worker, corpus):
    response = worker.post("/v1/images/generations", json={"prompt": "a red car", "size": "64x48", "n": 2, "seed": 11})
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["data"]) == 2 and isinstance(body["created"], int)
    assert body["realrag"]["seeds"] == [11, 12]
    assert len(body["realrag"]["references"]) == 1
    for item in body["data"]:
        image = worker.get(item["url"])
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(image.content)).size == (64, 48)
    job = worker.get(f"/v1/generations/{body['realrag']['job_id']}").json()
    assert job["status"] == "succeeded" and [o["url"] for o in job["outputs"]] == [d["url"] for d in body["data"]]


def test_b64_json_response_and_idempotent_replay(worker, redis_db):
    request = {"prompt": "a blue sky", "size": "64x64", "seed": 5, "response_format": "b64_json", "retrieval": {"enabled": False}}
    headers = {"Idempotency-Key": f"openai-{worker.app.state.settings.queue_name}"}
    first = worker.post("/v1/images/generations", json=request, headers=headers)
    assert first.status_code == 200, first.text
    png = base64.b64decode(first.json()["data"][0]["b64_json"])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (64, 64)
    assert first.json()["realrag"]["references"] == []
    # a retried POST with the same key returns the finished job's images, without a second run
    again = worker.post("/v1/images/generations", json=request, headers=headers)
    assert again.status_code == 200
    assert again.json()["realrag"]["job_id"] == first.json()["realrag"]["job_id"]
    assert base64.b64decode(again.json()["data"][0]["b64_json"]) == png
    job = Job.model_validate_json(redis_db.get(JobStore.job_key(first.json()["realrag"]["job_id"])))
    assert job.attempts == 1


@pytest.mark.parametrize(
    "body,code",
    [
        ({"prompt": "ok", "style": "vivid"}, "invalid_request"),  # unknown fields are refused, not ignored
        ({"prompt": "ok", "response_format": "jpeg"}, "invalid_request"),
        ({"prompt": "ok", "n": 9}, "n_out_of_range"),
        ({"prompt": "ok", "size": "1x1"}, "invalid_size"),
        ({"prompt": ""}, "empty_prompt"),
    ],
)
def test_bad_requests_are_422_and_create_nothing(gateway, redis_db, queue_name, body, code):
    before = set(redis_db.keys("realrag:job:*"))
    response = gateway.post("/v1/images/generations", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert set(redis_db.keys("realrag:job:*")) == before and redis_db.llen(queue_name) == 0


def test_no_worker_is_a_504_naming_the_job_to_poll(make_gateway, corpus, redis_db, queue_name):
    with make_gateway(sync_wait_timeout_s="0.5") as gateway:
        response = gateway.post("/v1/images/generations", json={"prompt": "nobody home", "retrieval": {"enabled": False}})
    assert response.status_code == 504
    error = response.json()["error"]
    assert error["code"] == "timeout" and error["details"]["job_id"] in error["message"]
    # the job is not lost: it is still queued for a worker
    job = Job.model_validate_json(redis_db.get(JobStore.job_key(error["details"]["job_id"])))
    assert job.status is JobStatus.queued
    assert redis_db.llen(queue_name) == 1
