"""Typed contracts shared by the gateway, the retriever client and the worker (no torch here)."""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError


class JobStatus(StrEnum):
    queued = "queued"
    retrieving = "retrieving"
    generating = "generating"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.canceled)


RetrieverKind = Literal["zero-shot", "standard", "reflective"]


# --- Request field types ------------------------------------------------------------------------
# Limits that are settings (REALRAG_MAX_N, ...) are enforced where the settings are (the gateway's
# `resolve`, the retriever's handlers) with their own error codes; the fields only name them, and
# `apply_limits` writes the configured values into the OpenAPI document as JSON-schema constraints.
LIMITS_KEY = "x-realrag-limits"
_CONSTRAINT_TYPES = {
    "minLength": "string",
    "maxLength": "string",
    "pattern": "string",
    "minimum": "number",
    "maximum": "number",
    "minItems": "array",
    "maxItems": "array",
}


def limits(**constraints: str | int | float) -> dict[str, Any]:
    """JSON-schema constraints for a field: a string value names the Settings field that holds the
    bound (`maximum="max_n"`), except for `pattern`; numbers are literal bounds."""
    return {LIMITS_KEY: constraints}


def apply_limits(document: Any, settings: Any) -> Any:
    """Resolve every `limits(...)` marker in a JSON-schema / OpenAPI document against `settings`,
    in place (the marker is removed). Constraints go onto the matching branch of an `anyOf`."""
    if isinstance(document, list):
        for item in document:
            apply_limits(item, settings)
    elif isinstance(document, dict):
        marker = document.pop(LIMITS_KEY, None)
        for value in document.values():
            apply_limits(value, settings)
        if marker:
            branches = [b for b in document.get("anyOf", []) if b.get("type") not in (None, "null")] or [document]
            for name, bound in marker.items():
                value = getattr(settings, bound) if isinstance(bound, str) and name != "pattern" else bound
                kind = _CONSTRAINT_TYPES[name]
                for branch in branches:
                    if branch is document or _schema_kind(branch) == kind:
                        branch[name] = value
    return document


def _schema_kind(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    return "number" if kind in ("integer", "number") else kind


def _valid_unicode(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PydanticCustomError(
            "lone_surrogate", "text must be valid Unicode (a lone surrogate at position {position})", {"position": exc.start}
        ) from None
    return value


# Any client text that is stored, logged or forwarded: JSON allows "\ud800", UTF-8 (Redis, HTTP) does not.
Text = Annotated[str, AfterValidator(_valid_unicode)]

CORPUS_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_corpus_id(value: str) -> bool:
    """Corpus image ids are UUIDs in their canonical form (full match: no braces, no urn:, no newline)."""
    return CORPUS_ID.fullmatch(value) is not None


# The owner (payload field `tenant`) of the corpus images every tenant sees; only admins write them.
# Other images are private to the tenant named. No tenant may be called this (services.settings).
SHARED_CORPUS = "shared"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # a tenant name (services.settings.TenantConfig)


# --- Retrieval filters --------------------------------------------------------------------------
# The payload equality filter both Qdrant engines understand (`MatchValue` / `MatchAny`), typed here
# so that a malformed one is a 422 naming the problem instead of an exception inside the retriever.
FILTER_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,3}$"
MAX_FILTER_CONDITIONS = 16
MAX_FILTER_VALUES = 64
MAX_FILTER_TEXT = 256
FILTER_SHAPE = "a string, an integer, a boolean, or a non-empty list of strings or of integers"

FilterText = Annotated[StrictStr, Field(max_length=MAX_FILTER_TEXT), AfterValidator(_valid_unicode)]
FilterInt = Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)]
FilterValue = (
    FilterText
    | FilterInt
    | StrictBool
    | Annotated[list[FilterText], Field(min_length=1, max_length=MAX_FILTER_VALUES)]
    | Annotated[list[FilterInt], Field(min_length=1, max_length=MAX_FILTER_VALUES)]
)
_SHAPE_ERRORS = {"string_type", "int_type", "bool_type", "list_type", "int_from_float", "is_instance_of"}


