"""What clients see of a job: the record plus URLs for every image, without internal fields."""

from __future__ import annotations

from urllib.parse import quote, urlencode

from fastapi.responses import JSONResponse

from services.artifacts import direct_url
from services.schemas import PRIVATE_JOB_FIELDS, Job
from services.settings import Settings
from services.signing import sign

__all__ = ["PRIVATE_JOB_FIELDS", "artifact_url", "job_response", "job_view"]


def artifact_url(settings: Settings, uri: str, base_url: str = "") -> str:
    """The URL of an artifact, signed so that it works without an API key (`<img src>`) until
    REALRAG_SIGNED_URL_TTL_S passes: under REALRAG_PUBLIC_BASE_URL when set, else under `base_url` (the
    request's own, for absolute URLs), else relative to the gateway. With the S3 store: a presigned
    bucket URL valid for REALRAG_S3_PRESIGN_TTL_S (a fresh one at every read of the view)."""
    presigned = direct_url(settings, uri)
    if presigned:
        return presigned
    base = settings.public_base_url or base_url
    path = f"/v1/artifacts/{uri}"
    return f"{base.rstrip('/')}{quote(path)}?{urlencode(sign(settings, path))}"


def job_view(job: Job, settings: Settings, base_url: str = "") -> dict:
    view = job.model_dump(mode="json", exclude=set(PRIVATE_JOB_FIELDS))
    for ref in view["references"]:
        ref["image_url"] = artifact_url(settings, ref["image_uri"], base_url)
    for out in view["outputs"]:
        out["url"] = artifact_url(settings, out["uri"], base_url)
    view["progress"]["fraction"] = job.progress.fraction
    return view


def job_response(
    job: Job, settings: Settings, base_url: str = "", status_code: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The view as a ready response: its dict is JSON-ready already, so FastAPI's jsonable_encoder pass
    (a walk of the whole view per request) is skipped. Routes keep documenting `JobView` in OpenAPI."""
    return JSONResponse(job_view(job, settings, base_url), status_code=status_code, headers=headers)
