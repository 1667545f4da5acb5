"""Annotated dependencies: settings, job store, retriever client, generation service, auth."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

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


def require_api_key(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """Bearer token or X-API-Key, compared in constant time. No keys configured: auth is off."""
    if not settings.auth_enabled:
        return
    presented = x_api_key
    if authorization and authorization.lower().startswith("bearer "):
        presented = authorization[7:].strip()
    if presented:
        for key in settings.api_keys:
            if secrets.compare_digest(presented.encode(), key.get_secret_value().encode()):
                return
    error = ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)")
    error.headers["WWW-Authenticate"] = "Bearer"
    raise error


Authenticated = Depends(require_api_key)
