"""Request body size limit: a pure ASGI middleware that counts the bytes as they stream in.

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


class BodyTooLarge(Exception):
    """Raised into the application's body reader when the limit is passed."""


def _too_large(limit: int) -> ErrorResponse:
    return ErrorResponse(
        error_body("request_too_large", f"the request body is larger than {limit} bytes", {"limit_bytes": limit}),
        status_code=413,
        headers={"Connection": "close"},
    )


class BodySizeLimit:
    """`limit_of(scope)` gives the limit of each request (routes differ: uploads are larger)."""

    def __init__(self, app: ASGIApp, limit_of: Callable[[Scope], int]) -> None:
        self.app = app
        self.limit_of = limit_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
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
