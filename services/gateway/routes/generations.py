"""/v1/generations: async jobs (create, replay by id or Idempotency-Key, status, events, cancel)."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from services.errors import ApiError
from services.schemas import GenerationRequest

from ..deps import Authenticated, GenerationsDep, JobsDep, SettingsDep
from ..generations import JOB_ID
from ..metrics import JOBS_SUBMITTED
from ..views import job_view

router = APIRouter(prefix="/v1/generations", tags=["generations"], dependencies=[Authenticated])


@router.post("", status_code=202)
def create_generation(
    body: GenerationRequest,
    service: GenerationsDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> dict:
    job, created = service.submit(body, idempotency_key=idempotency_key)
    if created:
        JOBS_SUBMITTED.labels(job.model).inc()
    else:
        response.status_code = 200
    response.headers["Location"] = f"/v1/generations/{job.id}"
    return job_view(job, settings)


@router.put("/{job_id}", status_code=202)
def put_generation(job_id: str, body: GenerationRequest, service: GenerationsDep, settings: SettingsDep, response: Response) -> dict:
    if not JOB_ID.match(job_id):
        raise ApiError(422, "invalid_job_id", "job ids are 1-64 characters of A-Z a-z 0-9 _ -")
    job, created = service.submit(body, job_id=job_id)
    if created:
        JOBS_SUBMITTED.labels(job.model).inc()
    else:
        response.status_code = 200
    return job_view(job, settings)


@router.get("/{job_id}")
def get_generation(job_id: str, jobs: JobsDep, settings: SettingsDep) -> dict:
    job = jobs.get(job_id)
    if job is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")
    return job_view(job, settings)


@router.delete("/{job_id}")
def cancel_generation(job_id: str, service: GenerationsDep, settings: SettingsDep) -> dict:
    """Idempotent: a finished job is returned unchanged; a running one stops at its next step."""
    return job_view(service.cancel(job_id), settings)


@router.post("/{job_id}/cancel")
def cancel_generation_post(job_id: str, service: GenerationsDep, settings: SettingsDep) -> dict:
    return job_view(service.cancel(job_id), settings)


@router.get("/{job_id}/events")
async def generation_events(job_id: str, request: Request, jobs: JobsDep, settings: SettingsDep) -> StreamingResponse:
    """Server-sent events: the job after each change, until it is finished."""
    if jobs.get(job_id) is None:
        raise ApiError(404, "job_not_found", f"no job {job_id}")

    async def stream():
        last = None
        while not await request.is_disconnected():
            job = await asyncio.to_thread(jobs.get, job_id)
            if job is None:
                return
            snapshot = job.model_dump_json()
            if snapshot != last:
                last = snapshot
                yield f"event: {job.status.value}\ndata: {json.dumps(job_view(job, settings))}\n\n"
            if job.status.terminal:
                return
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream")
