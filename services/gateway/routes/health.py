"""Probes (open: orchestrators call them without credentials) and metrics.

`/metrics` needs `Authorization: Bearer <REALRAG_METRICS_TOKEN>` when that is set (constant-time
compare). Unset, it is open in development and test, and closed (403) in production: the public port
must not publish queue depths and latencies to anyone who asks.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.errors import ApiError
from services.settings import Settings

from ..deps import JobsDep, RetrieverDep, SettingsDep
from ..metrics import QUEUE_DEPTH, exposition
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
    response_class=Response,  # not PlainTextResponse: its media type would be every error's too
    responses={
        200: ok(None, "Prometheus text exposition format", media_type="text/plain"),
        **responses(401, 403, descriptions={401: "REALRAG_METRICS_TOKEN is set: present it", 403: "a wrong token, or production without"}),
    },
)
def metrics(jobs: JobsDep, settings: SettingsDep, request: Request) -> Response:
    _check_metrics_token(settings, request.headers.get("Authorization", ""))
    try:
        QUEUE_DEPTH.set(jobs.redis.llen(settings.queue_name))
    except Exception:  # metrics must answer even when Redis does not
        pass
    return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def _check_metrics_token(settings: Settings, authorization: str) -> None:
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if not token:
        if settings.environment == "production":
            raise ApiError(403, "metrics_closed", "set REALRAG_METRICS_TOKEN to scrape /metrics in production")
        return
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        error = ApiError(401, "unauthorized", "/metrics needs Authorization: Bearer REALRAG_METRICS_TOKEN")
        error.headers["WWW-Authenticate"] = "Bearer"
        raise error
    if not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise ApiError(403, "forbidden", "wrong metrics token")
