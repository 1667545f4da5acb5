"""The gateway's OpenAPI document, kept truthful: every status a route answers with its body schema
(`responses(...)` in each route decorator), the configured limits as JSON-schema constraints
(`services.schemas.limits`, resolved from the running Settings), and the API-key security schemes.

The response models here document what the routes return; the routes build plain dicts (job views,
corpus records with URLs), so these models are for the document and for clients, never used to
filter a response.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field, create_model

from services.errors import ErrorBody, ErrorDetail
from services.schemas import (
    IngestResponse,
    Job,
    Reference,
    RetrieverInfo,
    SearchHit,
    apply_limits,
)
from services.settings import Settings, get_settings

from .views import PRIVATE_JOB_FIELDS

ERROR_DESCRIPTIONS = {
    400: "the body could not be parsed (not UTF-8, broken multipart)",
    401: "a valid API key is required: `Authorization: Bearer KEY` or `X-API-Key: KEY`",
    403: "the API key is valid but may not do this (e.g. an admin-only operation)",
    404: "no such resource",
    409: "conflict",
    413: "the request body is larger than REALRAG_MAX_BODY_BYTES (uploads: REALRAG_MAX_UPLOAD_BYTES + that)",
    422: "the request breaks the schema or a limit; `error.code` names the rule, `error.details` the fields",
    429: (
        "too many requests: the API key is over its requests per minute (`rate_limited`) or the queue is full "
        "(`queue_full`); retry after `Retry-After` seconds"
    ),
    431: "the request headers together are larger than REALRAG_MAX_HEADER_BYTES (`headers_too_large`)",
    500: "internal error",
    503: "a dependency (Redis, the retriever) is unreachable; nothing was created, retrying is safe",
    504: "timed out",
}
JOB_RESPONSES = {
    404: "no job with this id",
    409: (
        "the id or Idempotency-Key was used with a different body (`idempotency_conflict`), "
        "or that job is still being created (`job_conflict`)"
    ),
    422: (
        "the request breaks the schema or a limit (`empty_prompt`, `n_out_of_range`, `invalid_size`, `invalid_job_id`, "
        "`metadata_too_large`, ...)"
    ),
    429: (
        "retry after `Retry-After` seconds: the API key is over its requests per minute (`rate_limited`), its jobs "
        "in flight (`too_many_jobs_in_flight`) or its idempotency keys (`too_many_idempotency_keys`), or the queue "
        "is full (`queue_full`). A replay of an accepted request is answered, never refused"
    ),
    503: "Redis or the retriever is unreachable; nothing was created, retrying is safe",
}
OPENAI_RESPONSES = {
    400: "the request breaks the schema or a limit (OpenAI says 400 where the rest of this API says 422)",
    409: "the job was canceled, or the Idempotency-Key was used with a different body",
    429: (
        "retry after `Retry-After` seconds: the API key is over its requests per minute (`rate_limited`) or its jobs "
        "in flight (`too_many_jobs_in_flight`), or the queue is full (`queue_full`)"
    ),
    500: "the job failed (`generation_failed`); `x-should-retry: false`, since a retry would run it again",
    504: "the job is still running after REALRAG_SYNC_WAIT_TIMEOUT_S; poll /v1/generations/{id} (`error.details.job_id`)",
}
ERROR_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}},
}
RATE_LIMITED = "the API key is over its requests per minute (`rate_limited`); retry after `Retry-After` seconds"


def responses(
    *statuses: int, model: type[BaseModel] = ErrorBody, descriptions: dict[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """Error responses for a route decorator: each status with the error body `model` and a
    description (the default one, or this route's from `descriptions`)."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": model, "description": (descriptions or {}).get(status, ERROR_DESCRIPTIONS[status])}
        if status in ERROR_HEADERS:
            entry["headers"] = ERROR_HEADERS[status]
        documented[status] = entry
    return documented


def ok(model: type[BaseModel] | None, description: str, *, media_type: str = "application/json", **extra: Any) -> dict[str, Any]:
    """A success response: a model for JSON, or a plain media type (`image/png`, `text/plain`)."""
    entry: dict[str, Any] = {"description": description, **extra}
    if model is not None:
        entry["model"] = model
    else:
        entry["content"] = {media_type: {"schema": {"type": "string"}}}
    return entry


# --- What the routes return --------------------------------------------------------------------
class ProgressView(BaseModel):
    step: int
    total: int
    fraction: float = Field(description="step / total, 0 before the first step")


JobView: type[BaseModel] = create_model(  # the public view of a Job record (views.job_view)
    "JobView",
    __doc__="A generation job as clients see it: the record, URLs for every image, no internal fields.",
    **{  # type: ignore[call-overload]
        name: (field.annotation, field)
        for name, field in Job.model_fields.items()
        if name not in PRIVATE_JOB_FIELDS and name != "progress"
    },
    progress=(ProgressView, ...),
)


class CorpusImageView(IngestResponse):
    image_url: str = Field(description="where the stored PNG is served (GET it, no key needed)")


class SearchHitView(SearchHit):
    image_url: str


class SearchResult(BaseModel):
    hits: list[SearchHitView]
    retriever: RetrieverInfo
    took_ms: float


class ModelDefaults(BaseModel):
    steps: int
    guidance: float
    ip_scale: float
    width: int
    height: int


class ModelInfo(BaseModel):
    id: str
    object: str = "model"
    family: str
    description: str | None = None
    max_references: int
    defaults: ModelDefaults
    retrievers: list[str]
    default_retriever: str | None = None
    default: bool
    dtype: str = Field(description="the weights' dtype on the worker (float32, float16, bfloat16)")
    loaded: bool | None = Field(description="a live worker holds the model loaded; null when Redis is unreachable")
    loaded_on: list[str] = Field(default_factory=list, description="the devices of the workers holding it")


class ModelList(BaseModel):
    object: str = "list"
    data: list[ModelInfo]


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    redis: str
    retriever: dict[str, Any] = Field(description="the retriever's own /readyz, or {status: unavailable, error}")


class ImageData(BaseModel):
    url: str | None = None
    b64_json: str | None = None


class ImagesResponseExtension(BaseModel):
    job_id: str
    seeds: list[int]
    references: list[Reference]


class ImagesResponse(BaseModel):
    """OpenAI's images response, plus `realrag` (the job behind it)."""

    created: int
    data: list[ImageData]
    realrag: ImagesResponseExtension


class OpenAIErrorDetail(ErrorDetail):
    type: str | None = Field(None, description="OpenAI's error type: invalid_request_error or server_error")
    param: str | None = Field(None, description="the request field the error is about")


class OpenAIErrorBody(BaseModel):
    """OpenAI's error body (the official SDK maps it to its error classes)."""

    error: OpenAIErrorDetail


# --- The document ------------------------------------------------------------------------------
def install_openapi(app: FastAPI) -> None:
    """Wrap `app.openapi` so the document carries the running settings' limits; the lifespan resets
    `app.openapi_schema` so a restart with other settings documents those."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            settings: Settings = getattr(app.state, "settings", None) or get_settings()
            apply_limits(document, settings)
            _drop_generated_validation_errors(document)
            _document_request_limits(document, settings)
            if not settings.auth_enabled:
                _make_security_optional(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _operations(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for item in document.get("paths", {}).values() for op in item.values() if isinstance(op, dict)]


def _drop_generated_validation_errors(document: dict[str, Any]) -> None:
    """FastAPI adds a 422 with its own `{detail: [...]}` body to every route with parameters; ours is
    ErrorBody, and each route that can answer 422 documents it itself."""
    generated = "#/components/schemas/HTTPValidationError"
    for operation in _operations(document):
        response = operation.get("responses", {}).get("422", {})
        if response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref") == generated:
            del operation["responses"]["422"]
    schemas = document.get("components", {}).get("schemas", {})
    removed = {name: schemas.pop(name) for name in ("HTTPValidationError", "ValidationError") if name in schemas}
    text = json.dumps(document)
    for name, schema in removed.items():
        if f'"#/components/schemas/{name}"' in text or (name == "ValidationError" and "HTTPValidationError" in schemas):
            schemas[name] = schema


def _document_request_limits(document: dict[str, Any], settings: Settings) -> None:
    """The answers of limits no route sees: 431 (the header limit, a middleware) everywhere; with
    tenants, 429 on every route that requires a key: each of those meters the tenant's requests
    (deps.CurrentTenant; the creating routes meter in GenerationService.submit and document 429)."""
    error_body = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    for operation in _operations(document):
        answers = operation.setdefault("responses", {})
        answers.setdefault("431", {"description": ERROR_DESCRIPTIONS[431], "content": error_body})
        keyed = operation.get("security") and {} not in operation["security"]  # optional (artifacts): unmetered
        if settings.auth_enabled and keyed and "429" not in answers:
            answers["429"] = {"description": RATE_LIMITED, "headers": ERROR_HEADERS[429], "content": error_body}


def _make_security_optional(document: dict[str, Any]) -> None:
    """No REALRAG_TENANTS: the protected routes answer without a key too (`{}` = no requirement)."""
    for operation in _operations(document):
        if operation.get("security") and {} not in operation["security"]:
            operation["security"].append({})
