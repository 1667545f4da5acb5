"""HTTP client for the retriever service (the gateway never loads an encoder itself)."""

from __future__ import annotations

from typing import Any

import httpx

from services.errors import ApiError
from services.schemas import CorpusImage, IngestResponse, SearchRequest, SearchResponse


class RetrieverClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                503, "retriever_unavailable", f"the retriever service is unreachable ({type(exc).__name__})"
            ) from exc
        if response.status_code >= 500:
            raise ApiError(503, "retriever_unavailable", f"the retriever service answered {response.status_code}")
        if response.status_code >= 400 and response.status_code != 404:
            error = _error_of(response)
            raise ApiError(response.status_code, error.get("code", "retriever_error"), error.get("message", ""))
        return response

    def search(self, request: SearchRequest) -> SearchResponse:
        return SearchResponse.model_validate(self._call("POST", "/v1/search", json=request.model_dump()).json())

    def get_image(self, image_id: str) -> CorpusImage | None:
        response = self._call("GET", f"/v1/images/{image_id}")
        return None if response.status_code == 404 else CorpusImage.model_validate(response.json())

    def delete_image(self, image_id: str) -> bool:
        return self._call("DELETE", f"/v1/images/{image_id}").status_code == 204

    def ingest(self, filename: str, data: bytes, content_type: str, fields: dict[str, str]) -> tuple[IngestResponse, int]:
        response = self._call("POST", "/v1/images", files={"file": (filename, data, content_type)}, data=fields)
        return IngestResponse.model_validate(response.json()), response.status_code

    def ready(self) -> dict:
        return self._call("GET", "/readyz").json()

    def close(self) -> None:
        self.http.close()


def _error_of(response: httpx.Response) -> dict:
    try:
        return response.json().get("error", {})
    except ValueError:
        return {}
