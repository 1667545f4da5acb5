"""The retriever HTTP app in-process (TestClient): tiny open_clip encoder, embedded Qdrant in tmp."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.conftest import png_bytes

from .helpers import retriever_client

MAX_UPLOAD_BYTES = 60_000
MAX_UPLOAD_PIXELS = 128 * 128


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    limits = {"max_upload_bytes": str(MAX_UPLOAD_BYTES), "max_upload_pixels": str(MAX_UPLOAD_PIXELS)}
    with retriever_client(tmp_path_factory.mktemp("retriever-app"), **limits) as test_client:
        yield test_client


def photo(color: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    return png_bytes(Image.new("RGB", size, color))


def ingest(client, data: bytes, **fields):
    return client.post("/v1/images", files={"file": ("photo.png", data, "image/png")}, data=fields)


def test_probes(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["device"] == "cpu"
    assert body["encoder"].startswith("tiny-clip") and body["collection"]
    assert isinstance(body["points"], int)


def test_ingest_search_get_delete(client):
    settings = client.app.state.retriever.settings
    fields = {"object_id": "orange-van", "label": "Orange van", "caption": "an orange van", "metadata": '{"year": 1999}'}
    created = ingest(client, photo((250, 120, 0)), **fields)
    assert created.status_code == 201, created.text
    image = created.json()
    assert image["duplicate"] is False
    assert (image["object_id"], image["label"], image["caption"]) == ("orange-van", "Orange van", "an orange van")
    assert (image["width"], image["height"], image["metadata"]) == (48, 40, {"year": 1999})
    stored = settings.artifact_root / image["image_uri"]
    assert Image.open(stored).size == (48, 40), "the canonical PNG is in the artifact store"
    assert client.get("/readyz").json()["points"] >= 1

    # the same pixels are the same record, whatever the file or fields
    dup = ingest(client, photo((250, 120, 0)), object_id="something-else")
    assert dup.status_code == 200
    assert dup.json()["duplicate"] is True and dup.json()["id"] == image["id"] and dup.json()["object_id"] == "orange-van"

    other = ingest(client, photo((0, 90, 200)), object_id="blue-boat").json()
    found = client.post("/v1/search", json={"query": "an orange van", "top_k": 5})
    assert found.status_code == 200
    result = found.json()
    assert {image["id"], other["id"]} <= {h["id"] for h in result["hits"]}
    assert result["retriever"]["kind"] == "zero-shot" and result["took_ms"] >= 0
    filtered = client.post("/v1/search", json={"query": "anything", "top_k": 5, "filter": {"object_id": "orange-van"}}).json()["hits"]
    assert [(h["id"], h["image_uri"], h["metadata"]) for h in filtered] == [(image["id"], image["image_uri"], {"year": 1999})]
    assert -1.0 <= filtered[0]["score"] <= 1.0

    fetched = client.get(f"/v1/images/{image['id']}")
    assert fetched.status_code == 200 and fetched.json()["content_hash"] == image["content_hash"]

    assert client.delete(f"/v1/images/{image['id']}").status_code == 204
    assert client.get(f"/v1/images/{image['id']}").status_code == 404
    assert client.delete(f"/v1/images/{image['id']}").status_code == 404
    assert not stored.exists()
    assert client.post("/v1/search", json={"query": "x", "top_k": 5, "filter": {"object_id": "orange-van"}}).json()["hits"] == []
    remaining = {h["id"] for h in client.post("/v1/search", json={"query": "x", "top_k": 5}).json()["hits"]}
    assert image["id"] not in remaining and other["id"] in remaining


BAD_UPLOADS = [
    (b"not an image", {}, 422, "invalid_image"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", {}, 422, "invalid_image"),
    (b"", {}, 422, "empty_image"),
    (b"\x89PNG" + b"\0" * MAX_UPLOAD_BYTES, {}, 413, "image_too_large"),
    (photo((1, 1, 1), size=(256, 256)), {}, 422, "image_too_many_pixels"),
    (photo((2, 2, 2)), {"metadata": "{not json"}, 422, "invalid_metadata"),
    (photo((2, 2, 2)), {"metadata": "[1, 2]"}, 422, "invalid_metadata"),
]


@pytest.mark.parametrize("data,fields,status,code", BAD_UPLOADS)
def test_bad_uploads_are_4xx_and_store_nothing(client, data, fields, status, code):
    before = client.get("/readyz").json()["points"]
    response = ingest(client, data, **fields)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and response.json()["error"]["message"]
    assert client.get("/readyz").json()["points"] == before


def test_upload_without_a_file_is_422(client):
    response = client.post("/v1/images", data={"caption": "no file"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "body,code",
    [
        ({"query": ""}, "empty_query"),
        ({"query": "   "}, "empty_query"),
        ({"query": "x" * 1001}, "query_too_long"),
        ({"query": "car", "top_k": 51}, "top_k_too_large"),
        ({"query": "car", "top_k": 0}, "invalid_request"),
        ({"query": "car", "retriever": "reflective"}, "unknown_retriever"),
        ({"query": "car", "retriever": "standard", "model": "tiny-sd"}, "unknown_retriever"),
        ({"query": "car", "model": "no-such-model"}, "unknown_retriever"),
        ({"query": "car", "limit": 3}, "invalid_request"),
    ],
)
def test_bad_searches_are_422(client, body, code):
    response = client.post("/v1/search", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code


def test_unknown_and_malformed_image_ids_are_404(client):
    for image_id in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        assert client.get(f"/v1/images/{image_id}").json()["error"]["code"] == "image_not_found"
        assert client.delete(f"/v1/images/{image_id}").status_code == 404


def test_metrics_count_ingests(client):
    def count(text: str, result: str) -> float:
        line = next((ln for ln in text.splitlines() if ln.startswith(f'realrag_retriever_ingests_total{{result="{result}"}}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = client.get("/metrics").text
    ingest(client, photo((7, 77, 177)))
    ingest(client, photo((7, 77, 177)))
    ingest(client, b"junk")
    after = client.get("/metrics").text
    assert [count(after, r) - count(before, r) for r in ("new", "duplicate", "rejected")] == [1.0, 1.0, 1.0]


def test_image_decoded_from_jpeg_is_stored_as_png(client):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 10, 10)).save(buf, format="JPEG")
    response = client.post("/v1/images", files={"file": ("x.jpg", buf.getvalue(), "image/jpeg")})
    assert response.status_code == 201
    stored = client.app.state.retriever.settings.artifact_root / response.json()["image_uri"]
    assert response.json()["image_uri"].endswith(".png") and Image.open(stored).format == "PNG"


@pytest.mark.parametrize(
    "bad",
    [
        {"object_id": 1.5},
        {"object_id": None},
        {"object_id": {"nested": 1}},
        {"object_id": [1, "a"]},
        {"object_id": 2**63},
        {"": "x"},
        {"a..b": "x"},
        {"$x": "x"},
        [1],
    ],
)
def test_malformed_filters_are_422_not_a_crash(client, bad):
    """Qdrant's engine raises on these (TypeError, ValueError): the typed filter refuses them first."""
    response = client.post("/v1/search", json={"query": "car", "filter": bad})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_filter"
    assert response.json()["error"]["message"].startswith("filter: invalid filter")


