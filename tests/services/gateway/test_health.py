"""Probes and metrics: /healthz, /readyz (Redis required, retriever reported) and /metrics."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from realrag.stack import free_port


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_healthz(gateway):
    response = gateway.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_reports_redis_and_the_retriever(gateway, corpus):
    response = gateway.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["redis"] == "ok"
    retriever = body["retriever"]
    assert retriever["status"] == "ready"
    assert retriever["encoder"].startswith("tiny-clip")
    assert retriever["points"] >= len(corpus)


def test_readyz_without_the_retriever_is_still_ready(make_gateway):
    with make_gateway(retriever_url=f"http://127.0.0.1:{free_port()}") as gateway:
        response = gateway.get("/readyz")
    assert response.status_code == 200
    assert response.json()["retriever"] == {"status": "unavailable", "error": "retriever_unavailable"}


def test_without_redis_readyz_is_503_but_healthz_and_metrics_answer(make_gateway):
    with make_gateway(redis_url=f"redis://127.0.0.1:{free_port()}/0") as gateway:
        ready = gateway.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "redis_unavailable"
        assert gateway.get("/healthz").status_code == 200
        assert gateway.get("/metrics").status_code == 200


def test_metrics_count_requests_jobs_and_the_queue(gateway, corpus, redis_db, queue_name):
    before = samples(gateway.get("/metrics").text)
    for prompt in ("one", "two"):
        assert gateway.post("/v1/generations", json={"prompt": prompt, "retrieval": {"enabled": False}}).status_code == 202
    assert gateway.get("/v1/generations/missing").status_code == 404
    response = gateway.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    def delta(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert after[("realrag_queue_depth", ())] == 2.0 == redis_db.llen(queue_name)
    assert delta("realrag_jobs_submitted_total", model="tiny-sd") == 2.0
    assert delta("realrag_http_requests_total", method="POST", route="/v1/generations", status="202") == 2.0
    assert delta("realrag_http_requests_total", method="GET", route="/v1/generations/{job_id}", status="404") == 1.0
    assert delta("realrag_http_request_seconds_count", route="/v1/generations") == 2.0
