"""Service tokens for the retriever (#10, least privilege).

With REALRAG_RETRIEVER_TOKEN set, every route but the probes needs `Authorization: Bearer <token>`:
the gateway (its only client) sends it. `/v1/admin/*` (re-index, rollback) needs
REALRAG_RETRIEVER_ADMIN_TOKEN instead, which operators (`realrag` CLI) hold and the gateway does not;
the admin token also opens every other route (`realrag ingest` over HTTP). Unset tokens: the routes
they guard are open (development), except that the admin routes stay closed while a service token is
set without an admin token (holding the gateway's token must not open re-index and rollback).
Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from services.errors import ApiError
from services.settings import Settings

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
ADMIN_PREFIX = "/v1/admin/"


def _matches(presented: str, token: SecretStr | None) -> bool:
    expected = token.get_secret_value() if token is not None else ""
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())


def _presented(request: Request) -> str:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


def check(settings: Settings, path: str, presented: str) -> None:
    """Raise 401/403 unless `presented` opens `path` under `settings`."""
    if path in OPEN_PATHS:
        return
    service, admin = settings.retriever_token, settings.retriever_admin_token
    if path.startswith(ADMIN_PREFIX):
        if admin is None and service is None:
            return  # development: no tokens at all
        if not _matches(presented, admin):
            raise _refused(presented, "the admin routes need the retriever admin token (REALRAG_RETRIEVER_ADMIN_TOKEN)")
        return
    if service is None:
        return
    if not (_matches(presented, service) or _matches(presented, admin)):
        raise _refused(presented, "a valid retriever token is required (Authorization: Bearer REALRAG_RETRIEVER_TOKEN)")


def _refused(presented: str, message: str) -> ApiError:
    if presented:
        return ApiError(403, "forbidden", message)
    error = ApiError(401, "unauthorized", message)
    error.headers["WWW-Authenticate"] = "Bearer"
    return error


async def require_token(request: Request) -> None:
    """App-level dependency: the running retriever's settings (read at startup) decide."""
    check(request.app.state.retriever.settings, request.url.path, _presented(request))


def bearer_headers(token: SecretStr | None) -> dict[str, str]:
    """Headers a client of the retriever sends (none when no token is configured)."""
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None and token.get_secret_value() else {}
