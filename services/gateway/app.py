"""RealRAG gateway: ``uvicorn services.gateway.app:app``. Never imports torch."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path

import redis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import Scope

from services.errors import ErrorResponse, error_body, install_error_handlers
from services.jobs import JobStore
from services.queue import producer_app
from services.settings import Settings, get_settings

from .body_limit import BodySizeLimit
from .generations import GenerationService
from .metrics import HTTP_REQUESTS, HTTP_SECONDS
from .openapi import install_openapi
from .retriever_client import RetrieverClient
from .routes import artifacts, corpus, generations, health, images_openai, models

PLAYGROUND = Path(__file__).with_name("static") / "playground.html"


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings = get_settings()
    jobs = JobStore.from_url(settings.redis_url, settings.job_ttl_s, socket_connect_timeout=2, socket_timeout=5)
    retriever = RetrieverClient(settings.retriever_url, settings.retriever_timeout_s)
    app.state.settings = settings
    app.state.jobs = jobs
    app.state.retriever = retriever
    app.state.generations = GenerationService(settings, jobs, retriever, producer_app(settings))
    app.openapi_schema = None  # documented limits are this run's settings
    yield
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
app.add_middleware(BodySizeLimit, limit_of=body_limit)


@app.middleware("http")
async def _observe(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    name = route.path if route is not None else "unmatched"
    HTTP_REQUESTS.labels(request.method, name, response.status_code).inc()
    HTTP_SECONDS.labels(name).observe(time.perf_counter() - started)
    return response


if _settings.cors_origins:
    app.add_middleware(CORSMiddleware, allow_origins=_settings.cors_origins, allow_methods=["*"], allow_headers=["*"])

for module in (health, generations, images_openai, corpus, models, artifacts):
    app.include_router(module.router)

if _settings.playground_enabled:

    @app.get("/playground", include_in_schema=False)
    def playground() -> HTMLResponse:
        return HTMLResponse(PLAYGROUND.read_text())
