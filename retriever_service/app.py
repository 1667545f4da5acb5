"""Retriever HTTP service: ``uvicorn retriever_service.app:app`` (open_clip + Qdrant)."""

from __future__ import annotations

import json
import math
import time
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, File, Form, Request, Response, UploadFile
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel

from services.batching import MicroBatcher
from services.errors import ApiError, install_error_handlers
from services.images import ImageRejected
from services.schemas import (
    SHARED_CORPUS,
    TENANT_PATTERN,
    CorpusImage,
    IngestResponse,
    SearchRequest,
    SearchResponse,
    Text,
    apply_limits,
    is_corpus_id,
)
from services.settings import get_settings

from .auth import require_token
from .encoder import set_torch_threads
from .index import InvalidFilter
from .service import DeployedTowerUnavailable, Retriever, UnknownRetriever

SEARCHES = Counter("realrag_retriever_searches_total", "Text searches served")
SEARCH_SECONDS = Histogram("realrag_retriever_search_seconds", "Search latency (encode + query)")
INGESTS = Counter("realrag_retriever_ingests_total", "Images ingested", ["result"])


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    set_torch_threads(settings.encoder_threads)
    # loading the encoder and opening the index block: in a thread, like every blocking call here
    retriever = app.state.retriever = await anyio.to_thread.run_sync(Retriever, settings)
    # searches and uploads each wait on their own single thread, batched (batching.py)
    app.state.searches = MicroBatcher(retriever.search_many, settings.search_batch_max, "retriever-search")
    app.state.ingests = MicroBatcher(retriever.ingest_many, settings.ingest_batch_max, "retriever-ingest")
    yield
    app.state.searches.close()
    app.state.ingests.close()
    await anyio.to_thread.run_sync(retriever.close)


# every route but the probes needs the service token when set, /v1/admin/* the admin token (auth.py)
app = FastAPI(title="RealRAG retriever", version="0.1.0", lifespan=lifespan, dependencies=[Depends(require_token)])
install_error_handlers(app)
_generate_openapi = app.openapi


def _openapi() -> dict:
    """The document with the configured limits written in (services.schemas.limits)."""
    if app.openapi_schema is None:
        app.openapi_schema = apply_limits(_generate_openapi(), get_settings())
    return app.openapi_schema


app.openapi = _openapi  # type: ignore[method-assign]
FormText = Annotated[Text | None, Form(max_length=1000)]
MAX_METADATA_DEPTH = 16


async def get_retriever(request: Request) -> Retriever:
    return request.app.state.retriever


RetrieverDep = Annotated[Retriever, Depends(get_retriever)]


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/readyz")
def readyz(retriever: RetrieverDep) -> dict:
    try:
        points = retriever.index.count()
    except Exception as exc:  # the index engine is down or unreachable
        raise ApiError(503, "index_unavailable", f"vector index unavailable: {type(exc).__name__}") from exc
    return {
        "status": "ready",
        "encoder": retriever.encoder.id,
        "device": retriever.encoder.device,
        "collection": retriever.index.current_collection(),
        "points": points,
    }


@app.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@app.post("/v1/search", response_model=SearchResponse)
async def search(body: SearchRequest, retriever: RetrieverDep, request: Request) -> SearchResponse:
    """Encoded together with the searches waiting meanwhile, off the event loop (batching.py)."""
    settings = retriever.settings
    if not body.query.strip():
        raise ApiError(422, "empty_query", "query must not be empty")
    if len(body.query) > settings.max_prompt_chars:
        raise ApiError(422, "query_too_long", f"query is longer than {settings.max_prompt_chars} characters")
    if body.top_k > settings.max_search_results:
        raise ApiError(422, "top_k_too_large", f"top_k must be at most {settings.max_search_results}")
    try:
        with SEARCH_SECONDS.time():
            started = time.perf_counter()
            result = await request.app.state.searches.submit(body)
            result.took_ms = (time.perf_counter() - started) * 1000  # queueing for the batch included
    except (UnknownRetriever, KeyError) as exc:
        raise ApiError(422, "unknown_retriever", str(exc).strip("'\"")) from exc
    except InvalidFilter as exc:
        raise ApiError(422, "invalid_filter", f"invalid filter: {exc}") from exc
    SEARCHES.inc()
    return result


