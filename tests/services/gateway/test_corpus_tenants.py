"""Corpus scoping (#10, README "Tenants and corpora"): a shared corpus written by admins, plus private
images per tenant. Tenant b never retrieves, reads or deletes a's private image, in corpus routes and in
the generation path's retrieval; shared images are visible to both; users cannot write the shared corpus."""

from __future__ import annotations

import json

import pytest

from services.tenants import hash_key

from .helpers import solid_png

KEYS = {"a": "key-of-a", "b": "key-of-b", "boss": "key-of-boss"}
TENANTS = json.dumps(
    [{"name": name, "key_sha256": hash_key(key), "role": "admin" if name == "boss" else "user"} for name, key in KEYS.items()]
)
SECRET = (123, 45, 67)


def as_(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


def upload(gateway, tenant: str, color, **fields):
    return gateway.post(
        "/v1/corpus/images", files={"file": ("p.png", solid_png(color), "image/png")}, data=fields, headers=as_(tenant)
    )


def search(gateway, tenant: str, **body) -> list[dict]:
    response = gateway.post("/v1/corpus/search", json={"query": "a photo", "top_k": 50, **body}, headers=as_(tenant))
    assert response.status_code == 200, response.text
    return response.json()["hits"]


@pytest.fixture
def gateway(make_gateway):
    with make_gateway(tenants=TENANTS) as client:
        yield client


@pytest.fixture
def private_of_a(gateway, corpus):
    added = upload(gateway, "a", SECRET, object_id="secret-of-a", label="a's secret")
    assert added.status_code == 201, added.text
    record = added.json()
    assert record["tenant"] == "a"
    yield record
    gateway.delete(f"/v1/corpus/images/{record['id']}", headers=as_("a"))


def test_b_never_sees_a_s_private_image(gateway, private_of_a, corpus):
    image_id = private_of_a["id"]
    assert image_id in {h["id"] for h in search(gateway, "a")}
    assert [h["id"] for h in search(gateway, "a", filter={"object_id": "secret-of-a"})] == [image_id]
    # b: not among everything it can retrieve, nor by the object id, nor by asking for a's images
    assert image_id not in {h["id"] for h in search(gateway, "b")}
    assert search(gateway, "b", filter={"object_id": "secret-of-a"}) == []
    assert search(gateway, "b", filter={"tenant": "a"}) == []
    assert search(gateway, "b", filter={"tenant": ["a", "b"], "object_id": "secret-of-a"}) == []
    missing = gateway.get(f"/v1/corpus/images/{image_id}", headers=as_("b"))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "image_not_found"
    assert gateway.delete(f"/v1/corpus/images/{image_id}", headers=as_("b")).status_code == 404
    assert gateway.get(f"/v1/corpus/images/{image_id}", headers=as_("a")).status_code == 200, "b's delete did nothing"
    # not even an admin sees another tenant's private images
    assert gateway.get(f"/v1/corpus/images/{image_id}", headers=as_("boss")).status_code == 404


def test_shared_images_are_visible_to_every_tenant(gateway, corpus):
    shared = {record["id"] for record in corpus.values()}
    for tenant in KEYS:
        assert shared <= {h["id"] for h in search(gateway, tenant)}
        record = gateway.get(f"/v1/corpus/images/{corpus['red-car']['id']}", headers=as_(tenant))
        assert record.status_code == 200 and record.json()["tenant"] == "shared"
    assert [h["id"] for h in search(gateway, "b", filter={"tenant": "shared", "object_id": "red-car"})] == [corpus["red-car"]["id"]]


def test_ids_do_not_reveal_that_another_tenant_holds_the_same_pixels(gateway, private_of_a):
    same = upload(gateway, "b", SECRET)
    assert same.status_code == 201, "a new image for b, not a duplicate of a's"
    try:
        assert same.json()["id"] != private_of_a["id"] and same.json()["tenant"] == "b"
        again = upload(gateway, "b", SECRET)
        assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["id"] == same.json()["id"]
    finally:
        assert gateway.delete(f"/v1/corpus/images/{same.json()['id']}", headers=as_("b")).status_code == 204


def test_only_admins_write_the_shared_corpus(gateway, corpus):
    refused = upload(gateway, "a", (1, 2, 3), visibility="shared")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert gateway.delete(f"/v1/corpus/images/{corpus['red-car']['id']}", headers=as_("a")).status_code == 403
    added = upload(gateway, "boss", (4, 5, 6), object_id="from-the-boss")  # admins add to the shared corpus by default
    assert added.status_code == 201 and added.json()["tenant"] == "shared"
    image_id = added.json()["id"]
    try:
        assert [h["id"] for h in search(gateway, "b", filter={"object_id": "from-the-boss"})] == [image_id]
        private = upload(gateway, "boss", (4, 5, 7), visibility="private")
        assert private.status_code == 201 and private.json()["tenant"] == "boss"
        assert gateway.delete(f"/v1/corpus/images/{private.json()['id']}", headers=as_("boss")).status_code == 204
    finally:
        assert gateway.delete(f"/v1/corpus/images/{image_id}", headers=as_("boss")).status_code == 204


def test_generation_retrieval_is_scoped_too(gateway, private_of_a, corpus):
    image_id = private_of_a["id"]
    refused = gateway.post("/v1/generations", json={"prompt": "x", "reference_ids": [image_id]}, headers=as_("b"))
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "unknown_reference"
    accepted = gateway.post("/v1/generations", json={"prompt": "x", "reference_ids": [image_id]}, headers=as_("a"))
    assert accepted.status_code == 202, accepted.text
    assert [r["id"] for r in accepted.json()["references"]] == [image_id]
    retrieved = gateway.post(
        "/v1/generations",
        json={"prompt": "a's secret", "retrieval": {"top_k": 3, "filter": {"object_id": ["secret-of-a", "red-car"]}}},
        headers=as_("b"),
    )
    assert retrieved.status_code == 202, retrieved.text
    assert [r["id"] for r in retrieved.json()["references"]] == [corpus["red-car"]["id"]]


def test_no_tenant_may_be_called_shared():
    from pydantic import ValidationError

    from services.settings import Settings

    with pytest.raises(ValidationError, match="shared corpus"):
        Settings(tenants=[{"name": "shared", "key_sha256": "0" * 64}])
