"""The browser playground (`/playground`, its script and stylesheet): a static page that talks to
the public API with the visitor's own key.

Hardening: the page has no inline script or style, so a strict Content-Security-Policy forbids
every other script (a label or caption smuggling HTML into the page could not run anything even if
it were parsed, and the script renders API data as text only). Off by default in production
(REALRAG_PLAYGROUND_ENABLED): a 404, like any unknown path.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import Response

from services.errors import ApiError
from services.settings import Settings

from ..deps import SettingsDep

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parents[1] / "static"
FILES = {
    "/playground": ("playground.html", "text/html; charset=utf-8"),
    "/playground.js": ("playground.js", "text/javascript; charset=utf-8"),
    "/playground.css": ("playground.css", "text/css; charset=utf-8"),
}


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def content_security_policy(settings: Settings) -> str:
    """Same-origin script, style and API calls; images also from where artefact URLs point."""
    images = ["'self'", "data:"]
    if settings.public_base_url and (origin := _origin(settings.public_base_url)):
        images.append(origin)
    if settings.artifact_store == "s3":  # presigned bucket URLs
        images.append(_origin(settings.s3_endpoint_url or "") or "https://*.amazonaws.com")
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src {' '.join(images)}",
        "connect-src 'self'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])


def security_headers(settings: Settings) -> dict[str, str]:
    return {
        "content-security-policy": content_security_policy(settings),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
        "cache-control": "no-cache",
    }


def _serve(path: str, settings: Settings) -> Response:
    if not settings.playground_on:
        raise ApiError(404, "not_found", "Not Found")
    name, media_type = FILES[path]
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=security_headers(settings))


@router.get("/playground")
def playground(settings: SettingsDep) -> Response:
    return _serve("/playground", settings)


@router.get("/playground.js")
def playground_script(settings: SettingsDep) -> Response:
    return _serve("/playground.js", settings)


@router.get("/playground.css")
def playground_stylesheet(settings: SettingsDep) -> Response:
    return _serve("/playground.css", settings)
