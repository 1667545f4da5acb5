"""Retriever service tokens (retriever_service/auth.py): the real app in-process with both tokens set."""

from __future__ import annotations

import pytest
from PIL import Image

from retriever_service.auth import check
from services.errors import ApiError
from services.settings import Settings
from tests.conftest import png_bytes

from .helpers import retriever_client

SERVICE = "service-token-123"
ADMIN = "admin-token-456"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with retriever_client(tmp_path_factory.mktemp("retriever-auth"), retriever_token=SERVICE, retriever_admin_token=ADMIN) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_probes_are_open(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/search", {"query": "a red car"}),
        ("GET", "/v1/images/6f1c1a52-8a55-4d0e-9b7c-2f1e0b3a9d11", None),
        ("DELETE", "/v1/images/6f1c1a52-8a55-4d0e-9b7c-2f1e0b3a9d11", None),
        ("GET", "/metrics", None),
        ("POST", "/v1/admin/rollback", None),
        ("POST", "/v1/admin/reindex", {"checkpoint": "nope"}),
    ],
)
def test_every_other_route_needs_a_token(client, method, path, body):
    response = client.request(method, path, json=body)
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"
    wrong = client.request(method, path, json=body, headers=bearer("wrong"))
    assert wrong.status_code == 403 and wrong.json()["error"]["code"] == "forbidden"


def test_the_service_token_opens_the_corpus_routes(client):
    photo = png_bytes(Image.new("RGB", (40, 40), (10, 200, 10)))
    added = client.post("/v1/images", files={"file": ("p.png", photo, "image/png")}, data={"label": "green"}, headers=bearer(SERVICE))
    assert added.status_code == 201, added.text
    assert added.json()["tenant"] == "shared"
    assert client.post("/v1/search", json={"query": "green"}, headers=bearer(SERVICE)).status_code == 200
    assert client.get(f"/v1/images/{added.json()['id']}", headers=bearer(SERVICE)).status_code == 200
    assert client.get("/metrics", headers=bearer(SERVICE)).status_code == 200


def test_the_admin_routes_need_the_admin_token(client):
    refused = client.post("/v1/admin/rollback", headers=bearer(SERVICE))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    # past auth: the route itself answers (nothing to roll back to)
    assert client.post("/v1/admin/rollback", headers=bearer(ADMIN)).status_code == 409
    # the admin token opens the service routes too (operators' `realrag ingest`)
    assert client.post("/v1/search", json={"query": "green"}, headers=bearer(ADMIN)).status_code == 200


def check_status(settings: Settings, path: str, presented: str) -> int:
    try:
        check(settings, path, presented)
    except ApiError as exc:
        return exc.status
    return 200


def test_unset_tokens_leave_their_routes_open_but_admin_stays_closed_under_a_service_token():
    none = Settings(retriever_token=None, retriever_admin_token=None)
    assert check_status(none, "/v1/search", "") == 200
    assert check_status(none, "/v1/admin/reindex", "") == 200
    service_only = Settings(retriever_token=SERVICE, retriever_admin_token=None)
    assert check_status(service_only, "/v1/search", SERVICE) == 200
    assert check_status(service_only, "/v1/admin/reindex", SERVICE) == 403
    admin_only = Settings(retriever_token=None, retriever_admin_token=ADMIN)
    assert check_status(admin_only, "/v1/search", "") == 200
    assert check_status(admin_only, "/v1/admin/rollback", "") == 401
    assert check_status(admin_only, "/v1/admin/rollback", ADMIN) == 200
