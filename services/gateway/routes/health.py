"""Probes and metrics (open, no auth: keep them on the internal network)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.errors import ApiError

from ..deps import JobsDep, RetrieverDep, SettingsDep
from ..metrics import QUEUE_DEPTH
from ..openapi import Health, Readiness, ok, responses

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers", response_model=None, responses={200: ok(Health, "alive")})
def healthz() -> dict:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: Redis answers (the retriever is reported)",
    response_model=None,
    responses={200: ok(Readiness, "ready"), **responses(503, descriptions={503: "Redis is unreachable"})},
)
def readyz(jobs: JobsDep, retriever: RetrieverDep) -> dict:
    """Ready = Redis answers. The retriever is reported, not required: without it job status
    reads still work, and failing every gateway pod on a retriever outage would take them away."""
    try:
        jobs.ping()
    except Exception as exc:
        raise ApiError(503, "redis_unavailable", "Redis (job store and broker) is unreachable") from exc
    try:
        retriever_state = retriever.ready()
    except ApiError as exc:
        retriever_state = {"status": "unavailable", "error": exc.code}
    return {"status": "ready", "redis": "ok", "retriever": retriever_state}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    responses={200: ok(None, "Prometheus text exposition format", media_type="text/plain")},
)
def metrics(jobs: JobsDep, settings: SettingsDep) -> Response:
    try:
        QUEUE_DEPTH.set(jobs.redis.llen(settings.queue_name))
    except Exception:  # metrics must answer even when Redis does not
        pass
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