@app.post("/v1/images", response_model=IngestResponse, status_code=201)
async def ingest(
    request: Request,
    retriever: RetrieverDep,
    response: Response,
    file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP")],
    caption: FormText = None,
    object_id: FormText = None,
    label: FormText = None,
    source: FormText = None,
    license: FormText = None,
    metadata: Annotated[Text | None, Form(description="JSON object")] = None,
    tenant: Annotated[str, Form(pattern=TENANT_PATTERN, description="owner: 'shared' (every tenant) or a tenant")] = SHARED_CORPUS,
) -> IngestResponse:
    """Decoding, CLIP encoding and the upsert run batched with concurrent uploads, off the event loop."""
    settings = retriever.settings
    data = await file.read(settings.max_upload_bytes + 1)
    extra = _metadata(metadata)
    fields = dict(caption=caption, object_id=object_id, label=label, source=source, license=license, metadata=extra, tenant=tenant)
    try:
        result = await request.app.state.ingests.submit((data, fields))
    except ImageRejected as exc:
        INGESTS.labels("rejected").inc()
        status = 413 if exc.code == "image_too_large" else 422
        raise ApiError(status, exc.code, exc.message) from exc
    except DeployedTowerUnavailable as exc:  # this replica cannot embed in the collection's space
        raise ApiError(503, "deployed_tower_unavailable", str(exc)) from exc
    INGESTS.labels("duplicate" if result.duplicate else "new").inc()
    if result.duplicate:
        response.status_code = 200
    return result


@app.get("/v1/images/{image_id}", response_model=CorpusImage)
def get_image(image_id: str, retriever: RetrieverDep) -> CorpusImage:
    image = retriever.get(image_id) if is_corpus_id(image_id) else None
    if image is None:
        raise ApiError(404, "image_not_found", f"no corpus image {image_id}")
    return image


@app.delete("/v1/images/{image_id}", status_code=204)
def delete_image(image_id: str, retriever: RetrieverDep) -> Response:
    if not (is_corpus_id(image_id) and retriever.delete(image_id)):
        raise ApiError(404, "image_not_found", f"no corpus image {image_id}")
    return Response(status_code=204)


class ReindexRequest(BaseModel):
    checkpoint: str
    force: bool = False


@app.post("/v1/admin/reindex")
def admin_reindex(body: ReindexRequest, retriever: RetrieverDep) -> dict:
    """Re-embed the corpus with a checkpoint's image tower into a new collection and switch the
    alias; searches keep answering meanwhile. Use this (not a second process) with the embedded
    engine, whose shard directory has a single owner."""
    from .checkpoints import CheckpointError
    from .reindex import ReindexError, reindex

    try:
        return reindex(retriever.settings, body.checkpoint, index=retriever.index, force=body.force).as_dict()
    except (CheckpointError, ReindexError, FileNotFoundError) as exc:
        raise ApiError(422, "reindex_refused", str(exc)) from exc


@app.post("/v1/admin/rollback")
def admin_rollback(retriever: RetrieverDep) -> dict:
    from .reindex import ReindexError, rollback

    try:
        previous, current = rollback(retriever.settings, index=retriever.index)
    except ReindexError as exc:
        raise ApiError(409, "rollback_refused", str(exc)) from exc
    return {"from": previous, "to": current}


def _metadata(text: str | None) -> dict:
    """The upload's metadata form field: a JSON object the index can store as payload."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object") from exc
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
    problem = _unstorable(value, MAX_METADATA_DEPTH)
    if problem:
        raise ApiError(422, "invalid_metadata", f"metadata cannot be stored: {problem}")
    return value


def _unstorable(value: object, depth: int) -> str | None:
    """Why a JSON value cannot be a payload (None if it can): NaN/Infinity, lone surrogates, nesting."""
    if depth < 0:
        return f"nested deeper than {MAX_METADATA_DEPTH} levels"
    if isinstance(value, float) and not math.isfinite(value):
        return "numbers must be finite (no NaN or Infinity)"
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "text must be valid Unicode (a lone surrogate)"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _unstorable(key, depth) or _unstorable(item, depth - 1)
            if problem:
                return problem
    if isinstance(value, list):
        for item in value:
            problem = _unstorable(item, depth - 1)
            if problem:
                return problem
    return None
