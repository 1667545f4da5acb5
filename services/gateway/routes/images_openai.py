"""OpenAI-Images-compatible ``POST /v1/images/generations``: synchronous over our async jobs.

Errors follow OpenAI's conventions, so the official SDK raises the class its users catch: bad
input is 400 (``BadRequestError``; the rest of this API says 422), then 401, 404, 409, 429 and 5xx,
with ``{"error": {"code", "message", "type", "param", "details"}}`` bodies.

Retries: the SDK retries 408, 409, 429, 5xx, timeouts and dropped connections, and sends no
idempotency key of its own (openai 3.51.0 leaves ``_idempotency_header`` unset). So once a job
exists, every error answer carries ``x-should-retry: false``, which the SDK obeys: a failed (500),
canceled (409) or still running (504) job is never submitted again by the SDK's retries. Errors
raised before a job exists (429 queue full, 503 broker down, 409 "being created") create nothing and
stay retryable. A client-side timeout or dropped connection carries no header; clients that retry
those send ``Idempotency-Key`` (``extra_headers``), and a retry with it waits on the same job.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import redis
from fastapi import APIRouter, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.artifacts import artifact_store
from services.errors import CODE_OF_ERROR_TYPE, ApiError, ErrorResponse
from services.jobs import AsyncJobStore
from services.schemas import GenerationRequest, Job, JobStatus, RetrievalOptions, Text, limits
from services.settings import Settings

from ..deps import GenerationsDep, SettingsDep, UnmeteredTenant
from ..metrics import JOBS_SUBMITTED
from ..openapi import OPENAI_RESPONSES, ImagesResponse, OpenAIErrorBody, ok, responses
from ..views import artifact_url

log = logging.getLogger(__name__)
POLL_S = 0.2
# 409s that a retry cannot resolve (the SDK retries 409 unless told not to)
FINAL_CODES = {"idempotency_conflict"}

# the request field each input error is about, reported as OpenAI's `param`
PARAM_OF_CODE = {
    "empty_prompt": "prompt",
    "prompt_too_long": "prompt",
    "unknown_model": "model",
    "model_not_served": "model",
    "n_out_of_range": "n",
    "invalid_size": "size",
    "steps_out_of_range": "steps",
    "guidance_out_of_range": "guidance",
    "too_many_references": "retrieval",
    "unknown_retriever": "retrieval",
    "unknown_reference": "reference_ids",
}


def _error_response(status: int, code: str, message: str, details: Any = None, param: str | None = None,
                    headers: dict[str, str] | None = None) -> ErrorResponse:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "type": "server_error" if status >= 500 else "invalid_request_error",
        "param": param,
    }
    if details:
        error["details"] = jsonable_encoder(details)
    headers = dict(headers or {})
    if (isinstance(details, dict) and "job_id" in details) or code in FINAL_CODES:
        headers["x-should-retry"] = "false"  # a retry would submit a second job, or fail the same way
    return ErrorResponse({"error": error}, status_code=status, headers=headers)


def _invalid(errors: list[Any]) -> ApiError:
    """A 400 for a body that breaks the schema, naming the first failing field as `param`."""
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors]
    first = next((d for d in details if d["type"] in CODE_OF_ERROR_TYPE), details[0] if details else None)
    param = ".".join(str(part) for part in first["loc"] if part != "body") if first else ""
    code = CODE_OF_ERROR_TYPE.get(first["type"], "invalid_request") if first else "invalid_request"
    message = f"{param}: {first['msg']}" if first and param else "the request body is not valid"
    return ApiError(400, code, message, param=param or None, errors=details)


class OpenAIErrorsRoute(APIRoute):
    """Answers this router's errors the way OpenAI's API does (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def openai_errors(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                error = _invalid(list(exc.errors()))
            except ApiError as exc:
                error = exc
            status = 400 if error.status == 422 else error.status
            details = dict(error.details)
            param = details.pop("param", None) or PARAM_OF_CODE.get(error.code)
            return _error_response(status, error.code, error.message, details, param, error.headers)

        return openai_errors


# the route names its tenant unmetered: submit() meters it after the replay check
router = APIRouter(prefix="/v1/images", tags=["openai"], route_class=OpenAIErrorsRoute)


class OpenAIImageRequest(BaseModel):
    """OpenAI's image generation body (the parameters that apply to diffusion models) plus RealRAG's
    own fields, sent with the SDK's ``extra_body``. Unknown fields are refused, not ignored. Limits
    that are settings are documented here and enforced with GenerationRequest's error codes."""

    model_config = ConfigDict(extra="forbid")

    prompt: Text = Field(
        description="what to draw (not blank)",
        json_schema_extra=limits(minLength=1, maxLength="max_prompt_chars", pattern=r"\S"),
    )
    model: Text | None = Field(None, max_length=200, description="a key of GET /v1/models; default: the deployment's default")
    n: int | None = Field(None, description="images to generate (default 1)", json_schema_extra=limits(minimum=1, maximum="max_n"))
    size: Text | None = Field(
        None,
        description="'WIDTHxHEIGHT' (each within the size limits), or 'auto' for the model's default size",
        json_schema_extra=limits(pattern=r"^([0-9]{1,5}x[0-9]{1,5}|auto)$"),
    )
    response_format: Literal["url", "b64_json"] | None = Field(None, description="default: url (absolute)")
    output_format: Literal["png"] | None = None
    quality: Literal["auto", "low", "medium", "high", "xhigh", "max", "standard", "hd"] | None = Field(
        None, description="accepted for compatibility and ignored: `steps` sets the quality here"
    )
    user: Text | None = Field(None, max_length=256)
    safety_identifier: Text | None = Field(None, max_length=256, description="recorded as the job's user when user is not set")
    # RealRAG extensions
    seed: int | None = Field(None, ge=0, lt=2**63, description="image i uses seed + i; default: random")
    negative_prompt: Text | None = Field(None, json_schema_extra=limits(maxLength="max_prompt_chars"))
    steps: int | None = Field(None, json_schema_extra=limits(minimum=1, maximum="max_steps"))
    guidance: float | None = Field(None, json_schema_extra=limits(minimum=0, maximum="max_guidance"))
    retrieval: RetrievalOptions | None = None
    reference_ids: list[Text] | None = Field(
        None, description="condition on these corpus images instead of retrieving", json_schema_extra=limits(maxItems="max_top_k")
    )

    def generation_request(self) -> GenerationRequest:
        fields: dict[str, Any] = {
            "prompt": self.prompt,
            "model": self.model,
            "n": 1 if self.n is None else self.n,
            "size": None if self.size == "auto" else self.size,
            "seed": self.seed,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "guidance": self.guidance,
            "user": self.user or self.safety_identifier,
            "reference_ids": self.reference_ids,
        }
        if self.retrieval is not None:
            fields["retrieval"] = self.retrieval
        try:
            return GenerationRequest.model_validate(fields)
        except ValidationError as exc:  # the shared request model's own rules: still the client's input
            raise _invalid(exc.errors(include_url=False, include_input=False)) from None


@router.post(
    "/generations",
    summary="Generate images, OpenAI-compatible: waits for the job and answers with the images",
    response_model=None,
    responses={
        200: ok(ImagesResponse, "the images, as URLs or base64 PNGs (`response_format`)"),
        **responses(400, 401, 409, 429, 500, 503, 504, model=OpenAIErrorBody, descriptions=OPENAI_RESPONSES),
        **responses(413),
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "examples": {
                        "openai": {"summary": "what the OpenAI SDK sends", "value": {"prompt": "a red car at night", "size": "512x512"}},
                        "realrag": {
                            "summary": "with RealRAG's extensions (SDK: extra_body)",
                            "value": {
                                "prompt": "my dog on a beach",
                                "response_format": "b64_json",
                                "seed": 7,
                                "retrieval": {"filter": {"object_id": "my-dog"}},
                            },
                        },
                    }
                }
            }
        }
    },
)
async def openai_generations(
    body: OpenAIImageRequest,
    request: Request,
    tenant: UnmeteredTenant,
    service: GenerationsDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=128)] = None,
) -> dict:
    job, created = await service.submit(body.generation_request(), tenant, None, idempotency_key)
    if created:
        JOBS_SUBMITTED.labels(job.model).inc()
    client_gone = asyncio.ensure_future(_disconnect(request))
    try:
        job = await _wait(job, service.store, settings.sync_wait_timeout_s, client_gone)
        # b64_json reads the PNGs from the artifact store (a disk or a bucket): off the event loop
        return await asyncio.to_thread(_images_response, job, body.response_format or "url", settings, str(request.base_url))
    except ApiError as exc:
        exc.details.setdefault("job_id", job.id)
        raise
    except redis.RedisError as exc:
        raise ApiError(503, "redis_unavailable", f"Redis is unreachable; poll job {job.id} later", job_id=job.id) from exc
    except Exception as exc:  # the job exists: answer without inviting a retry that would submit another
        log.exception("images/generations: job %s could not be answered", job.id)
        raise ApiError(500, "internal_error", f"internal error; the job is {job.id}", job_id=job.id) from exc
    finally:
        client_gone.cancel()


