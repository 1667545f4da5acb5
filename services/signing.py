"""Signed, expiring artefact URLs: HMAC-SHA256 over path + expiry. Floor module (#10).

A signed URL is `<path>?expires=<unix seconds>&signature=<base64url HMAC>`; whoever holds it may
fetch that one path until it expires, without an API key (so `<img src>` works). The key is
REALRAG_URL_SIGNING_KEY; unset, each process draws a random one (development only: URLs signed by
one gateway replica would not verify on another, and none survives a restart).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import math
import secrets
import time
from functools import lru_cache

from .settings import Settings

log = logging.getLogger(__name__)

# Expiries are rounded up to this many seconds, so that reading a job twice within it gives the same
# URLs (browsers and proxies cache the image instead of fetching it again).
EXPIRY_STEP_S = 60


@lru_cache(maxsize=1)
def _process_key() -> bytes:
    log.warning(
        "REALRAG_URL_SIGNING_KEY is not set: signing artefact URLs with a random per-process key "
        "(development only; gateway replicas must share one key, and signed URLs die with this process)"
    )
    return secrets.token_bytes(32)


def signing_key(settings: Settings) -> bytes:
    if settings.url_signing_key is not None and settings.url_signing_key.get_secret_value():
        return settings.url_signing_key.get_secret_value().encode()
    return _process_key()


def signature(key: bytes, path: str, expires: int) -> str:
    digest = hmac.new(key, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def expiry(settings: Settings, now: float | None = None) -> int:
    now = time.time() if now is None else now
    return math.ceil((now + settings.signed_url_ttl_s) / EXPIRY_STEP_S) * EXPIRY_STEP_S


def sign(settings: Settings, path: str, expires: int | None = None) -> dict[str, str]:
    """The query parameters that authorize `path` (the URL path, not percent-encoded) until `expires`."""
    expires = expiry(settings) if expires is None else expires
    return {"expires": str(expires), "signature": signature(signing_key(settings), path, expires)}


def verify(settings: Settings, path: str, expires: str | None, presented: str | None, now: float | None = None) -> bool:
    """True when `presented` signs `path` until `expires` and that time has not passed."""
    if not expires or not presented or not expires.isascii() or not expires.isdigit() or len(expires) > 12:
        return False
    deadline = int(expires)
    if deadline < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature(signing_key(settings), path, deadline), presented.encode("ascii", "replace").decode())
