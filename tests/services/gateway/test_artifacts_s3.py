"""A job end to end on the S3 artefact store: the real gateway app (in-process) with
REALRAG_ARTIFACT_STORE=s3, the worker's real job runner (tiny-sd on CPU) on the gateway's queued
message, and a bucket on moto's S3 server reached over HTTP (tests/services/conftest.py).

The outputs land in the bucket (not on local disk), the job view hands out presigned bucket URLs
that a credential-less client downloads, the references are read from the bucket, and the gateway's
/v1/artifacts route redirects to a fresh presigned URL.

The jobs run on a private redis-server (tests/redis_server.py), not on the shared test database:
another pytest session's clean-up there would delete a job record while it runs.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from PIL import Image

from services.artifacts import LocalArtifactStore, artifact_store
from services.jobs import JobStore
from services.schemas import JobStatus
from services.settings import Settings, get_settings
from tests.redis_server import RedisServer

from .helpers import decode_task


@pytest.fixture
def bucket(s3_server) -> str:
    return s3_server.new_bucket()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), persist=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def s3_settings(s3_server, bucket, private_redis) -> dict[str, str]:
    """The gateway's settings: the S3 store on `bucket`, jobs in the private Redis."""
    return {**s3_server.settings(bucket, s3_presign_ttl_s="600"), "redis_url": private_redis}


def copy_corpus_to_bucket(corpus: dict[str, dict], settings: Settings) -> None:
    """The package's corpus was ingested into the local store; a migrated deployment has it in the bucket."""
    local = LocalArtifactStore(get_settings().artifact_root)
    bucket = artifact_store(settings)
    for record in corpus.values():
        bucket.put(record["image_uri"], local.get(record["image_uri"]))


def run_queued_job(queue_name: str, settings: Settings) -> JobStatus | None:
    """What the Celery worker does with the gateway's message: the real run_job."""
    from generator_service.runner import run_job

    with redis.Redis.from_url(settings.redis_url) as client:
        item = client.brpop([queue_name], timeout=10)
    assert item is not None, "the gateway queued nothing"
    return run_job(decode_task(item[1]), JobStore.from_url(settings.redis_url, settings.job_ttl_s), settings)


@contextmanager
def worker_thread(queue_name: str, settings: Settings) -> Iterator[None]:
    """Runs queued jobs while the test waits on a synchronous endpoint."""
    from generator_service.runner import run_job

    jobs = JobStore.from_url(settings.redis_url, settings.job_ttl_s)
    stop, errors = threading.Event(), []

    def loop() -> None:
        while not stop.is_set():
            item = jobs.redis.brpop([queue_name], timeout=0.2)
            if item is not None:
                try:
                    run_job(decode_task(item[1]), jobs, settings)
                except Exception as exc:  # surfaced below, not lost in the thread
                    errors.append(exc)

    thread = threading.Thread(target=loop, name="test-s3-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)
    assert errors == []


def test_outputs_land_in_the_bucket_and_the_view_gives_presigned_urls(make_gateway, corpus, queue_name, s3_server, bucket,
                                                                       s3_settings):
    with make_gateway(**s3_settings) as client:
        settings = client.app.state.settings
        assert settings.artifact_store == "s3"
        copy_corpus_to_bucket(corpus, settings)
        response = client.post("/v1/generations", json={
            "prompt": "a red car by the sea", "n": 2, "size": "64x48", "seed": 3,
            "retrieval": {"top_k": 1, "filter": {"object_id": "red-car"}},
        })
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert run_queued_job(queue_name, settings) is JobStatus.succeeded
        view = client.get(f"/v1/generations/{job_id}").json()
        job_id = client.app.state.jobs.internal_id("local", job_id)  # outputs live under the job's internal id

        # the outputs are objects in the bucket, and nothing was written to local disk
        output_keys = [f"outputs/{job_id}/0.png", f"outputs/{job_id}/1.png"]
        assert [o["uri"] for o in view["outputs"]] == output_keys
        assert set(output_keys) <= set(s3_server.keys(bucket))
        assert not (settings.artifact_root / "outputs" / job_id).exists()

        # presigned bucket URLs that a client without credentials downloads
        for output in view["outputs"]:
            url = output["url"]
            assert url.startswith(f"{s3_server.endpoint_url}/{bucket}/outputs/{job_id}/") and "X-Amz-Signature=" in url
            assert "X-Amz-Expires=600" in url
            png = httpx.get(url)
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(png.content)).size == (64, 48)

        # the worker read its reference from the bucket; its URL is presigned as well
        [reference] = view["references"]
        assert reference["object_id"] == "red-car"
        assert httpx.get(reference["image_url"]).content == artifact_store(settings).get(reference["image_uri"])

        # the gateway's own artifact URL redirects to a fresh presigned URL
        redirect = client.get(f"/v1/artifacts/{output_keys[0]}", follow_redirects=False)
        assert redirect.status_code == 307 and redirect.headers["cache-control"] == "no-store"
        location = redirect.headers["location"]
        assert urlsplit(location).path == f"/{bucket}/{output_keys[0]}"
        assert httpx.get(location).content == artifact_store(settings).get(output_keys[0])

        missing = client.get(f"/v1/artifacts/outputs/{job_id}/9.png", follow_redirects=False)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "artifact_not_found"
        escape = client.get("/v1/artifacts/..%2F..%2Fsecret.png", follow_redirects=False)
        assert escape.status_code == 404


def test_openai_endpoint_reads_b64_from_the_bucket_and_presigns_urls(make_gateway, queue_name, s3_server, bucket, s3_settings):
    with make_gateway(sync_wait_timeout_s="120", **s3_settings) as client:
        settings = client.app.state.settings
        with worker_thread(queue_name, settings):
            b64 = client.post("/v1/images/generations", json={
                "prompt": "a blue sky", "size": "64x64", "response_format": "b64_json", "seed": 5,
                "retrieval": {"enabled": False},
            })
            url = client.post("/v1/images/generations", json={
                "prompt": "a blue sky", "size": "64x64", "seed": 6, "retrieval": {"enabled": False},
            })
    assert b64.status_code == 200, b64.text
    assert url.status_code == 200, url.text
    store = JobStore(redis.Redis.from_url(settings.redis_url, decode_responses=True), 60)
    job_id = store.internal_id("local", b64.json()["realrag"]["job_id"])  # outputs live under the internal id
    png = base64.b64decode(b64.json()["data"][0]["b64_json"])
    assert png == artifact_store(settings).get(f"outputs/{job_id}/0.png")
    link = url.json()["data"][0]["url"]
    assert link.startswith(f"{s3_server.endpoint_url}/{bucket}/outputs/") and "X-Amz-Signature=" in link
    assert Image.open(io.BytesIO(httpx.get(link).content)).size == (64, 64)


def test_an_unreachable_store_is_503_on_the_artifact_route(make_gateway):
    from realrag.stack import free_port

    dead = {"artifact_store": "s3", "s3_bucket": "b", "s3_region": "us-east-1", "s3_addressing_style": "path",
            "s3_endpoint_url": f"http://127.0.0.1:{free_port()}", "s3_access_key_id": "k", "s3_secret_access_key": "s",
            "s3_timeout_s": "2"}
    with make_gateway(**dead) as client:
        response = client.get("/v1/artifacts/outputs/j/0.png", follow_redirects=False)
    assert response.status_code == 503 and response.json()["error"]["code"] == "artifact_store_unavailable"
