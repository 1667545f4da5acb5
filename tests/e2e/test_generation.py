"""A generation travels the whole system: HTTP -> gateway -> retriever -> Celery -> diffusers -> PNG."""

import io
import os
import signal

import pytest
from PIL import Image

from services.jobs import JobStore
from services.tenants import LOCAL_TENANT_NAME

from .helpers import wait_for

pytestmark = pytest.mark.slow  # starts real processes: run with -m slow, skip with -m 'not slow'


def fetch_png(gateway, url) -> Image.Image:
    response = gateway.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def test_job_succeeds_with_references_and_a_png_of_the_requested_size(gateway, corpus):
    response = gateway.post(
        "/v1/generations",
        json={"prompt": "the Zorblat X1 in a city", "width": 96, "height": 64, "seed": 3, "retrieval": {"top_k": 2}},
    )
    assert response.status_code == 202
    queued = response.json()
    assert queued["status"] == "queued"
    assert len(queued["references"]) == 2
    job = wait_for(gateway, queued["id"])
    assert job["status"] == "succeeded", job
    assert job["seeds"] == [3]
    corpus_ids = {rec["id"] for records in corpus.values() for rec in records}
    for ref in job["references"]:
        assert ref["id"] in corpus_ids
        assert ref["score"] is not None and ref["label"]
        assert fetch_png(gateway, ref["image_url"]).size == (128, 128)
    assert job["retriever"]["kind"] == "zero-shot"
    assert job["retriever"]["collection"] == "realrag-images-v1"
    image = fetch_png(gateway, job["outputs"][0]["url"])
    assert image.size == (96, 64)
    timings = job["timings"]
    assert timings["retrieval_ms"] > 0 and timings["generation_ms"] > 0 and timings["total_ms"] > 0
    assert job["progress"]["step"] == job["progress"]["total"] > 0


def test_conditioning_is_real(gateway, corpus):
    def generate(reference_id):
        body = {"prompt": "a car", "seed": 11, "reference_ids": [reference_id]}
        job = wait_for(gateway, gateway.post("/v1/generations", json=body).json()["id"])
        assert job["status"] == "succeeded", job
        assert [r["id"] for r in job["references"]] == [reference_id]
        return gateway.get(job["outputs"][0]["url"]).content

    teal, crimson = corpus["zorblat-x1"][0]["id"], corpus["quenta-sprite"][0]["id"]
    first = generate(teal)
    assert generate(teal) == first, "same seed and reference must give the identical image"
    assert generate(crimson) != first, "a different reference must change the image"


def test_n_images_have_one_seed_each(gateway, corpus):
    job = wait_for(gateway, gateway.post("/v1/generations", json={"prompt": "the Helvor Mk2", "n": 2, "seed": 5}).json()["id"])
    assert job["status"] == "succeeded"
    assert job["seeds"] == [5, 6]
    assert [o["seed"] for o in job["outputs"]] == [5, 6]
    a, b = (gateway.get(o["url"]).content for o in job["outputs"])
    assert a != b


def test_put_with_client_id_and_idempotency_key_replay(gateway, corpus):
    import uuid

    job_id, key = f"client-{uuid.uuid4().hex}", f"retry-{uuid.uuid4().hex}"
    body = {"prompt": "the Ambrix Ray", "seed": 1}
    first = gateway.put(f"/v1/generations/{job_id}", json=body)
    assert first.status_code == 202
    again = gateway.put(f"/v1/generations/{job_id}", json=body)
    assert again.status_code == 200 and again.json()["id"] == job_id
    conflict = gateway.put(f"/v1/generations/{job_id}", json={**body, "seed": 2})
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_conflict"

    headers = {"Idempotency-Key": key}
    a = gateway.post("/v1/generations", json=body, headers=headers)
    b = gateway.post("/v1/generations", json=body, headers=headers)
    assert a.status_code == 202 and b.status_code == 200
    assert a.json()["id"] == b.json()["id"]
    assert gateway.post("/v1/generations", json={**body, "seed": 9}, headers=headers).status_code == 409
    assert wait_for(gateway, job_id)["status"] == "succeeded"


