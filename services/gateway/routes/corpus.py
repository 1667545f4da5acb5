"""/v1/corpus: manage the real-image corpus (proxied to the retriever service).

The handlers are plain `def`: they call the retriever over blocking HTTP, so FastAPI runs them in
its thread pool and the event loop keeps answering (probes, event streams) meanwhile.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from services.errors import ApiError
from services.schemas import SearchRequest, Text, is_corpus_id
from services.settings import Settings

from ..deps import Authenticated, RetrieverDep, SettingsDep
from ..openapi import CorpusImageView, SearchResult, ok, responses
from ..views import artifact_url

router = APIRouter(prefix="/v1/corpus", tags=["corpus"], dependencies=[Authenticated], responses=responses(401))

FormText = Annotated[Text | None, Form(max_length=1000)]
NO_IMAGE = {404: "no corpus image with this id"}


def _with_url(settings: Settings, image: dict) -> dict:
    image["image_url"] = artifact_url(settings, image["image_uri"])
    return image


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
        **responses(400, 413, 422, 503),
    },
)
def add_image(
    retriever: RetrieverDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[UploadFile, File(description="PNG, JPEG or WEBP, at most REALRAG_MAX_UPLOAD_BYTES")],
    caption: FormText = None,
    object_id: FormText = None,
    label: FormText = None,
    source: FormText = None,
    license: FormText = None,
    metadata: Annotated[Text | None, Form(max_length=64 * 1024, description="a JSON object")] = None,
) -> dict:
    data = file.file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "image_too_large", f"image is larger than {settings.max_upload_bytes} bytes")
    fields = {
        k: v
        for k, v in dict(caption=caption, object_id=object_id, label=label, source=source, license=license, metadata=metadata).items()
        if v is not None
    }
    result, status = retriever.ingest(data, fields)
    response.status_code = status
    return _with_url(settings, result.model_dump())


@router.get(
    "/images/{image_id}",
    summary="One corpus record",
    response_model=None,
    responses={200: ok(CorpusImageView, "the record"), **responses(404, 503, descriptions=NO_IMAGE)},
)
def get_image(image_id: str, retriever: RetrieverDep, settings: SettingsDep) -> dict:
    image = retriever.get_image(image_id) if is_corpus_id(image_id) else None
    if image is None:
        raise _not_found(image_id)
    return _with_url(settings, image.model_dump())


@router.delete(
    "/images/{image_id}",
    status_code=204,
    summary="Remove a photo and its stored file",
    response_class=Response,
    responses=responses(404, 503, descriptions=NO_IMAGE),
)
def delete_image(image_id: str, retriever: RetrieverDep) -> Response:
    if not (is_corpus_id(image_id) and retriever.delete_image(image_id)):
        raise _not_found(image_id)
    return Response(status_code=204)


@router.post(
    "/search",
    summary="Search the corpus by text",
    response_model=None,
    responses={200: ok(SearchResult, "the best matches first"), **responses(400, 413, 422, 503)},
)
def search(body: SearchRequest, retriever: RetrieverDep, settings: SettingsDep) -> dict:
    result = retriever.search(body).model_dump()
    for hit in result["hits"]:
        _with_url(settings, hit)
    return result
