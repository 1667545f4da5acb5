"""Client input is never a 5xx: the five bugs schemathesis found (ids put unescaped into retriever
URLs, seed -1 on the OpenAI route, lone surrogates, malformed filters, an id pattern ending in `$`),
the request body limit (413, also without Content-Length) and 405 with `Allow`.

Each case goes through the real gateway app and, where it is involved, the real retriever over HTTP,
and leaves nothing behind (no job record, no queued task)."""

from __future__ import annotations

import json

import pytest

JOB_KEYS = "realrag:job:*"
SURROGATE = "a\\ud800b"  # JSON text of a string holding a lone surrogate: valid JSON, not valid UTF-8


def raw_json(text: str) -> dict:
    """Send `text` as the body byte for byte (a client library would re-encode it)."""
    return {"content": text.encode(), "headers": {"content-type": "application/json"}}


def nothing_created(redis_db, queue_name: str, before: set[str]) -> bool:
    return set(redis_db.keys(JOB_KEYS)) == before and redis_db.llen(queue_name) == 0


# --- 1. corpus ids: validated with a full match, percent-encoded into retriever URLs ---------------
BAD_IMAGE_IDS = [
    "x%0A",  # a newline
    "x%00y",  # NUL
    "x%3Fy%3Dz",  # "?" (the retriever redirected, the gateway failed to parse the redirect)
    "x%23y",  # "#"
    "x%2F",  # "/" (a trailing slash: 307 at the retriever)
    "..",
    "%25",
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "%7B00000000-0000-0000-0000-000000000000%7D",  # {uuid}
    "00000000000000000000000000000000",  # hex without dashes
    "00000000-0000-0000-0000-000000000000%0A",  # a valid id plus a newline: `$` would accept it
]


@pytest.mark.parametrize("image_id", BAD_IMAGE_IDS)
def test_malformed_corpus_ids_are_404(gateway, corpus, image_id):
    for method in ("GET", "DELETE"):
        response = gateway.request(method, f"/v1/corpus/images/{image_id}")
        assert response.status_code == 404, (method, response.text)
        assert response.json()["error"]["code"] in ("image_not_found", "not_found")


def test_a_known_id_with_a_trailing_newline_is_not_that_image(gateway, corpus):
    image_id = corpus["red-car"]["id"]
    assert gateway.get(f"/v1/corpus/images/{image_id}").status_code == 200
    assert gateway.get(f"/v1/corpus/images/{image_id}%0A").status_code == 404
    assert gateway.get(f"/v1/corpus/images/{image_id.upper()}").status_code == 200, "UUIDs are case-insensitive"


@pytest.mark.parametrize("image_id", ["x\n", "x?y=1", "a/b", "../x", "00000000-0000-0000-0000-000000000000\n"])
def test_malformed_reference_ids_are_unknown_references(gateway, corpus, redis_db, queue_name, image_id):
    before = set(redis_db.keys(JOB_KEYS))
    response = gateway.post("/v1/generations", json={"prompt": "ok", "reference_ids": [image_id]})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "unknown_reference"
    assert nothing_created(redis_db, queue_name, before)


# --- 2. seed -1 -------------------------------------------------------------------------------------
def test_negative_seed_is_refused_on_both_generation_routes(gateway, redis_db, queue_name):
    before = set(redis_db.keys(JOB_KEYS))
    native = gateway.post("/v1/generations", json={"prompt": "ok", "seed": -1})
    assert native.status_code == 422 and native.json()["error"]["code"] == "invalid_request"
    assert native.json()["error"]["details"][0]["loc"] == ["body", "seed"]
    # OpenAI's convention on its route: bad input is 400 (the SDK's BadRequestError), never a 500
    openai = gateway.post("/v1/images/generations", json={"prompt": "ok", "seed": -1})
    assert openai.status_code == 400, openai.text
    assert openai.json()["error"]["code"] == "invalid_request"
    assert nothing_created(redis_db, queue_name, before)


