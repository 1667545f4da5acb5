"""API keys: off when no tenants are configured; with tenants, every /v1 router but artifacts needs one."""

from __future__ import annotations

import pytest

from .helpers import tenants_setting

PROTECTED = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/generations/some-id", None),
    ("POST", "/v1/generations", {"prompt": "ok"}),
    ("POST", "/v1/images/generations", {"prompt": "ok"}),
    ("POST", "/v1/corpus/search", {"query": "car"}),
]


def test_auth_is_off_without_keys(gateway):
    assert gateway.get("/v1/models").status_code == 200


@pytest.fixture
def secured(make_gateway):
    with make_gateway(tenants=tenants_setting(("alpha", "s3cret"), ("beta", "other-key"))) as gateway:
        yield gateway


def test_api_keys_are_enforced(secured):
    assert secured.get("/v1/models").status_code == 401
    assert secured.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert secured.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert secured.get("/v1/models", headers={"authorization": "bearer other-key"}).status_code == 200
    assert secured.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
    assert secured.get("/v1/models", headers={"X-API-Key": "s3cre"}).status_code == 401
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/metrics").status_code == 200


@pytest.mark.parametrize("method,path,body", PROTECTED)
def test_every_api_router_refuses_without_a_key(secured, redis_db, method, path, body):
    before = set(redis_db.keys("realrag:*"))
    response = secured.request(method, path, json=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    assert set(redis_db.keys("realrag:*")) == before, "nothing is created for an unauthenticated caller"
