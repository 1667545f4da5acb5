"""/v1/artifacts/{key}: corpus images and generated outputs (unguessable ids, no auth, so that
<img> tags work; put a signing proxy in front for private deployments)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from services.artifacts import InvalidKey, LocalArtifactStore
from services.errors import ApiError

from ..deps import SettingsDep

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


@router.get("/{key:path}")
def get_artifact(key: str, settings: SettingsDep) -> FileResponse:
    store = LocalArtifactStore(settings.artifact_root)
    try:
        path = store.path(key)
    except InvalidKey as exc:
        raise ApiError(404, "artifact_not_found", "no such artifact") from exc
    if not key.endswith(".png") or not path.is_file():
        raise ApiError(404, "artifact_not_found", "no such artifact")
    return FileResponse(path, media_type="image/png")
