"""What clients see of a job: the record plus URLs for every image."""

from __future__ import annotations

from services.schemas import Job
from services.settings import Settings


def artifact_url(settings: Settings, uri: str) -> str:
    return f"{settings.public_base_url.rstrip('/')}/v1/artifacts/{uri}"


def job_view(job: Job, settings: Settings) -> dict:
    view = job.model_dump(mode="json", exclude={"request_hash"})
    for ref in view["references"]:
        ref["image_url"] = artifact_url(settings, ref["image_uri"])
    for out in view["outputs"]:
        out["url"] = artifact_url(settings, out["uri"])
    view["progress"]["fraction"] = job.progress.fraction
    return view
