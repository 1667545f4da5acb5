"""/v1/corpus: manage the real-image corpus (proxied to the retriever service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from services.errors import ApiError
from services.schemas import SearchRequest

from ..deps import Authenticated, RetrieverDep, SettingsDep
from ..views import artifact_url

router = APIRouter(prefix="/v1/corpus", tags=["corpus"], dependencies=[Authenticated])


def _with_url(settings, image: dict) -> dict:
    image["image_url"] = artifact_url(settings, image["image_uri"])
    return image


@router.post("/images", status_code=201)
async def add_image(
    retriever: RetrieverDep,
    settings: SettingsDep,
    response: Response,
    file: Annotated[UploadFile, File()],
    caption: Annotated[str | None, Form()] = None,
    object_id: Annotated[str | None, Form()] = None,
    label: Annotated[str | None, Form()] = None,
    source: Annotated[str | None, Form()] = None,
    license: Annotated[str | None, Form()] = None,
    metadata: Annotated[str | None, Form()] = None,
) -> dict:
    data = await file.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ApiError(413, "image_too_large", f"image is larger than {settings.max_upload_bytes} bytes")
    fields = {
        k: v
        for k, v in dict(caption=caption, object_id=object_id, label=label, source=source, license=license, metadata=metadata).items()
        if v is not None
    }
    result, status = retriever.ingest(file.filename or "image", data, file.content_type or "application/octet-stream", fields)
    response.status_code = status
    return _with_url(settings, result.model_dump())


@router.get("/images/{image_id}")
def get_image(image_id: str, retriever: RetrieverDep, settings: SettingsDep) -> dict:
    image = retriever.get_image(image_id)
    if image is None:
        raise ApiError(404, "image_not_found", f"no corpus image {image_id}")
    return _with_url(settings, image.model_dump())


@router.delete("/images/{image_id}", status_code=204)
def delete_image(image_id: str, retriever: RetrieverDep) -> Response:
    if not retriever.delete_image(image_id):
        raise ApiError(404, "image_not_found", f"no corpus image {image_id}")
    return Response(status_code=204)


@router.post("/search")
def search(body: SearchRequest, retriever: RetrieverDep, settings: SettingsDep) -> dict:
    result = retriever.search(body).model_dump()
    for hit in result["hits"]:
        _with_url(settings, hit)
    return result
