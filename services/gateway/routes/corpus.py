"""/v1/corpus: manage the real-image corpus (proxied to the retriever service).

Tenancy (#10, README "Tenants and corpora"): one shared corpus written by admins, plus private images
per tenant. A tenant searches, reads and deletes the shared corpus and its own images; another
tenant's private image is a 404 whether or not it exists. Uploads are private by default for users,
shared by default for admins (`visibility` picks); only admins write the shared corpus (403).

The handlers are plain `def`: they call the retriever over blocking HTTP, so FastAPI runs them in
its thread pool and the event loop keeps answering (probes, event streams) meanwhile.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile

from services.errors import ApiError
from services.schemas import SHARED_CORPUS, CorpusImage, SearchRequest, Text, is_corpus_id
from services.settings import Settings
from services.tenants import Tenant

from ..deps import Authenticated, CurrentTenant, RetrieverDep, SettingsDep
from ..openapi import CorpusImageView, SearchResult, ok, responses
from ..retriever_client import RetrieverClient
from ..views import artifact_url

router = APIRouter(prefix="/v1/corpus", tags=["corpus"], dependencies=[Authenticated], responses=responses(401))

FormText = Annotated[Text | None, Form(max_length=1000)]
NO_IMAGE = {404: "no corpus image with this id"}


def _with_url(settings: Settings, image: dict, request: Request) -> dict:
    image["image_url"] = artifact_url(settings, image["image_uri"], str(request.base_url))
    return image


def _check_writable(tenant: Tenant, owner: str) -> None:
    if owner == SHARED_CORPUS and not tenant.is_admin:
        raise ApiError(403, "forbidden", "only admins write the shared corpus")


def _not_found(image_id: str) -> ApiError:
    return ApiError(404, "image_not_found", f"no corpus image {image_id!r}")


@router.post(
    "/images",
    status_code=201,
    summary="Add a photo to the corpus",
    response_model=None,
    responses={
        201: ok(CorpusImageView, "added"),
        200: ok(CorpusImageView, "the same pixels were already in the corpus: that record (`duplicate: true`)"),
        **responses(400, 403, 413, 422, 503, descriptions={403: "only admins add to the shared corpus"}),
    },
)
def add_image(
    retriever: RetrieverDep,
    settings: SettingsDep,
    tenant: CurrentTenant,
    request: Request,
    response: Response,
    file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP, at most REALRAG_MAX_UPLOAD_BYTES")],
    caption: FormText = None,
    object_id: FormText = None,
    label: FormText = None,
    source: FormText = None,
    license: FormText = None,
    metadata: Annotated[Text | None, Form(max_length=64 * 1024, description="a JSON object")] = None,
    visibility: Annotated[
        Literal["shared", "private"] | None,
        Form(description="shared (admins only: every tenant retrieves it) or private (this tenant only); default: shared for admins"),
    ] = None,
) -> dict:
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "image_too_large", f"image is larger than {settings.max_upload_bytes} bytes")
    fields = {
        k: v
        for k, v in dict(caption=caption, object_id=object_id, label=label, source=source, license=license, metadata=metadata).items()
        if v is not None
    }
    shared = visibility == "shared" or (visibility is None and tenant.is_admin)
    owner = SHARED_CORPUS if shared else tenant.name
    _check_writable(tenant, owner)
    result, status = retriever.ingest(data, fields, tenant=owner)
    response.status_code = status
    return _with_url(settings, result.model_dump(), request)


@router.get(
    "/images/{image_id}",
    summary="One corpus record",
    response_model=None,
    responses={200: ok(CorpusImageView, "the record"), **responses(404, 503, descriptions=NO_IMAGE)},
)
def get_image(image_id: str, retriever: RetrieverDep, settings: SettingsDep, tenant: CurrentTenant, request: Request) -> dict:
    return _with_url(settings, _visible_image(retriever, image_id, tenant).model_dump(), request)


def _visible_image(retriever: RetrieverClient, image_id: str, tenant: Tenant) -> CorpusImage:
    image = retriever.get_image(image_id, tenant=tenant.name) if is_corpus_id(image_id) else None
    if image is None:
        raise _not_found(image_id)
    return image


@router.delete(
    "/images/{image_id}",
    status_code=204,
    summary="Remove a photo and its stored file",
    response_class=Response,
    responses=responses(403, 404, 503, descriptions={**NO_IMAGE, 403: "a shared corpus image (admins only)"}),
)
def delete_image(image_id: str, retriever: RetrieverDep, tenant: CurrentTenant) -> Response:
    _check_writable(tenant, _visible_image(retriever, image_id, tenant).tenant)
    if not retriever.delete_image(image_id, tenant=tenant.name):
        raise _not_found(image_id)
    return Response(status_code=204)


@router.post(
    "/search",
    summary="Search the corpus by text",
    response_model=None,
    responses={200: ok(SearchResult, "the best matches first"), **responses(400, 413, 422, 503)},
)
def search(body: SearchRequest, retriever: RetrieverDep, settings: SettingsDep, tenant: CurrentTenant, request: Request) -> dict:
    """Among the shared corpus and the caller's own images."""
    result = retriever.search(body, tenant=tenant.name).model_dump()
    for hit in result["hits"]:
        _with_url(settings, hit, request)
    return result
