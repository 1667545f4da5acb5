"""The isolation matrix of #10 on the real stack (uvicorn gateway and retriever, Celery worker, Redis,
embedded Qdrant), with two tenants, an admin and every token set: outputs and corpus.

The multi-tenant stack is tests/e2e/conftest.py's `tenant_stack`.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from tests.conftest import png_bytes

from .helpers import METRICS_TOKEN, RETRIEVER_ADMIN_TOKEN, RETRIEVER_TOKEN, TERMINAL

pytestmark = pytest.mark.slow  # starts real processes

@pytest.fixture(scope="module")
def clients(tenant_clients) -> dict[str, httpx.Client]:
    return tenant_clients


def upload(client: httpx.Client, color, **fields) -> dict:
    data = png_bytes(Image.new("RGB", (64, 64), color))
    response = client.post("/v1/corpus/images", files={"file": ("p.png", data, "image/png")}, data=fields)
    assert response.status_code == 201, response.text
    return response.json()


def wait(client: httpx.Client, job_id: str, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/generations/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck: {job['status']}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def corpus(clients) -> dict[str, dict]:
    return {
        "shared": upload(clients["ops"], (200, 40, 40), object_id="shared-red", label="shared red"),
        "private_a": upload(clients["a"], (40, 40, 200), object_id="secret-blue", label="a's secret"),
    }


@pytest.fixture(scope="module")
def job_of_a(clients, corpus) -> dict:
    created = clients["a"].post(
        "/v1/generations",
        json={"prompt": "a's secret blue", "width": 64, "height": 64, "steps": 2, "seed": 1, "retrieval": {"top_k": 2}},
    )
    assert created.status_code == 202, created.text
    job = wait(clients["a"], created.json()["id"])
    assert job["status"] == "succeeded", job
    return job


def relative(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_outputs(clients, job_of_a):
    url = relative(job_of_a["outputs"][0]["url"])
    path, query = url.split("?")[0], parse_qs(urlsplit(url).query)
    anon, a, b = clients["anon"], clients["a"], clients["b"]
    assert anon.get(url).status_code == 200, "signed URL, no key"
    assert anon.get(path).status_code == 401, "no key, no signature"
    assert a.get(path).status_code == 200, "the owner with its key"
    assert b.get(path).status_code == 404, "another tenant's output"
    assert clients["ops"].get(path).status_code == 404, "an admin is not the owner"
    tampered = {"expires": str(int(query["expires"][0]) + 60), "signature": query["signature"][0]}
    assert anon.get(path, params=tampered).status_code == 403
    assert b.get(f"/v1/generations/{job_of_a['id']}").status_code == 404, "b cannot read a's job by its id"


def test_the_references_a_job_retrieved_are_its_tenant_s(clients, corpus, job_of_a):
    assert {r["id"] for r in job_of_a["references"]} <= {corpus["shared"]["id"], corpus["private_a"]["id"]}
    created = clients["b"].post(
        "/v1/generations", json={"prompt": "a's secret blue", "width": 64, "height": 64, "steps": 2, "retrieval": {"top_k": 2}}
    )
    assert created.status_code == 202, created.text
    assert corpus["private_a"]["id"] not in {r["id"] for r in created.json()["references"]}
    explicit = clients["b"].post("/v1/generations", json={"prompt": "x", "reference_ids": [corpus["private_a"]["id"]]})
    assert explicit.status_code == 422 and explicit.json()["error"]["code"] == "unknown_reference"
    wait(clients["b"], created.json()["id"])


def test_corpus(clients, corpus):
    private, shared = corpus["private_a"], corpus["shared"]

    def hits(client, **body) -> set[str]:
        response = client.post("/v1/corpus/search", json={"query": "a photo", "top_k": 50, **body})
        assert response.status_code == 200, response.text
        return {h["id"] for h in response.json()["hits"]}

    assert {private["id"], shared["id"]} <= hits(clients["a"])
    assert shared["id"] in hits(clients["b"]) and private["id"] not in hits(clients["b"])
    assert hits(clients["b"], filter={"tenant": "a"}) == set()
    assert clients["b"].get(f"/v1/corpus/images/{private['id']}").status_code == 404
    assert clients["b"].delete(f"/v1/corpus/images/{private['id']}").status_code == 404
    assert clients["b"].get(relative(private["image_url"]).split("?")[0]).status_code == 404
    assert clients["a"].get(f"/v1/corpus/images/{private['id']}").status_code == 200
    assert clients["b"].delete(f"/v1/corpus/images/{shared['id']}").status_code == 403
    refused = clients["b"].post(
        "/v1/corpus/images", files={"file": ("p.png", png_bytes(Image.new("RGB", (8, 8))), "image/png")}, data={"visibility": "shared"}
    )
    assert refused.status_code == 403


def test_the_retriever_and_metrics_need_their_tokens(tenant_stack, clients):
    retriever = tenant_stack.env["REALRAG_RETRIEVER_URL"]
    assert httpx.get(f"{retriever}/healthz").status_code == 200
    assert httpx.post(f"{retriever}/v1/search", json={"query": "x"}).status_code == 401
    service = {"Authorization": f"Bearer {RETRIEVER_TOKEN}"}
    assert httpx.post(f"{retriever}/v1/search", json={"query": "x"}, headers=service).status_code == 200
    assert httpx.post(f"{retriever}/v1/admin/rollback", headers=service).status_code == 403
    assert httpx.post(f"{retriever}/v1/admin/rollback", headers={"Authorization": f"Bearer {RETRIEVER_ADMIN_TOKEN}"}).status_code == 409
    assert clients["anon"].get("/metrics").status_code == 401
    assert clients["a"].get("/metrics").status_code == 403, "an API key is not the metrics token"
    assert clients["anon"].get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).status_code == 200
