"""/v1/artifacts/{key}: corpus images and generated outputs.

Who gets an artefact (#10):
- anyone holding a signed URL (`?expires=…&signature=…`, services/signing.py) until it expires: job
  views and corpus records carry such URLs, so `<img src>` works without a key. A bad or expired
  signature is `403 invalid_signature`;
- a tenant presenting its API key: its own outputs, the shared corpus and its own private corpus
  images. Anything else is `404`, exactly as for a key that names nothing: whether another tenant's
  artefact exists is not revealed;
- no key and no signature: `401` (the URL shapes are documented, so a 401 reveals nothing; it tells
  the client what is missing). With auth off (development) every artefact is served.

With the local store the gateway sends the file. With the S3 store, job views already carry presigned
bucket URLs (services/gateway/views.py); this route answers 307 with a fresh presigned URL (after the
same checks), so image bytes never pass through the gateway.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Security
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials

from services.artifacts import ArtifactStoreError, InvalidKey, LocalArtifactStore, artifact_store, clean_key
from services.errors import ApiError
from services.jobs import JobStore
from services.schemas import is_corpus_id
from services.settings import Settings
from services.signing import verify
from services.tenants import Tenant

from ..deps import API_KEY_HEADER, BEARER, JobsDep, RetrieverDep, SettingsDep, require_tenant
from ..openapi import ok, responses
from ..retriever_client import RetrieverClient

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"])
PREFIX = "/v1/artifacts/"


def _not_found() -> ApiError:
    return ApiError(404, "artifact_not_found", "no such artifact")


def readable_by(tenant: Tenant, key: str, jobs: JobStore, retriever: RetrieverClient) -> bool:
    """Whether `tenant` (authenticated by its key) may read artefact `key`."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "outputs":
        return jobs.owner_of_output(parts[1]) == tenant.name
    if len(parts) == 2 and parts[0] == "corpus" and is_corpus_id(parts[1].removesuffix(".png")):
        return retriever.get_image(parts[1].removesuffix(".png"), tenant=tenant.name) is not None
    return False


def _authorize(
    key: str,
    settings: Settings,
    jobs: JobStore,
    retriever: RetrieverClient,
    credentials: tuple[HTTPAuthorizationCredentials | None, str | None],
    signed: tuple[str | None, str | None],
) -> None:
    expires, signature = signed
    if expires is not None or signature is not None:
        if not verify(settings, PREFIX + key, expires, signature):
            raise ApiError(403, "invalid_signature", "the URL's signature is invalid or has expired")
        return
    if not settings.auth_enabled:
        return
    tenant = require_tenant(settings, *credentials)  # 401 without a valid key
    if not readable_by(tenant, key, jobs, retriever):
        raise _not_found()


@router.get(
    "/{key:path}",
    summary="An image: a corpus photo or a generated output",
    description="Served to the owning tenant (API key) or through a signed URL from a job view or corpus record.",
    response_model=None,
    response_class=FileResponse,
    openapi_extra={"security": [{}]},  # appended to the key schemes: a signed URL needs no key
    responses={
        200: ok(None, "the PNG (local store)", media_type="image/png"),
        307: {"description": "a fresh presigned URL of the image (S3 store)", "headers": {"Location": {"schema": {"type": "string"}}}},
        **responses(
            401,
            403,
            404,
            503,
            descriptions={
                401: "no signature and no valid API key",
                403: "the signature is invalid or has expired",
                404: "no such artifact (or another tenant's)",
                503: "the artifact store is unreachable",
            },
        ),
    },
)
def get_artifact(
    key: str,
    settings: SettingsDep,
    jobs: JobsDep,
    retriever: RetrieverDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
    expires: Annotated[str | None, Query(description="signed URLs: expiry, Unix seconds (anything else: 403)")] = None,
    signature: Annotated[str | None, Query(description="signed URLs: HMAC-SHA256, base64url (a wrong one: 403)")] = None,
) -> FileResponse | RedirectResponse:
    try:
        key = clean_key(key)
    except InvalidKey as exc:
        raise _not_found() from exc
    if not key.endswith(".png"):
        raise _not_found()
    _authorize(key, settings, jobs, retriever, (bearer, x_api_key), (expires, signature))
    store = artifact_store(settings)
    if isinstance(store, LocalArtifactStore):
        path = store.path(key)
        try:
            found = path.is_file()
        except OSError:  # a name the file system refuses (too long, ...) names no artifact
            found = False
        if not found:
            raise _not_found()
        # private: a shared cache must not hand one tenant's image to a request without the key
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=300"})
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
