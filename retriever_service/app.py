"""Retriever HTTP service: ``uvicorn retriever_service.app:app`` (open_clip + Qdrant)."""

from __future__ import annotations

import json
import uuid
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, Request, Response, UploadFile
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from pydantic import BaseModel

from services.errors import ApiError, install_error_handlers
from services.images import ImageRejected
from services.schemas import CorpusImage, IngestResponse, SearchRequest, SearchResponse
from services.settings import get_settings

from .service import Retriever, UnknownRetriever

SEARCHES = Counter("realrag_retriever_searches_total", "Text searches served")
SEARCH_SECONDS = Histogram("realrag_retriever_search_seconds", "Search latency (encode + query)")
INGESTS = Counter("realrag_retriever_ingests_total", "Images ingested", ["result"])


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.retriever = Retriever(get_settings())
    yield
    app.state.retriever.close()


app = FastAPI(title="RealRAG retriever", version="0.1.0", lifespan=lifespan)
install_error_handlers(app)


def get_retriever(request: Request) -> Retriever:
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
def search(body: SearchRequest, retriever: RetrieverDep) -> SearchResponse:
    settings = retriever.settings
    if not body.query.strip():
        raise ApiError(422, "empty_query", "query must not be empty")
    if len(body.query) > settings.max_prompt_chars:
        raise ApiError(422, "query_too_long", f"query is longer than {settings.max_prompt_chars} characters")
    if body.top_k > settings.max_search_results:
        raise ApiError(422, "top_k_too_large", f"top_k must be at most {settings.max_search_results}")
    try:
        with SEARCH_SECONDS.time():
            result = retriever.search(body)
    except (UnknownRetriever, KeyError) as exc:
        raise ApiError(422, "unknown_retriever", str(exc).strip("'\"")) from exc
    SEARCHES.inc()
    return result


@app.post("/v1/images", response_model=IngestResponse, status_code=201)
async def ingest(
    retriever: RetrieverDep,
    response: Response,
    file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP")],
    caption: Annotated[str | None, Form()] = None,
    object_id: Annotated[str | None, Form()] = None,
    label: Annotated[str | None, Form()] = None,
    source: Annotated[str | None, Form()] = None,
    license: Annotated[str | None, Form()] = None,
    metadata: Annotated[str | None, Form(description="JSON object")] = None,
) -> IngestResponse:
    settings = retriever.settings
    data = await file.read(settings.max_upload_bytes + 1)
    try:
        extra = json.loads(metadata) if metadata else {}
    except json.JSONDecodeError as exc:
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object") from exc
    if not isinstance(extra, dict):
        raise ApiError(422, "invalid_metadata", "metadata must be a JSON object")
    try:
        result = retriever.ingest(
            data, caption=caption, object_id=object_id, label=label, source=source, license=license, metadata=extra
        )
    except ImageRejected as exc:
        INGESTS.labels("rejected").inc()
        status = 413 if exc.code == "image_too_large" else 422
        raise ApiError(status, exc.code, exc.message) from exc
    INGESTS.labels("duplicate" if result.duplicate else "new").inc()
    if result.duplicate:
        response.status_code = 200
    return result


@app.get("/v1/images/{image_id}", response_model=CorpusImage)
def get_image(image_id: str, retriever: RetrieverDep) -> CorpusImage:
    image = retriever.get(image_id) if _is_uuid(image_id) else None
    if image is None:
        raise ApiError(404, "image_not_found", f"no corpus image {image_id}")
    return image


@app.delete("/v1/images/{image_id}", status_code=204)
def delete_image(image_id: str, retriever: RetrieverDep) -> Response:
    if not (_is_uuid(image_id) and retriever.delete(image_id)):
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


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