# --- 3. lone surrogates -----------------------------------------------------------------------------
SURROGATE_BODIES = [
    ("/v1/generations", f'{{"prompt": "{SURROGATE}"}}', ["body", "prompt"]),
    ("/v1/generations", f'{{"prompt": "ok", "negative_prompt": "{SURROGATE}"}}', ["body", "negative_prompt"]),
    ("/v1/generations", f'{{"prompt": "ok", "user": "{SURROGATE}"}}', ["body", "user"]),
    ("/v1/generations", f'{{"prompt": "ok", "retrieval": {{"query": "{SURROGATE}"}}}}', ["body", "retrieval", "query"]),
    ("/v1/generations", f'{{"prompt": "ok", "metadata": {{"k": "{SURROGATE}"}}}}', ["body", "metadata", "k"]),
    ("/v1/generations", f'{{"prompt": "ok", "reference_ids": ["{SURROGATE}"]}}', ["body", "reference_ids", 0]),
    ("/v1/corpus/search", f'{{"query": "{SURROGATE}"}}', ["body", "query"]),
]


@pytest.mark.parametrize("path,body,loc", SURROGATE_BODIES)
def test_lone_surrogates_are_422_invalid_unicode(gateway, corpus, redis_db, queue_name, path, body, loc):
    before = set(redis_db.keys(JOB_KEYS))
    response = gateway.post(path, **raw_json(body))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_unicode"
    assert "lone surrogate" in error["message"]
    assert [d["loc"] for d in error["details"] if d["type"] == "lone_surrogate"] == [loc]
    assert nothing_created(redis_db, queue_name, before)


def test_a_surrogate_in_a_key_is_answered_in_valid_json(gateway):
    response = gateway.post("/v1/generations", **raw_json(f'{{"prompt": "ok", "metadata": {{"{SURROGATE}": "v"}}}}'))
    assert response.status_code == 422
    json.loads(response.content.decode("utf-8"))  # the error quotes the key, escaped


@pytest.mark.parametrize("field", ["prompt", "user", "negative_prompt"])
def test_lone_surrogates_on_the_openai_route_are_400(gateway, redis_db, queue_name, field):
    before = set(redis_db.keys(JOB_KEYS))
    body = {"prompt": "ok", field: "__S__"}
    response = gateway.post("/v1/images/generations", **raw_json(json.dumps(body).replace("__S__", SURROGATE)))
    assert response.status_code == 400, response.text
    assert nothing_created(redis_db, queue_name, before)


