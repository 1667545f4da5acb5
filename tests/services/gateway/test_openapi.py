"""/openapi.json tells the truth: the statuses each route answers with their error body, the
configured limits as constraints, the API-key security schemes, examples, stable operation ids.

Whether the routes really answer only what is documented is schemathesis's job
(tests/e2e/test_schemathesis.py); this checks the document itself."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from .helpers import tenants_setting

# operation id -> every status the route can answer (the document must list exactly these), besides
# 431 (the header limit) on every route and, with tenants, 429 (the rate limit) on every keyed route
STATUSES = {
    "health-healthz": {200},
    "health-readyz": {200, 503},
    "health-metrics": {200, 401, 403},
    "generations-create_generation": {200, 202, 400, 401, 409, 413, 422, 429, 503},
    "generations-put_generation": {200, 202, 400, 401, 409, 413, 422, 429, 503},
    "generations-get_generation": {200, 401, 404, 503},
    "generations-cancel_generation": {200, 401, 404, 503},
    "generations-cancel_generation_post": {200, 401, 404, 503},
    "generations-generation_events": {200, 204, 401, 404, 422, 503},
    "openai-openai_generations": {200, 400, 401, 409, 413, 429, 500, 503, 504},
    "corpus-add_image": {200, 201, 400, 401, 403, 413, 422, 503},
    "corpus-get_image": {200, 401, 404, 503},
    "corpus-delete_image": {204, 401, 403, 404, 503},
    "corpus-search": {200, 400, 401, 413, 422, 503},
    "models-list_models": {200, 401},
    "artifacts-get_artifact": {200, 307, 401, 403, 404, 503},
}
OPEN = {"health-healthz", "health-readyz"}
# a token of their own (metrics), or a key or a signed URL (artifacts): not the API-key-only schemes
OWN_AUTH = {"health-metrics": None, "artifacts-get_artifact": [{"bearerAuth": []}, {"apiKeyAuth": []}, {}]}


def operations(document: dict) -> dict[str, dict]:
    return {op["operationId"]: op for item in document["paths"].values() for op in item.values()}


@pytest.fixture
def document(gateway) -> dict:
    response = gateway.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_document_is_valid_openapi(document):
    validate(document)
    assert "x-realrag-limits" not in str(document), "every limit marker is resolved"


def test_every_route_documents_exactly_the_statuses_it_answers(document):
    ops = operations(document)
    assert set(ops) == set(STATUSES), "operation ids are stable: clients generated from them keep working"
    for op_id, op in ops.items():
        assert {int(s) for s in op["responses"]} == STATUSES[op_id] | {431}, op_id


def test_with_tenants_every_keyed_route_documents_the_rate_limit(make_gateway):
    with make_gateway(tenants=tenants_setting(("alpha", "k"))) as gateway:
        ops = operations(gateway.get("/openapi.json").json())
    for op_id, op in ops.items():
        if op_id in OWN_AUTH:
            continue  # their own auth (a token, or a key or a signed URL): not metered per tenant
        keyed = op_id not in OPEN
        assert {int(s) for s in op["responses"]} == STATUSES[op_id] | {431} | ({429} if keyed else set()), op_id
        if keyed:
            assert op["responses"]["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}, op_id


def test_errors_have_the_error_body_schema(document):
    assert "HTTPValidationError" not in document["components"]["schemas"], "FastAPI's {detail} 422 is not what we send"
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["error"]
    detail = document["components"]["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message"}
    for op_id, op in operations(document).items():
        for status, response in op["responses"].items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.rsplit("/", 1)[1] in ("ErrorBody", "OpenAIErrorBody"), (op_id, status)
    queue_full = operations(document)["generations-create_generation"]["responses"]["429"]
    assert "Retry-After" in queue_full["headers"]


def test_success_bodies_are_documented(document):
    ops = operations(document)
    schemas = document["components"]["schemas"]

    def schema_of(op_id: str, status: int, media_type: str = "application/json") -> dict:
        return ops[op_id]["responses"][str(status)]["content"][media_type]["schema"]

    assert schema_of("generations-create_generation", 202)["$ref"].endswith("/JobView")
    job = schemas["JobView"]["properties"]
    assert "request_hash" not in job and "worker" not in job, "internal fields are not part of the view"
    assert "fraction" in schemas["ProgressView"]["properties"]
    assert schema_of("corpus-search", 200)["$ref"].endswith("/SearchResult")
    assert schema_of("openai-openai_generations", 200)["$ref"].endswith("/ImagesResponse")
    assert schema_of("models-list_models", 200)["$ref"].endswith("/ModelList")
    # the routes that do not answer JSON say what they answer
    assert set(ops["health-metrics"]["responses"]["200"]["content"]) == {"text/plain"}
    assert set(ops["artifacts-get_artifact"]["responses"]["200"]["content"]) == {"image/png"}
    assert set(ops["generations-generation_events"]["responses"]["200"]["content"]) == {"text/event-stream"}


def test_limits_are_the_configured_settings(make_gateway):
    limits = {"max_n": "2", "max_prompt_chars": "77", "min_size": "64", "max_size": "512", "max_steps": "9",
              "max_guidance": "12.5", "max_top_k": "2", "max_search_results": "7"}
    with make_gateway(**limits) as gateway:
        schemas = gateway.get("/openapi.json").json()["components"]["schemas"]
    request = schemas["GenerationRequest"]["properties"]
    assert (request["prompt"]["minLength"], request["prompt"]["maxLength"], request["prompt"]["pattern"]) == (1, 77, r"\S")
    assert (request["n"]["minimum"], request["n"]["maximum"]) == (1, 2)
    width = request["width"]["anyOf"][0]
    assert (width["type"], width["minimum"], width["maximum"]) == ("integer", 64, 512)
    assert request["steps"]["anyOf"][0]["maximum"] == 9
    assert request["guidance"]["anyOf"][0]["maximum"] == 12.5
    assert request["reference_ids"]["anyOf"][0]["maxItems"] == 2
    assert request["negative_prompt"]["anyOf"][0]["maxLength"] == 77
    assert request["seed"]["anyOf"][0]["minimum"] == 0
    retrieval = schemas["RetrievalOptions"]["properties"]
    assert retrieval["top_k"]["anyOf"][0] == {"type": "integer", "minimum": 0, "maximum": 2}
    search = schemas["SearchRequest"]["properties"]
    assert (search["top_k"]["minimum"], search["top_k"]["maximum"]) == (1, 7)
    assert search["query"]["maxLength"] == 77


def test_the_limits_in_the_document_are_the_ones_enforced(make_gateway):
    with make_gateway(max_n="2") as gateway:
        maximum = gateway.get("/openapi.json").json()["components"]["schemas"]["GenerationRequest"]["properties"]["n"]["maximum"]
        over = gateway.post("/v1/generations", json={"prompt": "ok", "n": maximum + 1, "retrieval": {"enabled": False}})
    assert over.status_code == 422 and over.json()["error"]["code"] == "n_out_of_range"


def test_filters_are_typed(document):
    schemas = document["components"]["schemas"]
    payload_filter = schemas["SearchRequest"]["properties"]["filter"]["anyOf"][0]
    assert payload_filter["type"] == "object" and payload_filter["additionalProperties"] is False
    assert payload_filter["maxProperties"] == 16
    [value] = payload_filter["patternProperties"].values()
    assert {branch["type"] for branch in value["anyOf"]} == {"string", "integer", "boolean", "array"}


def test_security_schemes_cover_the_protected_routes(make_gateway):
    with make_gateway(tenants=tenants_setting(("alpha", "k"))) as gateway:
        document = gateway.get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {"type": "http", "scheme": "bearer", "description": schemes["bearerAuth"]["description"]}
    assert (schemes["apiKeyAuth"]["type"], schemes["apiKeyAuth"]["in"], schemes["apiKeyAuth"]["name"]) == ("apiKey", "header", "X-API-Key")
    for op_id, op in operations(document).items():
        if op_id in OPEN:
            assert "security" not in op and "401" not in op["responses"], op_id
        elif op_id in OWN_AUTH:
            assert op.get("security") == OWN_AUTH[op_id] and "401" in op["responses"], op_id
        else:
            assert op["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}], op_id
            assert "401" in op["responses"], op_id
        names = {p["name"].lower() for p in op.get("parameters", [])}
        assert not names & {"authorization", "x-api-key"}, "keys are security schemes, not parameters"


def test_without_keys_the_document_says_auth_is_optional(document):
    assert operations(document)["models-list_models"]["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}, {}]


def test_main_routes_have_examples(document):
    schemas = document["components"]["schemas"]
    assert schemas["GenerationRequest"]["examples"] and schemas["SearchRequest"]["examples"]
    openai_body = operations(document)["openai-openai_generations"]["requestBody"]["content"]["application/json"]
    assert {"openai", "realrag"} <= set(openai_body["examples"])
