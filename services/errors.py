"""One error type for the HTTP services, mapped to status codes in one place.

Every error answer has the same body, ``{"error": {"code", "message", "details"?}}`` (`ErrorBody`,
also the schema the OpenAPI documents for each error status).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable reason, e.g. `queue_full`, `invalid_request`")
    message: str = Field(description="what went wrong, for people")
    details: dict[str, Any] | list[Any] | None = Field(
        None, description="structured context: the failing fields of a 422, the job id of a 504, ..."
    )


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


# Validation error types (pydantic) that have a clearer code than `invalid_request`
CODE_OF_ERROR_TYPE = {"lone_surrogate": "invalid_unicode", "invalid_filter": "invalid_filter"}
CODE_OF_STATUS = {
    400: "invalid_body",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
}


class ErrorResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error may quote client text, and that may hold a lone surrogate
    (valid in JSON, not encodable as UTF-8)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if details:
        body["error"]["details"] = details
    return body


def validation_error_response(errors: list[dict[str, Any]]) -> ErrorResponse:
    """422 for a request that does not fit its schema, naming each failing field."""
    details = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))} for e in errors]
    special = next((d for d in details if d["type"] in CODE_OF_ERROR_TYPE), None)
    code, message = "invalid_request", "the request is not valid"
    if special is not None:
        where = ".".join(str(part) for part in special["loc"] if part != "body")
        code, message = CODE_OF_ERROR_TYPE[str(special["type"])], f"{where}: {special['msg']}"
    return ErrorResponse(error_body(code, message, jsonable_encoder(details)), status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (a path can be served by several routes)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):  # included routers' routes too
        route_methods = route.methods
        if route_methods and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route_methods
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> ErrorResponse:
        return ErrorResponse(
            error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> ErrorResponse:
        return validation_error_response(list(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ErrorResponse:
        code = CODE_OF_STATUS.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return ErrorResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> ErrorResponse:
        # never leak tracebacks, paths or host names
        return ErrorResponse(error_body("internal_error", "internal error"), status_code=500)
