"""The multi-tenant stack both isolation-matrix modules share (test_tenants.py: jobs; test_tenant_artifacts.py:
outputs, corpus, tokens): tenants a and b, the admin `ops`, `slow` with a 5 requests/minute limit, and every
token set. It is a stack of its own (data dir, ports, queue, Redis database 4), so the session's `stack`
keeps auth off."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis

from services.tenants import hash_key
from tests.conftest import running_stack, stack_base_env

from .helpers import METRICS_TOKEN, RETRIEVER_ADMIN_TOKEN, RETRIEVER_TOKEN, TENANT_KEYS, TENANT_REDIS_URL


@pytest.fixture(scope="package")
def tenant_stack(tmp_path_factory) -> Iterator:
    tenants = [
        {"name": name, "key_sha256": hash_key(key), "role": "admin" if name == "ops" else "user"} for name, key in TENANT_KEYS.items()
    ]
    next(t for t in tenants if t["name"] == "slow")["requests_per_minute"] = 5
    env = {
        **stack_base_env(tmp_path_factory.mktemp("tenant-stack"), redis_db=int(TENANT_REDIS_URL.rsplit("/", 1)[1])),
        "REALRAG_TENANTS": json.dumps(tenants),
        "REALRAG_URL_SIGNING_KEY": "e2e-url-signing-key",
        "REALRAG_SIGNED_URL_TTL_S": "600",
        "REALRAG_RETRIEVER_TOKEN": RETRIEVER_TOKEN,
        "REALRAG_RETRIEVER_ADMIN_TOKEN": RETRIEVER_ADMIN_TOKEN,
        "REALRAG_METRICS_TOKEN": METRICS_TOKEN,
    }
    try:
        with running_stack(env) as running:
            yield running
    finally:
        client = redis.Redis.from_url(TENANT_REDIS_URL)
        for key in client.scan_iter("realrag:*"):
            client.delete(key)


@pytest.fixture(scope="package")
def tenant_clients(tenant_stack) -> Iterator[dict[str, httpx.Client]]:
    """One client per tenant (its key in every request), plus `anon` with no key."""
    url = tenant_stack.gateway_url
    made = {name: httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}) for name, key in TENANT_KEYS.items()}
    made["anon"] = httpx.Client(base_url=url, timeout=60)
    yield made
    for client in made.values():
        client.close()
