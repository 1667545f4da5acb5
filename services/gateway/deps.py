"""Annotated dependencies: settings, job store, retriever client, generation service, auth."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.errors import ApiError
from services.jobs import JobStore
from services.settings import Settings

from .generations import GenerationService
from .retriever_client import RetrieverClient


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_retriever(request: Request) -> RetrieverClient:
    return request.app.state.retriever


def get_generations(request: Request) -> GenerationService:
    return request.app.state.generations


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
RetrieverDep = Annotated[RetrieverClient, Depends(get_retriever)]
GenerationsDep = Annotated[GenerationService, Depends(get_generations)]


# The two ways to present a key, declared as OpenAPI security schemes (generated clients send them);
# auto_error=False: a missing key is our own 401 with the usual error body, and only when keys are set.
BEARER = HTTPBearer(
    scheme_name="bearerAuth", auto_error=False, description="`Authorization: Bearer KEY`, KEY one of REALRAG_API_KEYS"
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="apiKeyAuth", auto_error=False, description="`X-API-Key: KEY`, KEY one of REALRAG_API_KEYS"
)


def require_api_key(
    settings: SettingsDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> None:
    """Bearer token or X-API-Key, compared in constant time. No keys configured: auth is off."""
    if not settings.auth_enabled:
        return
    presented = bearer.credentials.strip() if bearer is not None else x_api_key
    if presented:
        for key in settings.api_keys:
            if secrets.compare_digest(presented.encode(), key.get_secret_value().encode()):
                return
    error = ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)")
    error.headers["WWW-Authenticate"] = "Bearer"
    raise error


Authenticated = Depends(require_api_key)