def _filter_reason(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    first = errors[0]
    key = first["loc"][0] if first["loc"] else None
    if key is None:
        reason = first["msg"] if first["type"] != "dict_type" else "a filter is an object of payload key to value"
    elif len(first["loc"]) > 1 and first["loc"][1] == "[key]":
        reason = f"{key!r} is not a payload key (letters, digits and _, dotted for nested fields, at most 64 each)"
    else:
        specific = next((e for e in errors if e["type"] not in _SHAPE_ERRORS), None)
        reason = f"{key}: {specific['msg'] if specific else 'must be ' + FILTER_SHAPE}"
    raise PydanticCustomError("invalid_filter", "invalid filter: {reason}", {"reason": reason}) from None


PayloadFilter = Annotated[
    dict[Annotated[str, Field(pattern=FILTER_KEY_PATTERN)], FilterValue],
    Field(
        max_length=MAX_FILTER_CONDITIONS,
        json_schema_extra={"additionalProperties": False},
        description=(
            "payload equality filter: every key must match, e.g. {\"object_id\": \"cybertruck\"}; a list "
            f"matches any of its values. Values: {FILTER_SHAPE}."
        ),
    ),
    WrapValidator(_filter_reason),
]


class RetrievalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    top_k: int | None = Field(
        None,
        ge=0,
        description="references to condition on; default REALRAG_DEFAULT_TOP_K (each model may allow fewer)",
        json_schema_extra=limits(maximum="max_top_k"),
    )
    filter: PayloadFilter | None = None
    retriever: RetrieverKind | None = Field(
        None, description="which retriever serves the query; default: the model's own"
    )
    query: Text | None = Field(
        None, description="retrieval text; default: the prompt", json_schema_extra=limits(maxLength="max_prompt_chars")
    )


class GenerationRequest(BaseModel):
    """Body of POST /v1/generations (OpenAI-Images subset plus RealRAG extensions)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"prompt": "a red cybertruck parked at night", "n": 1, "size": "512x512", "seed": 7},
                {"prompt": "a photo of my dog on a beach", "retrieval": {"top_k": 1, "filter": {"object_id": "my-dog"}}},
            ]
        },
    )

    prompt: Text = Field(
        description="what to draw (not blank)",
        json_schema_extra=limits(minLength=1, maxLength="max_prompt_chars", pattern=r"\S"),
    )
    negative_prompt: Text | None = Field(None, json_schema_extra=limits(maxLength="max_prompt_chars"))
    model: Text | None = Field(None, max_length=200, description="a key of GET /v1/models; default: the deployment's default")
    n: int = Field(1, description="images to generate", json_schema_extra=limits(minimum=1, maximum="max_n"))
    size: Text | None = Field(
        None,
        min_length=1,
        description="OpenAI style 'WIDTHxHEIGHT'; overrides width/height (each within the size limits)",
        json_schema_extra=limits(pattern=r"^[0-9]{1,5}x[0-9]{1,5}$"),
    )
    # ge=1: 0 is not "the default" (leave the field out for that); the configured bounds are checked in resolve
    width: int | None = Field(None, ge=1, json_schema_extra=limits(minimum="min_size", maximum="max_size"))
    height: int | None = Field(None, ge=1, json_schema_extra=limits(minimum="min_size", maximum="max_size"))
    steps: int | None = Field(None, json_schema_extra=limits(minimum=1, maximum="max_steps"))
    guidance: float | None = Field(None, json_schema_extra=limits(minimum=0, maximum="max_guidance"))
    ip_scale: float | None = Field(None, ge=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, lt=2**63, description="image i uses seed + i; default: random")
    retrieval: RetrievalOptions = Field(default_factory=RetrievalOptions)
    reference_ids: list[Text] | None = Field(
        None,
        description="condition on these corpus images instead of retrieving",
        json_schema_extra=limits(maxItems="max_top_k"),
    )
    webhook_url: Text | None = Field(None, max_length=2048, description="POSTed the finished job (signed)")
    user: Text | None = Field(None, max_length=256)
    metadata: dict[Annotated[Text, Field(max_length=128)], Annotated[Text, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=64
    )


class Reference(BaseModel):
    id: str
    score: float | None = None
    caption: str | None = None
    object_id: str | None = None
    label: str | None = None
    image_uri: str
    image_url: str | None = None


class OutputImage(BaseModel):
    index: int
    seed: int
    uri: str
    url: str | None = None
    width: int
    height: int


class Progress(BaseModel):
    step: int = 0
    total: int = 0

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 0.0


class JobError(BaseModel):
    code: str
    message: str


class RetrieverInfo(BaseModel):
    kind: str
    checkpoint: str | None = None
    collection: str | None = None


class Timings(BaseModel):
    retrieval_ms: float | None = None
    queue_ms: float | None = None
    load_ms: float | None = None
    generation_ms: float | None = None
    store_ms: float | None = None
    total_ms: float | None = None


class Job(BaseModel):
    """Our own record of a generation job, kept in Redis with a TTL; Celery only transports it.

    `id` is the client-facing id (chosen by the client with PUT, else random), unique only within
    its tenant. `internal_id` (random) names the job everywhere else: its Redis keys, the Celery
    task, its pub/sub channel and its output paths, so none of those can be derived from a client id."""

    id: str
    internal_id: str = Field("", description="private; '' (records written before tenants): the same as id")
    tenant: str = Field("local", description="private: the owning tenant")
    status: JobStatus = JobStatus.queued
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    model: str
    prompt: str
    request: GenerationRequest
    request_hash: str
    seeds: list[int] = Field(default_factory=list)
    references: list[Reference] = Field(default_factory=list)
    retriever: RetrieverInfo | None = None
    outputs: list[OutputImage] = Field(default_factory=list)
    progress: Progress = Field(default_factory=Progress)
    timings: Timings = Field(default_factory=Timings)
    error: JobError | None = None
    attempts: int = 0
    worker: str | None = None
    cancel_requested: bool = False
    version: int = Field(1, ge=1, description="bumped by every write; the id of the job's server-sent events")

    @model_validator(mode="after")
    def _internal_id_defaults_to_id(self) -> Job:
        if not self.internal_id:
            self.internal_id = self.id
        return self


# kept in the Redis record, logs and metrics; never shown to clients (views, webhook payloads): the
# worker's host:pid, the request digest used for idempotent replays, the internal id and the tenant
PRIVATE_JOB_FIELDS = frozenset({"request_hash", "worker", "internal_id", "tenant"})


class GenerateTask(BaseModel):
    """The Celery payload: everything the worker needs, resolved by the gateway."""

    job_id: str  # the job's internal_id (also the Celery task id)
    model: str
    prompt: str
    negative_prompt: str | None = None
    reference_uris: list[str] = Field(default_factory=list)
    reference_labels: list[str | None] = Field(default_factory=list)
    seeds: list[int]
    steps: int
    guidance: float
    width: int
    height: int
    ip_scale: float
    enqueued_at: float = Field(default_factory=time.time)


class SearchRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"query": "a red car", "top_k": 5, "filter": {"object_id": "red-car"}}]},
    )

    query: Text = Field(
        description="text to search the corpus for (not blank)",
        json_schema_extra=limits(minLength=1, maxLength="max_prompt_chars", pattern=r"\S"),
    )
    top_k: int = Field(5, ge=1, json_schema_extra=limits(maximum="max_search_results"))
    filter: PayloadFilter | None = None
    retriever: RetrieverKind | None = Field(
        None, description="zero-shot, standard or reflective; default: the model's own, else zero-shot"
    )
    model: Text | None = Field(None, max_length=200, description="generator model key whose retrievers to use")


class SearchHit(BaseModel):
    id: str
    score: float
    caption: str | None = None
    object_id: str | None = None
    label: str | None = None
    image_uri: str
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResponse(BaseModel):
    hits: list[SearchHit]
    retriever: RetrieverInfo
    took_ms: float


class CorpusImage(BaseModel):
    id: str
    caption: str | None = None
    object_id: str | None = None
    label: str | None = None
    image_uri: str
    content_hash: str
    width: int
    height: int
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: float | None = None
    tenant: str = Field(SHARED_CORPUS, description=f"{SHARED_CORPUS!r} (the shared corpus) or the owning tenant (private)")


class IngestResponse(CorpusImage):
    duplicate: bool = False
