"""/v1/corpus (proxied to the real retriever) and /v1/artifacts: CRUD, duplicates, search, bad uploads."""

from __future__ import annotations

import io

from PIL import Image

from .helpers import solid_png


def test_corpus_crud_and_duplicates(gateway, corpus):
    data = solid_png((1, 2, 3), size=(40, 30))
    created = gateway.post("/v1/corpus/images", files={"file": ("a.png", data, "image/png")}, data={"object_id": "tmp", "label": "Tmp"})
    assert created.status_code == 201, created.text
    image = created.json()
    assert (image["width"], image["height"], image["duplicate"]) == (40, 30, False)
    assert image["image_url"].startswith(f"http://testserver/v1/artifacts/{image['image_uri']}?expires="), "signed (#10)"

    dup = gateway.post("/v1/corpus/images", files={"file": ("b.png", data, "image/png")})
    assert dup.status_code == 200 and dup.json()["duplicate"] is True and dup.json()["id"] == image["id"]

    fetched = gateway.get(f"/v1/corpus/images/{image['id']}")
    assert fetched.status_code == 200 and fetched.json()["label"] == "Tmp"
    stored = gateway.get(image["image_url"])
    assert stored.status_code == 200 and stored.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(stored.content)).size == (40, 30)

    hits = gateway.post("/v1/corpus/search", json={"query": "tmp", "top_k": 5, "filter": {"object_id": "tmp"}}).json()["hits"]
    assert [h["id"] for h in hits] == [image["id"]]
    assert hits[0]["image_url"].split("?")[0] == image["image_url"].split("?")[0]

    assert gateway.delete(f"/v1/corpus/images/{image['id']}").status_code == 204
    assert gateway.get(f"/v1/corpus/images/{image['id']}").status_code == 404
    assert gateway.delete(f"/v1/corpus/images/{image['id']}").status_code == 404
    assert gateway.get(image["image_url"]).status_code == 404, "the stored photo goes with the record"
    assert gateway.post("/v1/corpus/search", json={"query": "tmp", "filter": {"object_id": "tmp"}}).json()["hits"] == []


def test_search_reports_the_retriever(gateway, corpus):
    result = gateway.post("/v1/corpus/search", json={"query": "a photo", "top_k": 50})
    assert result.status_code == 200
    body = result.json()
    assert {corpus[name]["id"] for name in corpus} <= {h["id"] for h in body["hits"]}
    assert body["retriever"]["kind"] == "zero-shot" and body["retriever"]["collection"]


def test_bad_uploads(gateway):
    junk = gateway.post("/v1/corpus/images", files={"file": ("x.png", b"not an image", "image/png")})
    assert junk.status_code == 422 and junk.json()["error"]["code"] == "invalid_image"
    gif = gateway.post("/v1/corpus/images", files={"file": ("x.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "image/gif")})
    assert gif.status_code == 422 and gif.json()["error"]["code"] == "invalid_image"
    empty = gateway.post("/v1/corpus/images", files={"file": ("x.png", b"", "image/png")})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_image"
    metadata = gateway.post(
        "/v1/corpus/images", files={"file": ("x.png", solid_png((9, 9, 9)), "image/png")}, data={"metadata": "[1, 2]"}
    )
    assert metadata.status_code == 422 and metadata.json()["error"]["code"] == "invalid_metadata"
    missing = gateway.post("/v1/corpus/images", data={"caption": "no file"})
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "invalid_request"
    assert gateway.get("/v1/corpus/images/not-a-uuid").status_code == 404
    assert gateway.get("/v1/artifacts/../../etc/passwd").status_code == 404


def test_artifacts_never_leave_the_artifact_root(gateway, corpus):
    settings = gateway.app.state.settings
    outside = settings.artifact_root.parent / "secret.png"  # a real PNG beside the artifact root
    outside.write_bytes(solid_png((5, 5, 5)))
    inside = gateway.get(f"/v1/artifacts/{corpus['red-car']['image_uri']}")
    assert inside.status_code == 200 and inside.headers["content-type"] == "image/png"
    for path in ("/v1/artifacts/%2e%2e/secret.png", "/v1/artifacts/corpus/%2e%2e/%2e%2e/secret.png", "/v1/artifacts/corpus/missing.png"):
        response = gateway.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "artifact_not_found"


def test_bad_searches_are_4xx(gateway, corpus):
    empty = gateway.post("/v1/corpus/search", json={"query": "  "})
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "empty_query"
    too_many = gateway.post("/v1/corpus/search", json={"query": "car", "top_k": 51})
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "top_k_too_large"
    unknown = gateway.post("/v1/corpus/search", json={"query": "car", "retriever": "reflective", "model": "tiny-sd"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_retriever"
    zero = gateway.post("/v1/corpus/search", json={"query": "car", "top_k": 0})
    assert zero.status_code == 422 and zero.json()["error"]["code"] == "invalid_request"


def test_upload_over_the_gateway_limit_is_413(make_gateway, corpus):
    with make_gateway(max_upload_bytes="1000") as gateway:
        response = gateway.post("/v1/corpus/images", files={"file": ("big.png", b"\x89PNG" + b"\0" * 2000, "image/png")})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "image_too_large"
