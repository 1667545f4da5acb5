"""Annotated dependencies: settings, job store, retriever client, generation service, auth.

All `async def`: FastAPI runs a plain `def` dependency in the thread pool, a hand-off per dependency
per request, and none of these blocks (the rate limit is on redis.asyncio)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.errors import ApiError
from services.jobs import JobStore
from services.settings import Settings
from services.tenants import Tenant, find_tenant, local_tenant

from .generations import GenerationService
from .retriever_client import RetrieverClient


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


async def get_retriever(request: Request) -> RetrieverClient:
    return request.app.state.retriever


async def get_generations(request: Request) -> GenerationService:
    return request.app.state.generations


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
RetrieverDep = Annotated[RetrieverClient, Depends(get_retriever)]
GenerationsDep = Annotated[GenerationService, Depends(get_generations)]


# The two ways to present a key, declared as OpenAPI security schemes (generated clients send them);
# auto_error=False: a missing key is our own 401 with the usual error body, and only when keys are set.
BEARER = HTTPBearer(
    scheme_name="bearerAuth", auto_error=False, description="`Authorization: Bearer KEY`, KEY a tenant's API key (REALRAG_TENANTS)"
)
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", scheme_name="apiKeyAuth", auto_error=False, description="`X-API-Key: KEY`, KEY a tenant's API key (REALRAG_TENANTS)"
)


def require_tenant(
    settings: Settings, bearer: HTTPAuthorizationCredentials | None = None, x_api_key: str | None = None
) -> Tenant:
    """The calling tenant, from a Bearer token or X-API-Key. No tenants configured: auth is off."""
    if not settings.auth_enabled:
        return local_tenant(settings)
    presented = bearer.credentials.strip() if bearer is not None else x_api_key
    tenant = find_tenant(settings, presented) if presented else None
    if tenant is None:
        error = ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)")
        error.headers["WWW-Authenticate"] = "Bearer"
        raise error
    return tenant


# The tenant dependencies read app.state themselves rather than through SettingsDep/GenerationsDep:
# each sub-dependency costs FastAPI a solving step on every request, and these run on every request.
async def presented_tenant(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> Tenant:
    """`require_tenant` as a dependency (async: it does not block, so no thread-pool hand-off)."""
    return require_tenant(request.app.state.settings, bearer, x_api_key)


async def metered_tenant(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None,
    x_api_key: Annotated[str | None, Security(API_KEY_HEADER)] = None,
) -> Tenant:
    """The calling tenant, its request counted against its requests per minute (429 over it)."""
    state = request.app.state
    tenant = require_tenant(state.settings, bearer, x_api_key)
    await state.generations.rate_limits.hit(tenant)
    return tenant


async def require_admin(tenant: Annotated[Tenant, Depends(metered_tenant)]) -> Tenant:
    if not tenant.is_admin:
        raise ApiError(403, "forbidden", "this operation needs an admin API key")
    return tenant


# Authenticated, CurrentTenant and AdminTenant meter the request (FastAPI runs a dependency once per
# request, however many of these a route uses). UnmeteredTenant is for the routes that create jobs:
# GenerationService.submit meters them itself, after answering replays.
Authenticated = Depends(metered_tenant)
CurrentTenant = Annotated[Tenant, Depends(metered_tenant)]
AdminTenant = Annotated[Tenant, Depends(require_admin)]
UnmeteredTenant = Annotated[Tenant, Depends(presented_tenant)]
