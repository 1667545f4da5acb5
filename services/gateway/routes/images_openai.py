"""OpenAI-Images-compatible ``POST /v1/images/generations``: synchronous over our async jobs.

The OpenAI SDK retries 408/409/429/5xx and sends no idempotency key, so a retried POST may run
twice; clients that care send ``Idempotency-Key`` (honoured here too).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated, Literal

from fastapi import APIRouter, Header
from pydantic import BaseModel, ConfigDict

from services.artifacts import LocalArtifactStore
from services.errors import ApiError
from services.schemas import GenerationRequest, JobStatus, RetrievalOptions

from ..deps import Authenticated, GenerationsDep, JobsDep, SettingsDep
from ..metrics import JOBS_SUBMITTED
from ..views import artifact_url

router = APIRouter(prefix="/v1/images", tags=["openai"], dependencies=[Authenticated])


class OpenAIImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = None
    response_format: Literal["url", "b64_json"] = "url"
    output_format: Literal["png"] = "png"
    quality: str | None = None
    user: str | None = None
    # RealRAG extensions
    seed: int | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    retrieval: RetrievalOptions | None = None


@router.post("/generations")
async def openai_generations(
    body: OpenAIImageRequest,
    service: GenerationsDep,
    jobs: JobsDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> dict:
    request = GenerationRequest(
        prompt=body.prompt,
        model=body.model,
        n=body.n,
        size=body.size,
        seed=body.seed,
        negative_prompt=body.negative_prompt,
        steps=body.steps,
        guidance=body.guidance,
        user=body.user,
        retrieval=body.retrieval or RetrievalOptions(),
    )
    job, created = await asyncio.to_thread(service.submit, request, None, idempotency_key)
    if created:
        JOBS_SUBMITTED.labels(job.model).inc()
    deadline = time.monotonic() + settings.sync_wait_timeout_s
    while not job.status.terminal:
        if time.monotonic() > deadline:
            raise ApiError(504, "timeout", f"job {job.id} is still running; poll /v1/generations/{job.id}", job_id=job.id)
        await asyncio.sleep(0.2)
        current = await asyncio.to_thread(jobs.get, job.id)
        if current is None:
            raise ApiError(500, "job_lost", "the job record expired")
        job = current
    if job.status is not JobStatus.succeeded:
        error = job.error.message if job.error else job.status.value
        raise ApiError(422 if job.error and job.error.code == "invalid_request" else 500, "generation_failed", error, job_id=job.id)
    data = []
    for out in job.outputs:
        if body.response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(LocalArtifactStore(settings.artifact_root).get(out.uri)).decode()})
        else:
            data.append({"url": artifact_url(settings, out.uri)})
    return {
        "created": int(job.created_at),
        "data": data,
        "realrag": {"job_id": job.id, "seeds": job.seeds, "references": [r.model_dump() for r in job.references]},
    }

