"""/metrics behind REALRAG_METRICS_TOKEN (#10, least privilege); probes stay open."""

from __future__ import annotations


def test_the_metrics_token_is_required_when_set(make_gateway):
    with make_gateway(metrics_token="scrape-me") as gateway:
        missing = gateway.get("/metrics")
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = gateway.get("/metrics", headers={"Authorization": "Bearer scrape-you"})
        assert wrong.status_code == 403
        assert gateway.get("/metrics", headers={"Authorization": "Basic c2NyYXBlLW1l"}).status_code == 401
        right = gateway.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert right.status_code == 200 and "realrag_" in right.text
        assert gateway.get("/healthz").status_code == 200
        assert gateway.get("/readyz").status_code == 200


def test_without_a_token_metrics_are_open_in_development_closed_in_production(make_gateway):
    with make_gateway() as gateway:
        assert gateway.get("/metrics").status_code == 200
    # auth off is refused in production: a tenant makes the gateway start
    tenants = '[{"name": "a", "key_sha256": "' + "0" * 64 + '"}]'
    with make_gateway(environment="production", tenants=tenants, url_signing_key="k", playground_enabled="false") as gateway:
        closed = gateway.get("/metrics")
        assert closed.status_code == 403 and closed.json()["error"]["code"] == "metrics_closed"
        assert gateway.get("/healthz").status_code == 200
