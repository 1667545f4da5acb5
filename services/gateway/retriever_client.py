"""HTTP client for the retriever service (the gateway never loads an encoder itself).

What the retriever answers, as the gateway's client sees it:
- connection errors, timeouts and 503: the retriever is down or not ready, `503 retriever_unavailable`
  (nothing was created; clients may retry);
- the client's errors (400, 409, 413, 422): passed through with the retriever's code and message;
- anything else (500, a redirect, a body that is not what was asked for): a retriever bug or a
  version mismatch, `502 retriever_error`.
Ids are validated before they reach a URL, and every path segment is percent-encoded.

Tenancy (#10): every call names the tenant it acts for, and the client scopes it: searches carry a
`tenant` payload filter (the shared corpus plus the tenant's own images), reads and deletes of an
image outside that scope answer "not found", whether or not the image exists. The gateway is the
only caller the retriever trusts (REALRAG_RETRIEVER_TOKEN, sent on every request).
"""

from __future__ import annotations

from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from services.errors import ApiError
from services.schemas import SHARED_CORPUS, CorpusImage, IngestResponse, RetrieverInfo, SearchRequest, SearchResponse, is_corpus_id
from services.settings import Settings

PASSED_THROUGH = frozenset({400, 409, 413, 422})
Model = TypeVar("Model", CorpusImage, IngestResponse, SearchResponse)


class RetrieverClient:
    def __init__(self, base_url: str, timeout_s: float, token: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=base_url, timeout=timeout_s, follow_redirects=False, headers=headers)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrieverClient:
        token = settings.retriever_token.get_secret_value() if settings.retriever_token else None
        return cls(settings.retriever_url, settings.retriever_timeout_s, token=token)

    def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc
        return _checked(response, missing_ok)

    def search(self, request: SearchRequest, *, tenant: str) -> SearchResponse:
        """The best matches among the images `tenant` may see (a client's own `tenant` condition can
        only narrow that)."""
        body = _scoped_search(request, tenant)
        if body is None:
            return _nothing_visible(request)
        return _parse(SearchResponse, self._call("POST", "/v1/search", json=body))

    def get_image(self, image_id: str, *, tenant: str) -> CorpusImage | None:
        """The record, if `tenant` may see it (shared or its own), else None."""
        if not is_corpus_id(image_id):
            return None
        return _visible_image(self._call("GET", _image_path(image_id), missing_ok=True), tenant)

    def delete_image(self, image_id: str, *, tenant: str) -> bool:
        """Delete an image `tenant` may see; False when there is none. Whether `tenant` may write it
        (the shared corpus: admins only) is the caller's check, on `get_image`'s record."""
        if self.get_image(image_id, tenant=tenant) is None:
            return False
        return self._call("DELETE", _image_path(image_id), missing_ok=True).status_code == 204

    def ingest(self, data: bytes, fields: dict[str, str], *, tenant: str) -> tuple[IngestResponse, int]:
        """Add an image owned by `tenant` (SHARED_CORPUS: the shared corpus)."""
        form = {**fields, "tenant": tenant}
        response = self._call("POST", "/v1/images", files={"file": ("upload", data, "application/octet-stream")}, data=form)
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


class AsyncRetrieverClient:
    """The calls a job submission makes (search, get_image), on httpx.AsyncClient: `RetrieverClient`'s
    semantics, the event loop never blocked on the retriever."""

    def __init__(self, base_url: str, timeout_s: float, token: str | None = None, max_connections: int = 8) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, follow_redirects=False, headers=headers, limits=limits)

    @classmethod
    def from_settings(cls, settings: Settings) -> AsyncRetrieverClient:
        token = settings.retriever_token.get_secret_value() if settings.retriever_token else None
        return cls(settings.retriever_url, settings.retriever_timeout_s, token=token, max_connections=settings.retriever_max_connections)

    async def _call(self, method: str, path: str, *, missing_ok: bool = False, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise _unreachable(exc) from exc
        return _checked(response, missing_ok)

    async def search(self, request: SearchRequest, *, tenant: str) -> SearchResponse:
        """`RetrieverClient.search`."""
        body = _scoped_search(request, tenant)
        if body is None:
            return _nothing_visible(request)
        return _parse(SearchResponse, await self._call("POST", "/v1/search", json=body))

    async def get_image(self, image_id: str, *, tenant: str) -> CorpusImage | None:
        """`RetrieverClient.get_image`."""
        if not is_corpus_id(image_id):
            return None
        return _visible_image(await self._call("GET", _image_path(image_id), missing_ok=True), tenant)

    async def aclose(self) -> None:
        await self.http.aclose()


def _unreachable(exc: httpx.HTTPError) -> ApiError:
    return ApiError(503, "retriever_unavailable", f"the retriever service is unreachable ({type(exc).__name__})")


def _checked(response: httpx.Response, missing_ok: bool) -> httpx.Response:
    """`response` if it is a success (or a 404 where `missing_ok`), else the ApiError it stands for."""
    status = response.status_code
    if status < 300 or (status == 404 and missing_ok):
        return response
    if status == 503:
        raise ApiError(503, "retriever_unavailable", "the retriever service is not ready")
    if status in PASSED_THROUGH:
        error = _error_of(response)
        raise ApiError(status, error.get("code", "retriever_error"), error.get("message", ""))
    if status in (401, 403):  # a deployment error, not the client's: name the setting
        raise ApiError(502, "retriever_error", "the retriever refused the gateway's REALRAG_RETRIEVER_TOKEN")
    raise ApiError(502, "retriever_error", f"the retriever service answered {status}")


def _scoped_search(request: SearchRequest, tenant: str) -> dict[str, Any] | None:
    """The search body with the tenant scope added; None when nothing is visible."""
    scoped = scope_filter(request.filter, tenant)
    if scoped is None:
        return None
    return request.model_copy(update={"filter": scoped}).model_dump(mode="json")


def _nothing_visible(request: SearchRequest) -> SearchResponse:
    return SearchResponse(hits=[], retriever=RetrieverInfo(kind=request.retriever or "zero-shot"), took_ms=0.0)


def _image_path(image_id: str) -> str:
    return f"/v1/images/{quote(image_id, safe='')}"


def _visible_image(response: httpx.Response, tenant: str) -> CorpusImage | None:
    if response.status_code == 404:
        return None
    image = _parse(CorpusImage, response)
    return image if image.tenant in visible_to(tenant) else None


def visible_to(tenant: str) -> tuple[str, ...]:
    """The corpus owners whose images `tenant` sees: the shared corpus and its own."""
    return (SHARED_CORPUS, tenant)


def scope_filter(conditions: dict[str, Any] | None, tenant: str) -> dict[str, Any] | None:
    """`conditions` with the tenant scope added; None when the client's own `tenant` condition
    leaves nothing visible."""
    visible = list(visible_to(tenant))
    asked = (conditions or {}).get("tenant")
    if asked is not None:
        wanted = asked if isinstance(asked, list) else [asked]
        visible = [owner for owner in visible if owner in wanted]
        if not visible:
            return None
    return {**(conditions or {}), "tenant": visible}


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