def test_lone_surrogates_in_upload_fields_are_422(gateway, corpus):
    from .helpers import solid_png

    response = gateway.post(
        "/v1/corpus/images",
        files={"file": ("a.png", solid_png((3, 1, 4)), "image/png")},
        data={"metadata": '{"note": "\\ud800"}'},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_metadata"


# --- 4. malformed filters ---------------------------------------------------------------------------
BAD_FILTERS = [
    ({"object_id": 1.5}, "object_id"),
    ({"object_id": None}, "object_id"),
    ({"object_id": {"nested": 1}}, "object_id"),
    ({"object_id": []}, "object_id"),
    ({"object_id": [1, "a"]}, "object_id"),
    ({"object_id": [[1]]}, "object_id"),
    ({"object_id": 2**63}, "object_id"),
    ({"object_id": "x" * 300}, "object_id"),
    ({"": "x"}, "payload key"),
    ({"a..b": "x"}, "payload key"),
    ({"a[": "x"}, "payload key"),
    ({"$x": "x"}, "payload key"),
    ({"object_id\n": "x"}, "payload key"),
    ({f"k{i}": 1 for i in range(17)}, "16"),
    ([1, 2], "object"),
    ("object_id=x", "object"),
]


@pytest.mark.parametrize("bad,reason", BAD_FILTERS)
def test_malformed_filters_are_422_with_the_reason(gateway, corpus, redis_db, queue_name, bad, reason):
    before = set(redis_db.keys(JOB_KEYS))
    for path, body in (
        ("/v1/generations", {"prompt": "ok", "retrieval": {"filter": bad}}),
        ("/v1/corpus/search", {"query": "car", "filter": bad}),
    ):
        response = gateway.post(path, json=body)
        assert response.status_code == 422, (path, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_filter", error
        assert reason in error["message"], error["message"]
    assert nothing_created(redis_db, queue_name, before)


def test_well_formed_filters_of_every_kind_are_answered(gateway, corpus):
    for good in ({"object_id": "red-car"}, {"object_id": ["red-car", "blue-sky"]}, {"metadata.year": 1999}, {"label": True}, {}):
        response = gateway.post("/v1/corpus/search", json={"query": "car", "top_k": 5, "filter": good})
        assert response.status_code == 200, (good, response.text)
    two = gateway.post("/v1/corpus/search", json={"query": "car", "top_k": 5, "filter": {"object_id": ["red-car", "blue-sky"]}})
    assert {h["id"] for h in two.json()["hits"]} == {corpus["red-car"]["id"], corpus["blue-sky"]["id"]}


def test_the_retrievers_client_errors_pass_through(gateway, corpus):
    """A 4xx of the retriever is the client's: passed through with its code, never a 503 to retry."""
    too_long = gateway.post("/v1/corpus/search", json={"query": "car", "top_k": 51})
    assert too_long.status_code == 422 and too_long.json()["error"]["code"] == "top_k_too_large"
    blank = gateway.post("/v1/generations", json={"prompt": "ok", "retrieval": {"query": "   "}})
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "empty_query"


# --- 5. job ids: a full match -----------------------------------------------------------------------
@pytest.mark.parametrize("job_id", ["x%0A", "x%0D", "x%00", "x%20", "x.y", "x" * 65, "%C3%A9"])
def test_put_with_a_malformed_job_id_is_422(gateway, redis_db, queue_name, job_id):
    before = set(redis_db.keys(JOB_KEYS))
    response = gateway.put(f"/v1/generations/{job_id}", json={"prompt": "ok", "retrieval": {"enabled": False}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_job_id"
    assert nothing_created(redis_db, queue_name, before)


# --- request body limit -----------------------------------------------------------------------------
def test_a_json_body_over_the_limit_is_413(make_gateway, redis_db, queue_name):
    before = set(redis_db.keys(JOB_KEYS))
    with make_gateway(max_body_bytes="4096") as gateway:
        body = json.dumps({"prompt": "ok", "user": "x" * 5000}).encode()
        declared = gateway.post("/v1/generations", content=body, headers={"content-type": "application/json"})

        def chunks():  # no Content-Length: the body arrives chunked and is counted as it comes
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        streamed = gateway.post("/v1/generations", content=chunks(), headers={"content-type": "application/json"})
        small = gateway.post("/v1/generations", json={"prompt": "ok", "retrieval": {"enabled": False}})
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "request_too_large"
        assert response.json()["error"]["details"] == {"limit_bytes": 4096}
    assert "content-length" not in streamed.request.headers
    assert small.status_code == 202
    assert len(set(redis_db.keys(JOB_KEYS)) - before) == 1, "only the small request created a job"


def test_uploads_may_be_as_large_as_the_upload_limit(make_gateway, corpus):
    from .helpers import solid_png

    image = solid_png((8, 6, 4), size=(300, 300))
    with make_gateway(max_body_bytes="1024", max_upload_bytes=str(len(image) + 10)) as gateway:
        upload = gateway.post("/v1/corpus/images", files={"file": ("a.png", image, "image/png")})
        over = gateway.post("/v1/corpus/images", files={"file": ("a.png", image + b"\0" * 4096, "image/png")})
        json_route = gateway.post("/v1/corpus/search", json={"query": "x" * 2000})
        assert upload.status_code in (200, 201), upload.text
        assert gateway.delete(f"/v1/corpus/images/{upload.json()['id']}").status_code == 204
    assert over.status_code == 413 and over.json()["error"]["code"] == "request_too_large"
    assert json_route.status_code == 413


# --- unsupported methods ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path,allowed",
    [
        ("/v1/generations", "POST"),
        ("/v1/generations/some-id", "DELETE, GET, PUT"),
        ("/v1/corpus/images/some-id", "DELETE, GET"),
        ("/healthz", "GET"),
    ],
)
def test_unsupported_methods_are_405_with_allow(gateway, path, allowed):
    for method in ("TRACE", "PATCH"):
        response = gateway.request(method, path)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allowed
        assert response.json()["error"]["code"] == "method_not_allowed"


# --- artifacts: any key is a 404 at worst -----------------------------------------------------------
@pytest.mark.parametrize("key", ["x" * 5000 + ".png", "a/" * 3000 + "b.png", "%00.png", "corpus/%0A.png", "%2e%2e/x.png"])
def test_artifact_keys_the_file_system_refuses_are_404(gateway, key):
    response = gateway.get(f"/v1/artifacts/{key}")
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] in ("artifact_not_found", "not_found")  # "\n": no route matches