async def _disconnect(request: Request) -> None:
    """Returns when the client hangs up (its SDK timed out, say). Request.is_disconnected() cannot
    see that through the app's http middleware, so this waits on the ASGI receive channel itself."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _wait(job: Job, jobs: AsyncJobStore, timeout_s: float, client_gone: asyncio.Future) -> Job:
    """The job once it is finished; 504 (still running) or 409 (canceled) or 500 (failed) otherwise."""
    deadline = time.monotonic() + timeout_s
    while not job.status.terminal:
        if time.monotonic() > deadline:
            raise ApiError(504, "timeout", f"job {job.id} is still running; poll /v1/generations/{job.id}")
        await asyncio.wait([client_gone], timeout=POLL_S)
        if client_gone.done():  # nobody to answer (status 499, as nginx logs it); the job goes on
            raise ApiError(499, "client_disconnected", f"the client left; job {job.id} goes on")
        current = await jobs.get(job.internal_id)
        if current is None:
            raise ApiError(500, "job_lost", f"the record of job {job.id} expired")
        job = current
    if job.status is JobStatus.canceled:
        raise ApiError(409, "job_canceled", f"job {job.id} was canceled before it finished")
    if job.status is JobStatus.failed:
        reason = job.error.code if job.error else "unknown"
        message = job.error.message if job.error else "the job failed"
        # the model refusing these inputs is the client's error; anything else is ours
        raise ApiError(422 if reason == "invalid_request" else 500, "generation_failed", message, reason=reason)
    return job


def _images_response(job: Job, response_format: str, settings: Settings, base_url: str) -> dict:
    data = []
    store = artifact_store(settings)
    for out in job.outputs:
        if response_format == "b64_json":
            data.append({"b64_json": base64.b64encode(store.get(out.uri)).decode()})
        else:
            data.append({"url": artifact_url(settings, out.uri, base_url)})
    response: dict[str, Any] = {"created": int(job.created_at), "data": data, "output_format": "png"}
    if job.outputs:
        response["size"] = f"{job.outputs[0].width}x{job.outputs[0].height}"
    response["realrag"] = {"job_id": job.id, "seeds": job.seeds, "references": [r.model_dump() for r in job.references]}
    return response
