"""Who gets an artefact (#10): the owning tenant with its key, or anyone with a valid signed URL.

Rows: signed URL valid → 200; expired or tampered → 403; no key and no signature → 401; another
tenant's output (with its own key) → 404; the owner with its key → 200; corpus images: the shared ones
for every tenant, a private one for its owner only.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from services.artifacts import artifact_store
from services.jobs import JobStore
from services.schemas import JobStatus, OutputImage
from services.settings import get_settings
from services.signing import sign
from services.tenants import hash_key

from .helpers import solid_png

KEYS = {"a": "key-of-a", "b": "key-of-b", "boss": "key-of-boss"}
TENANTS = json.dumps(
    [{"name": name, "key_sha256": hash_key(key), "role": "admin" if name == "boss" else "user"} for name, key in KEYS.items()]
)


def as_(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture
def gateway(make_gateway):
    with make_gateway(tenants=TENANTS, url_signing_key="test-signing-key", signed_url_ttl_s="600") as client:
        yield client


@pytest.fixture
def output_of_a(gateway, redis_db) -> dict:
    """A finished job of tenant a with one output PNG in the store; its view as a reads it."""
    created = gateway.post("/v1/generations", json={"prompt": "a red car", "retrieval": {"enabled": False}}, headers=as_("a"))
    assert created.status_code == 202, created.text
    store = JobStore(redis_db, ttl_s=600)
    job = store.find("a", created.json()["id"])
    assert job is not None
    internal = job.internal_id or job.id
    key = artifact_store(get_settings()).put(f"outputs/{internal}/0.png", solid_png((200, 30, 30)))
    output = OutputImage(index=0, seed=1, uri=key, width=40, height=32)
    store.transition(internal, JobStatus.succeeded, outputs=[output])
    view = gateway.get(f"/v1/generations/{job.id}", headers=as_("a")).json()
    return {"id": job.id, "key": key, "url": view["outputs"][0]["url"]}


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_job_views_carry_signed_urls_that_work_without_a_key(gateway, output_of_a):
    url = output_of_a["url"]
    assert "expires=" in url and "signature=" in url
    response = gateway.get(path_of(url))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")


def test_tampered_or_expired_signatures_are_403(gateway, output_of_a):
    query = parse_qs(urlsplit(output_of_a["url"]).query)
    expires, signature = query["expires"][0], query["signature"][0]
    path = f"/v1/artifacts/{output_of_a['key']}"
    for params in (
        {"expires": str(int(expires) + 60), "signature": signature},  # a later expiry
        {"expires": expires, "signature": signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")},
        {"expires": expires},  # half a signature
        {"signature": signature},
    ):
        response = gateway.get(path, params=params)
        assert response.status_code == 403, params
        assert response.json()["error"]["code"] == "invalid_signature"
    # another path with this signature
    sibling = f"/v1/artifacts/outputs/{output_of_a['key'].split('/')[1]}/1.png"
    other = gateway.get(sibling, params={"expires": expires, "signature": signature})
    assert other.status_code == 403
    past = sign(get_settings(), path, expires=1_000)  # correctly signed, long expired
    expired = gateway.get(path, params=past)
    assert expired.status_code == 403 and expired.json()["error"]["code"] == "invalid_signature"


def test_without_key_or_signature_401_and_the_owner_alone_reads_with_its_key(gateway, output_of_a):
    path = f"/v1/artifacts/{output_of_a['key']}"
    anonymous = gateway.get(path)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert gateway.get(path, headers={"Authorization": "Bearer not-a-key"}).status_code == 401
    assert gateway.get(path, headers=as_("a")).status_code == 200
    assert gateway.get(path, headers={"X-API-Key": KEYS["a"]}).status_code == 200
    other = gateway.get(path, headers=as_("b"))
    assert other.status_code == 404 and other.json()["error"]["code"] == "artifact_not_found"
    # an admin is no owner either: admins manage the shared corpus, not other tenants' jobs
    assert gateway.get(path, headers=as_("boss")).status_code == 404
    # the same answer as for an output that does not exist
    assert gateway.get("/v1/artifacts/outputs/00000000000000000000000000000000/0.png", headers=as_("b")).status_code == 404


def test_corpus_images_by_key_shared_for_all_private_for_the_owner(gateway, corpus):
    shared = corpus["red-car"]["image_uri"]
    for tenant in KEYS:
        assert gateway.get(f"/v1/artifacts/{shared}", headers=as_(tenant)).status_code == 200
    added = gateway.post(
        "/v1/corpus/images", files={"file": ("p.png", solid_png((7, 99, 7)), "image/png")}, data={"label": "a's own"}, headers=as_("a")
    )
    assert added.status_code == 201, added.text
    private = added.json()
    try:
        path = f"/v1/artifacts/{private['image_uri']}"
        assert gateway.get(path, headers=as_("a")).status_code == 200
        assert gateway.get(path, headers=as_("b")).status_code == 404
        assert gateway.get(path_of(private["image_url"])).status_code == 200  # a's signed URL
    finally:
        assert gateway.delete(f"/v1/corpus/images/{private['id']}", headers=as_("a")).status_code == 204


def test_urls_are_absolute_under_the_public_base_url_or_the_request_s(make_gateway, corpus):
    with make_gateway(tenants=TENANTS, public_base_url="https://images.example.com/") as gateway:
        record = gateway.get(f"/v1/corpus/images/{corpus['red-car']['id']}", headers=as_("a")).json()
        assert record["image_url"].startswith(f"https://images.example.com/v1/artifacts/{record['image_uri']}?expires=")
    with make_gateway(tenants=TENANTS) as gateway:
        record = gateway.get(f"/v1/corpus/images/{corpus['red-car']['id']}", headers=as_("a")).json()
        assert record["image_url"].startswith(f"http://testserver/v1/artifacts/{record['image_uri']}?expires=")
        assert gateway.get(path_of(record["image_url"])).status_code == 200


def test_with_auth_off_every_artifact_is_served(make_gateway, corpus):
    with make_gateway() as gateway:
        assert gateway.get(f"/v1/artifacts/{corpus['red-car']['image_uri']}").status_code == 200
        assert gateway.get("/v1/artifacts/outputs/nope/0.png").status_code == 404
