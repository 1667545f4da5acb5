"""HTTP client for the retriever service (the gateway never loads an encoder itself).

What the retriever answers, as the gateway's client sees it:
- connection errors, timeouts and 503: the retriever is down or not ready, `503 retriever_unavailable`
  (nothing was created; clients may retry);
- the client's errors (400, 409, 413, 422): passed through with the retriever's code and message;
- anything else (500, a redirect, a body that is not what was asked for): a retriever bug or a
  version mismatch, `502 retriever_error`.
Ids are validated before they reach a URL, and every path segment is percent-encoded.
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from services.errors import ApiError
from services.schemas import CorpusImage, IngestResponse, SearchRequest, SearchResponse, is_corpus_id

PASSED_THROUGH = frozenset({400, 409, 413, 422})
Model = TypeVar("Model", CorpusImage, IngestResponse, SearchResponse)


class RetrieverClient:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s, follow_redirects=False)

    def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(
                503, "retriever_unavailable", f"the retriever service is unreachable ({type(exc).__name__})"
            ) from exc
        status = response.status_code
        if status < 300 or (status == 404 and missing_ok):
            return response
        if status == 503:
            raise ApiError(503, "retriever_unavailable", "the retriever service is not ready")
        if status in PASSED_THROUGH:
            error = _error_of(response)
            raise ApiError(status, error.get("code", "retriever_error"), error.get("message", ""))
        raise ApiError(502, "retriever_error", f"the retriever service answered {status}")

    def search(self, request: SearchRequest) -> SearchResponse:
        response = self._call("POST", "/v1/search", json=request.model_dump(mode="json"))
        return _parse(SearchResponse, response)

    def get_image(self, image_id: str) -> CorpusImage | None:
        if not is_corpus_id(image_id):
            return None
        response = self._call("GET", f"/v1/images/{quote(image_id, safe='')}", missing_ok=True)
        return None if response.status_code == 404 else _parse(CorpusImage, response)

    def delete_image(self, image_id: str) -> bool:
        if not is_corpus_id(image_id):
            return False
        return self._call("DELETE", f"/v1/images/{quote(image_id, safe='')}", missing_ok=True).status_code == 204

    def ingest(self, data: bytes, fields: dict[str, str]) -> tuple[IngestResponse, int]:
        response = self._call("POST", "/v1/images", files={"file": ("upload", data, "application/octet-stream")}, data=fields)
        return _parse(IngestResponse, response), response.status_code

    def ready(self) -> dict:
        try:
            state = self._call("GET", "/readyz").json()
        except ValueError as exc:
            raise ApiError(502, "retriever_error", "the retriever service answered something unexpected") from exc
        if not isinstance(state, dict):
            raise ApiError(502, "retriever_error", "the retriever service answered something unexpected")
        return state

    def close(self) -> None:
        self.http.close()


def _parse(model: type[Model], response: httpx.Response) -> Model:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise ApiError(502, "retriever_error", "the retriever service answered something unexpected") from exc


def _error_of(response: httpx.Response) -> dict:
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}
