"""/v1/artifacts/{key}: corpus images and generated outputs (unguessable ids, no auth, so that
<img> tags work; put a signing proxy in front for private deployments).

With the local store the gateway sends the file. With the S3 store, job views already carry presigned
bucket URLs (services/gateway/views.py); this route stays for the URLs that do not expire (corpus
image URLs, links saved earlier) and answers 307 with a fresh presigned URL, so image bytes never pass
through the gateway and a saved gateway link keeps working after any presigned URL has expired.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from services.artifacts import ArtifactStoreError, InvalidKey, LocalArtifactStore, artifact_store, clean_key
from services.errors import ApiError

from ..deps import SettingsDep
from ..openapi import ok, responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])


def _not_found() -> ApiError:
    return ApiError(404, "artifact_not_found", "no such artifact")


@router.get(
    "/{key:path}",
    summary="An image: a corpus photo or a generated output",
    response_model=None,
    response_class=FileResponse,
    responses={
        200: ok(None, "the PNG (local store)", media_type="image/png"),
        307: {"description": "a fresh presigned URL of the image (S3 store)", "headers": {"Location": {"schema": {"type": "string"}}}},
        **responses(404, 503, descriptions={404: "no such artifact", 503: "the artifact store is unreachable"}),
    },
)
def get_artifact(key: str, settings: SettingsDep) -> FileResponse | RedirectResponse:
    try:
        key = clean_key(key)
    except InvalidKey as exc:
        raise _not_found() from exc
    if not key.endswith(".png"):
        raise _not_found()
    store = artifact_store(settings)
    if isinstance(store, LocalArtifactStore):
        path = store.path(key)
        try:
            found = path.is_file()
        except OSError:  # a name the file system refuses (too long, ...) names no artifact
            found = False
        if not found:
            raise _not_found()
        return FileResponse(path, media_type="image/png")
    try:
        if not store.exists(key):
            raise _not_found()
        url = store.direct_url(key)
    except ArtifactStoreError as exc:
        log.warning("artifact store unavailable: %s", exc)
        raise ApiError(503, "artifact_store_unavailable", "the artifact store is unreachable; retry shortly") from exc
    if url is None:  # a store without direct URLs that is not the local one: nothing to redirect to
        raise _not_found()
    # The redirect is valid only as long as the URL it names: no caching.
    return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
