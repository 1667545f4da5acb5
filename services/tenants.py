"""Tenants: who is calling. API keys are configured as SHA-256 digests (REALRAG_TENANTS), never in
plain text; a presented key is hashed and compared in constant time with every configured digest.

With no tenants configured, auth is off and every request acts as the `local` admin tenant
(development only; the gateway logs it loudly and refuses it in production).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Literal

from .settings import Settings, TenantConfig


@dataclass(frozen=True)
class Tenant:
    name: str
    role: Literal["user", "admin"]
    requests_per_minute: int
    max_jobs_in_flight: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


LOCAL_TENANT_NAME = "local"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "rr_" + secrets.token_urlsafe(32)


def _tenant(config: TenantConfig, settings: Settings) -> Tenant:
    return Tenant(
        name=config.name,
        role=config.role,
        requests_per_minute=config.requests_per_minute or settings.default_requests_per_minute,
        max_jobs_in_flight=config.max_jobs_in_flight or settings.default_max_jobs_in_flight,
    )


def local_tenant(settings: Settings) -> Tenant:
    """The tenant every request acts as when auth is off."""
    return Tenant(LOCAL_TENANT_NAME, "admin", settings.default_requests_per_minute, settings.default_max_jobs_in_flight)


def find_tenant(settings: Settings, presented_key: str) -> Tenant | None:
    """The tenant owning `presented_key`, or None. Every digest is compared (no early exit)."""
    digest = hash_key(presented_key)
    found = None
    for config in settings.tenants:
        if hmac.compare_digest(digest, config.key_sha256):
            found = config
    return _tenant(found, settings) if found is not None else None


class AuthNotConfigured(RuntimeError):
    pass


def check_auth_mode(settings: Settings, log: logging.Logger) -> None:
    """At gateway start-up: auth off (no REALRAG_TENANTS) is refused in production and logged loudly elsewhere."""
    if settings.auth_enabled:
        log.info("auth on: %d tenant(s) configured", len(settings.tenants))
        return
    if settings.environment == "production":
        raise AuthNotConfigured(
            "REALRAG_ENVIRONMENT=production needs REALRAG_TENANTS (API keys): refusing to serve without auth. "
            "`realrag tenants add NAME` prints a key and its entry."
        )
    log.warning(
        "AUTH IS OFF: no REALRAG_TENANTS configured, every request acts as the admin tenant %r with no limits. "
        "Development only; production refuses to start like this.",
        LOCAL_TENANT_NAME,
    )
