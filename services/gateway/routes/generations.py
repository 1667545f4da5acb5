"""/v1/generations: async jobs (create, replay by id or Idempotency-Key, status, events, cancel)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from services.errors import ApiError
from services.schemas import GenerationRequest

from ..deps import CurrentTenant, GenerationsDep, SettingsDep, UnmeteredTenant
from ..generations import JOB_ID
from ..job_events import JobEvents, seen_version
from ..metrics import JOBS_SUBMITTED
from ..openapi import JOB_RESPONSES, JobView, ok, responses
from ..views import job_response, job_view

# every route names its tenant: the creating ones unmetered here, since submit() meters them after the
# replay check (a retry of an accepted request is answered, never a 429)
router = APIRouter(prefix="/v1/generations", tags=["generations"])


@router.post(
    "",
    status_code=202,
    summary="Create a generation job",
    response_model=None,
    responses={
        202: ok(JobView, "accepted: the job is queued (its URL is in `Location`)", headers={"Location": {"schema": {"type": "string"}}}),
        200: ok(JobView, "a replay: this Idempotency-Key was used with this body before; that job"),
        **responses(400, 401, 409, 413, 422, 429, 503, descriptions=JOB_RESPONSES),
    },
)
async def create_generation(
    request: Request,
    body: GenerationRequest,
    tenant: UnmeteredTenant,
    service: GenerationsDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> Response:
    job, created = await service.submit(body, tenant, idempotency_key=idempotency_key)
    if created:
        JOBS_SUBMITTED.labels(job.model).inc()
    headers = {"Location": f"/v1/generations/{job.id}"}
    return job_response(job, settings, str(request.base_url), status_code=202 if created else 200, headers=headers)


@router.put(
    "/{job_id}",
    status_code=202,
    summary="Create a generation job under the client's own id (idempotent)",
    response_model=None,
    responses={
        202: ok(JobView, "accepted: the job is queued"),
        200: ok(JobView, "a replay: a job with this id and this body exists; that job"),
        **responses(400, 401, 409, 413, 422, 429, 503, descriptions=JOB_RESPONSES),
    },
)
async def put_generation(
    request: Request,
    job_id: str,
    body: GenerationRequest,
    tenant: UnmeteredTenant,
    service: GenerationsDep,
    settings: SettingsDep,
) -> Response:
    if not JOB_ID.match(job_id):
        raise ApiError(422, "invalid_job_id", "job ids are 1-64 characters of A-Z a-z 0-9 _ -")
    job, created = await service.submit(body, tenant, job_id=job_id)
    if created:
        JOBS_SUBMITTED.labels(job.model).inc()
    return job_response(job, settings, str(request.base_url), status_code=202 if created else 200)


@router.get(
    "/{job_id}",
    summary="A job's state",
    response_model=None,
    responses={200: ok(JobView, "the job"), **responses(401, 404, 503, descriptions=JOB_RESPONSES)},
)
async def get_generation(request: Request, job_id: str, tenant: CurrentTenant) -> Response:
    # settings and service straight from app.state: the hottest route skips two dependency solves
    state = request.app.state
    return job_response(await state.generations.find(tenant, job_id), state.settings, str(request.base_url))


@router.delete(
    "/{job_id}",
    summary="Cancel a job",
    response_model=None,
    responses={200: ok(JobView, "the job, canceled or flagged to stop"), **responses(401, 404, 503, descriptions=JOB_RESPONSES)},
)
def cancel_generation(request: Request, job_id: str, tenant: CurrentTenant, service: GenerationsDep, settings: SettingsDep) -> dict:
    """Idempotent: a finished job is returned unchanged; a running one stops at its next step."""
    return job_view(service.cancel(tenant, job_id), settings, str(request.base_url))


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job (POST alias of DELETE)",
    response_model=None,
    responses={200: ok(JobView, "the job, canceled or flagged to stop"), **responses(401, 404, 503, descriptions=JOB_RESPONSES)},
)
def cancel_generation_post(request: Request, job_id: str, tenant: CurrentTenant, service: GenerationsDep, settings: SettingsDep) -> dict:
    return job_view(service.cancel(tenant, job_id), settings, str(request.base_url))


@router.get(
    "/{job_id}/events",
    summary="A job's changes as server-sent events",
    response_class=EventSourceResponse,
    responses={
        200: ok(None, "events named after the job's status, each the job view as JSON", media_type="text/event-stream"),
        204: {"description": "the job is finished and the client has its last version (`Last-Event-ID`)"},
        **responses(401, 404, 422, 503, descriptions=JOB_RESPONSES),
    },
)
async def generation_events(
    request: Request,
    job_id: str,
    tenant: CurrentTenant,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> Response:
    """Server-sent events: the job after each change (event = status, id = the job's version), until
    it is finished. With `Last-Event-ID` only newer versions are sent; a finished job the client has
    seen answers 204, which tells EventSource to stop reconnecting. A comment every `sse_ping_s` keeps
    idle proxies from cutting the stream; if Redis fails mid-stream an `error` event ends it."""
    events = JobEvents(settings, tenant.name, job_id, str(request.base_url))
    try:
        job = await events.open()
    except BaseException:
        await events.close()
        raise
    seen = seen_version(last_event_id)
    if job is None or (job.status.terminal and job.version <= seen):
        await events.close()
        if job is None:
            raise ApiError(404, "job_not_found", f"no job {job_id}")
        return Response(status_code=204)
    return EventSourceResponse(
        events.stream(job, seen),
        headers={"Cache-Control": "no-cache"},
        ping=settings.sse_ping_s,
        send_timeout=settings.sse_send_timeout_s,
        background=BackgroundTask(events.close),
    )