def test_cancel_running_job_stores_no_image(gateway, corpus, stack):
    job = gateway.post("/v1/generations", json={"prompt": "the Quenta Sprite", "steps": 60, "width": 256, "height": 256, "seed": 1}).json()
    wait_for(gateway, job["id"], until=lambda j: j["status"] == "generating" and j["progress"]["step"] >= 1)
    canceled = gateway.delete(f"/v1/generations/{job['id']}")
    assert canceled.status_code == 200
    final = wait_for(gateway, job["id"])
    assert final["status"] == "canceled"
    assert final["outputs"] == []
    assert final["progress"]["step"] < 60
    out_dir = stack.settings.artifact_root / "outputs" / job["id"]
    assert not out_dir.exists() or not any(out_dir.iterdir())
    again = gateway.delete(f"/v1/generations/{job['id']}")  # idempotent on a finished job
    assert again.status_code == 200 and again.json()["status"] == "canceled"


def test_cancel_queued_job(gateway, corpus):
    # occupy the single worker, then cancel a job that is still waiting
    busy = gateway.post("/v1/generations", json={"prompt": "busy", "steps": 40, "width": 192, "height": 192}).json()
    waiting = gateway.post("/v1/generations", json={"prompt": "waiting", "seed": 2}).json()
    response = gateway.post(f"/v1/generations/{waiting['id']}/cancel")
    assert response.json()["status"] == "canceled"
    gateway.delete(f"/v1/generations/{busy['id']}")
    wait_for(gateway, busy["id"])
    assert wait_for(gateway, waiting["id"])["status"] == "canceled"


def _kill_worker_child(stack, job):
    # the worker's host:pid is in the Redis record only, never in the public view
    assert "worker" not in job
    record = JobStore.from_url(stack.settings.redis_url, stack.settings.job_ttl_s).find(LOCAL_TENANT_NAME, job["id"])
    pid = int(record.worker.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)


def test_sigkilled_worker_redelivers_and_completes_exactly_once(stack, gateway, corpus):
    body = {"prompt": "the Zorblat X1 at dusk", "steps": 30, "width": 192, "height": 192, "seed": 21}
    job = gateway.post("/v1/generations", json=body).json()
    running = wait_for(gateway, job["id"], until=lambda j: j["status"] == "generating" and j["progress"]["step"] >= 1)
    _kill_worker_child(stack, running)
    final = wait_for(gateway, job["id"])
    assert final["status"] == "succeeded", final
    assert final["attempts"] == 2
    assert len(final["outputs"]) == 1
    # the redelivered run produced exactly what an uninterrupted run produces
    clean = wait_for(gateway, gateway.post("/v1/generations", json=body).json()["id"])
    assert gateway.get(final["outputs"][0]["url"]).content == gateway.get(clean["outputs"][0]["url"]).content


def test_redelivery_cap_fails_the_job_with_a_clear_reason(stack, gateway, corpus):
    job = gateway.post("/v1/generations", json={"prompt": "doomed", "steps": 30, "width": 192, "height": 192}).json()
    for attempt in (1, 2):  # the stack runs with REALRAG_MAX_DELIVERIES=2
        running = wait_for(
            gateway, job["id"], until=lambda j, a=attempt: j["status"] == "generating" and j["attempts"] == a and j["progress"]["step"] >= 1
        )
        _kill_worker_child(stack, running)
    final = wait_for(gateway, job["id"])
    assert final["status"] == "failed"
    assert final["error"]["code"] == "redelivery_cap"
    assert "delivered 3 times" in final["error"]["message"]


def test_openai_compatible_endpoint(gateway, corpus):
    response = gateway.post(
        "/v1/images/generations", json={"prompt": "the Helvor Mk2", "n": 1, "size": "64x64", "response_format": "b64_json", "seed": 4}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    import base64

    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert image.size == (64, 64)
    assert body["realrag"]["seeds"] == [4]
    url_mode = gateway.post("/v1/images/generations", json={"prompt": "the Helvor Mk2", "size": "64x64", "seed": 4}).json()
    assert gateway.get(url_mode["data"][0]["url"]).content == base64.b64decode(body["data"][0]["b64_json"])


def test_events_stream_ends_with_the_terminal_state(gateway, corpus):
    job = gateway.post("/v1/generations", json={"prompt": "the Ambrix Ray", "seed": 8}).json()
    events = []
    with gateway.stream("GET", f"/v1/generations/{job['id']}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    assert events[-1] == "succeeded"


def test_models_lists_the_registry(gateway):
    models = {m["id"]: m for m in gateway.get("/v1/models").json()["data"]}
    assert models["tiny-sd"]["family"] == "sd"
    assert models["tiny-sd"]["default"] is True
    assert models["tiny-sd"]["max_references"] >= 1


def test_playground_page_is_served(gateway):
    page = gateway.get("/playground")
    assert page.status_code == 200 and "RealRAG playground" in page.text
