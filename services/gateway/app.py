"""RealRAG gateway: ``uvicorn services.gateway.app:app``. Never imports torch."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path

import redis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute

from services.errors import error_body, install_error_handlers
from services.jobs import JobStore
from services.queue import producer_app
from services.settings import get_settings

from .generations import GenerationService
from .metrics import HTTP_REQUESTS, HTTP_SECONDS
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
    yield
    retriever.close()


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


app = FastAPI(
    title="RealRAG",
    version="0.1.0",
    description="Retrieval-augmented realistic image generation",
    lifespan=lifespan,
    generate_unique_id_function=_operation_id,
)
install_error_handlers(app)

_settings = get_settings()
if _settings.cors_origins:
    app.add_middleware(CORSMiddleware, allow_origins=_settings.cors_origins, allow_methods=["*"], allow_headers=["*"])


@app.exception_handler(redis.RedisError)
async def _redis_down(_: Request, exc: redis.RedisError) -> JSONResponse:
    return JSONResponse(error_body("redis_unavailable", "Redis (job store and broker) is unreachable"), status_code=503)


@app.middleware("http")
async def _observe(request: Request, call_next):
    started = time.perf_counter()
    response = await call_next(request)
    route = request.scope.get("route")
    name = route.path if route is not None else "unmatched"
    HTTP_REQUESTS.labels(request.method, name, response.status_code).inc()
    HTTP_SECONDS.labels(name).observe(time.perf_counter() - started)
    return response


for module in (health, generations, images_openai, corpus, models, artifacts):
    app.include_router(module.router)

if _settings.playground_enabled:

    @app.get("/playground", include_in_schema=False)
    def playground() -> HTMLResponse:
        return HTMLResponse(PLAYGROUND.read_text())
