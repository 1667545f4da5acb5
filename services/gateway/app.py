"""RealRAG gateway: ``uvicorn services.gateway.app:app``. Never imports torch."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import Scope

from services.errors import ErrorResponse, error_body, install_error_handlers
from services.jobs import JobStore
from services.queue import producer_app
from services.settings import Settings, get_settings
from services.tenants import check_auth_mode

from .body_limit import BodySizeLimit, header_limit
from .generations import GenerationService
from .metrics import RequestMetrics
from .openapi import install_openapi
from .retriever_client import RetrieverClient
from .routes import artifacts, corpus, generations, health, images_openai, models, playground


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    check_auth_mode(settings, logging.getLogger("services.gateway"))  # production without tenants: refuse to start
    jobs = JobStore.from_url(settings.redis_url, settings.job_ttl_s, socket_connect_timeout=2, socket_timeout=5)
    retriever = RetrieverClient.from_settings(settings)
    app.state.settings = settings
    app.state.jobs = jobs
    app.state.retriever = retriever
    generations = GenerationService(settings, jobs, retriever, producer_app(settings))
    app.state.generations = generations
    app.openapi_schema = None  # documented limits are this run's settings
    yield
    await generations.aclose()
    retriever.close()


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


def body_limit(scope: Scope) -> int:
    """REALRAG_MAX_BODY_BYTES; a multipart upload may carry REALRAG_MAX_UPLOAD_BYTES of image on top."""
    state = getattr(scope.get("app"), "state", None)
    settings: Settings = getattr(state, "settings", None) or get_settings()
    content_type = Headers(scope=scope).get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        return settings.max_upload_bytes + settings.max_body_bytes
    return settings.max_body_bytes


app = FastAPI(
    title="RealRAG",
    version="0.1.0",
    description=(
        "Retrieval-augmented realistic image generation. Errors are `{\"error\": {\"code\", \"message\", "
        "\"details\"}}` with a stable `code`; client errors are 4xx, never 5xx."
    ),
    lifespan=lifespan,
    generate_unique_id_function=_operation_id,
)
install_error_handlers(app)
install_openapi(app)

_settings = get_settings()


@app.exception_handler(redis.RedisError)
async def _redis_down(_: Request, exc: redis.RedisError) -> ErrorResponse:
    return ErrorResponse(error_body("redis_unavailable", "Redis (job store and broker) is unreachable"), status_code=503)


# Middleware, innermost first: the body limit (so /metrics counts its 413s), then metrics, then CORS
# outermost (so browsers can read every answer, 413 included).
app.add_middleware(BodySizeLimit, limit_of=body_limit, header_limit_of=header_limit)


app.add_middleware(RequestMetrics)


if _settings.cors_origins:
    app.add_middleware(CORSMiddleware, allow_origins=_settings.cors_origins, allow_methods=["*"], allow_headers=["*"])

for module in (health, generations, images_openai, corpus, models, artifacts, playground):
    app.include_router(module.router)
