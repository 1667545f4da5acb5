"""Request size limits: a pure ASGI middleware that checks the headers' total size (431 over
REALRAG_MAX_HEADER_BYTES) and counts the body's bytes as they stream in.

A declared ``Content-Length`` over the limit is refused before anything is read; without one
(chunked uploads) the body is counted as it arrives and the request is cut off at the first byte
past the limit. Either way the client gets ``413`` with the usual error body, and the application
never holds more than the limit in memory.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import ErrorResponse, error_body
from services.settings import get_settings


class BodyTooLarge(Exception):
    """Raised into the application's body reader when the limit is passed."""


def _too_large(limit: int) -> ErrorResponse:
    return ErrorResponse(
        error_body("request_too_large", f"the request body is larger than {limit} bytes", {"limit_bytes": limit}),
        status_code=413,
        headers={"Connection": "close"},
    )


def header_bytes(scope: Scope) -> int:
    """The request headers' size as sent: `name: value` and CRLF each."""
    return sum(len(name) + len(value) + 4 for name, value in scope.get("headers", ()))


def header_limit(scope: Scope) -> int:
    """REALRAG_MAX_HEADER_BYTES of the running app's settings."""
    state = getattr(scope.get("app"), "state", None)
    settings = getattr(state, "settings", None) or get_settings()
    return settings.max_header_bytes


def _headers_too_large(size: int, limit: int) -> ErrorResponse:
    return ErrorResponse(
        error_body("headers_too_large", f"the request headers are {size} bytes; at most {limit}", {"limit_bytes": limit}),
        status_code=431,
        headers={"Connection": "close"},
    )


class BodySizeLimit:
    """`limit_of(scope)` gives the body limit of each request (routes differ: uploads are larger),
    `header_limit_of(scope)` the limit of its headers together (None: not checked here)."""

    def __init__(self, app: ASGIApp, limit_of: Callable[[Scope], int], header_limit_of: Callable[[Scope], int] | None = None) -> None:
        self.app = app
        self.limit_of = limit_of
        self.header_limit_of = header_limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.header_limit_of is not None:
            size, max_size = header_bytes(scope), self.header_limit_of(scope)
            if size > max_size:
                await _headers_too_large(size, max_size)(scope, receive, send)
                return
        limit = self.limit_of(scope)
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(limit)(scope, receive, send)
            return

        received = 0
        exceeded = False
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if exceeded and not response_started:
                return  # the application's answer to a body it could not read; ours is the 413
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            pass
        except Exception:
            if not exceeded:
                raise
        if exceeded and not response_started:
            await _too_large(limit)(scope, receive, send)