def test_the_index_refuses_an_unmatchable_filter_with_invalid_filter(client):
    """Behind the schema, the engine adapter still turns what it cannot match into InvalidFilter."""
    from retriever_service.index import InvalidFilter
    from retriever_service.index.edge_index import to_filter

    for bad in ({"object_id": 1.5}, {"a..b": "x"}, {"object_id": "\ud800"}):
        with pytest.raises(InvalidFilter):
            to_filter(bad)
    assert to_filter({"object_id": ["a", "b"], "metadata.year": 1999, "label": True}) is not None


@pytest.mark.parametrize(
    "image_id",
    ["urn:uuid:00000000-0000-0000-0000-000000000000", "{00000000-0000-0000-0000-000000000000}", "00000000000000000000000000000000"],
)
def test_only_canonical_uuids_are_image_ids(client, image_id):
    assert client.get(f"/v1/images/{image_id}").status_code == 404
    assert client.delete(f"/v1/images/{image_id}").status_code == 404


@pytest.mark.parametrize(
    "metadata,problem",
    [
        ('{"x": NaN}', "finite"),
        ('{"x": [Infinity]}', "finite"),
        ('{"x": "\\ud800"}', "Unicode"),
        ('{"\\ud800": 1}', "Unicode"),
        ("[" * 5000 + "]" * 5000, "JSON object"),
        ('{"a":' * 20 + "1" + "}" * 20, "nested"),
    ],
)
def test_metadata_the_index_cannot_store_is_422(client, metadata, problem):
    before = client.get("/readyz").json()["points"]
    response = ingest(client, photo((4, 5, 6)), metadata=metadata)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_metadata" and problem in response.json()["error"]["message"]
    assert client.get("/readyz").json()["points"] == before


def test_lone_surrogates_in_text_fields_are_422(client):
    response = client.post("/v1/search", content=b'{"query": "a\\ud800"}', headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_unicode"


def test_openapi_documents_the_configured_limits(client):
    search = client.get("/openapi.json").json()["components"]["schemas"]["SearchRequest"]["properties"]
    assert search["query"]["maxLength"] == 1000 and search["query"]["minLength"] == 1
    assert search["top_k"]["maximum"] == 50
    assert "x-realrag-limits" not in client.get("/openapi.json").text
