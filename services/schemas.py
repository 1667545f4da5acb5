"""Typed contracts shared by the gateway, the retriever client and the worker (no torch here)."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


class RetrievalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    top_k: int | None = Field(None, ge=0, description="references to condition on; default from settings")
    filter: dict[str, Any] | None = Field(
        None, description="payload equality filter, e.g. {'object_id': 'cybertruck'}"
    )
    retriever: RetrieverKind | None = Field(
        None, description="which retriever serves the query; default: the model's own"
    )
    query: str | None = Field(None, description="retrieval text; default: the prompt")


class GenerationRequest(BaseModel):
    """Body of POST /v1/generations (OpenAI-Images subset plus RealRAG extensions)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str
    negative_prompt: str | None = None
    model: str | None = None
    n: int = 1
    size: str | None = Field(None, description="OpenAI style 'WIDTHxHEIGHT'; overrides width/height")
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    ip_scale: float | None = Field(None, ge=0.0, le=2.0)
    seed: int | None = Field(None, ge=0, lt=2**63)
    retrieval: RetrievalOptions = Field(default_factory=RetrievalOptions)
    reference_ids: list[str] | None = Field(
        None, description="condition on these corpus images instead of retrieving"
    )
    webhook_url: str | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


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
    """Our own record of a generation job, kept in Redis with a TTL; Celery only transports it."""

    id: str
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


class GenerateTask(BaseModel):
    """The Celery payload: everything the worker needs, resolved by the gateway."""

    job_id: str
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
    model_config = ConfigDict(extra="forbid")

    query: str
    top_k: int = Field(5, ge=1)
    filter: dict[str, Any] | None = None
    retriever: RetrieverKind | None = Field(
        None, description="zero-shot, standard or reflective; default: the model's own, else zero-shot"
    )
    model: str | None = Field(None, description="generator model key whose retrievers to use")


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


class IngestResponse(CorpusImage):
    duplicate: bool = False
