"""The playground in a real browser (Debian's headless `chromium`) against the gateway under uvicorn:
a corpus label carrying HTML is shown as text and runs nothing, the page carries a strict CSP, a
`run=1` link only fills the form, and production serves no playground unless asked to."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from services.tenants import hash_key

from .helpers import environment, queued_messages, serve_in_thread, solid_png

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

# what a hostile corpus contributor would upload as a label: each variant would change the page if parsed as HTML
HOSTILE_LABEL = '<img src=x onerror="document.body.dataset.pwned=1"><script>document.body.dataset.pwned=2</script><b>bold</b>'


def chromium(url: str, *args: str) -> str:
    """Load `url` in headless chromium, let its script run (virtual time), return what it printed."""
    assert CHROMIUM is not None
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
               "--virtual-time-budget=4000", "--window-size=1000,1000", *args, url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": "/tmp"})
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@contextmanager
def served_gateway(retriever_url: str, queue_name: str, **settings: str) -> Iterator[str]:
    values = {"REALRAG_RETRIEVER_URL": retriever_url, "REALRAG_QUEUE_NAME": queue_name}
    values.update({f"REALRAG_{name.upper()}": value for name, value in settings.items()})
    with environment(values):
        from services.gateway.app import app

        with serve_in_thread(app) as url:
            yield url


@pytest.fixture
def hostile_job(retriever_url, corpus, redis_db, queue_name) -> Iterator[tuple[str, str]]:
    """(gateway URL, id of a queued job whose one reference has HOSTILE_LABEL as its label)."""
    with served_gateway(retriever_url, queue_name) as url, httpx.Client(base_url=url, timeout=60) as client:
        upload = client.post("/v1/corpus/images", files={"file": ("x.png", solid_png((9, 99, 199)), "image/png")},
                             data={"object_id": "hostile-label", "label": HOSTILE_LABEL, "caption": HOSTILE_LABEL})
        assert upload.status_code == 201, upload.text
        try:
            job = client.post("/v1/generations", json={
                "prompt": "a photo of <i>it</i>", "retrieval": {"top_k": 1, "filter": {"object_id": "hostile-label"}}})
            assert job.status_code == 202, job.text
            assert job.json()["references"][0]["label"] == HOSTILE_LABEL
            yield url, job.json()["id"]
        finally:
            client.delete(f"/v1/corpus/images/{upload.json()['id']}")


@needs_chromium
def test_a_hostile_label_is_rendered_as_text_and_runs_nothing(hostile_job, tmp_path):
    url, job_id = hostile_job
    dom = chromium(f"{url}/playground?job={job_id}", "--dump-dom")
    # the script ran (it rendered the job) ...
    assert f"Job {job_id}: queued" in dom
    # ... and the label is text inside the caption, escaped by the serializer, not elements
    assert "&lt;img src=x onerror=\"document.body.dataset.pwned=1\"&gt;&lt;script&gt;" in dom
    assert "data-pwned" not in dom
    assert "<b>bold</b>" not in dom and '<img src="x"' not in dom

    screenshot = tmp_path / "playground.png"
    chromium(f"{url}/playground?job={job_id}", f"--screenshot={screenshot}")
    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get("REALRAG_TEST_SCREENSHOT")  # a path to keep the screenshot for a human to look at
    if keep:
        Path(keep).write_bytes(screenshot.read_bytes())


@needs_chromium
def test_a_run_link_fills_the_form_but_submits_nothing(retriever_url, corpus, redis_db, queue_name):
    with served_gateway(retriever_url, queue_name) as url:
        dom = chromium(f"{url}/playground?prompt=a+red+car&seed=5&run=1", "--dump-dom")
    assert "press Generate to run it" in dom
    assert queued_messages(redis_db, queue_name) == [], "the link alone queued a job"


def test_the_page_and_its_files_carry_a_strict_csp(make_gateway):
    with make_gateway() as client:
        page = client.get("/playground")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = {part.split()[0]: part.split()[1:] for part in page.headers["content-security-policy"].split("; ")}
        assert csp["default-src"] == ["'none'"]
        assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
        assert csp["connect-src"] == ["'self'"] and csp["frame-ancestors"] == ["'none'"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in page.text and "style=" not in page.text, "no inline script or style for the CSP to allow"
        assert 'src="/playground.js"' in page.text
        script = client.get("/playground.js")
        assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
        assert "innerHTML" not in script.text and "insertAdjacentHTML" not in script.text and "requestSubmit" not in script.text
        assert client.get("/playground.css").headers["content-type"].startswith("text/css")
        assert "/playground" not in json.dumps(client.get("/openapi.json").json()["paths"])


def test_production_serves_no_playground_unless_enabled(make_gateway):
    production = {"environment": "production", "tenants": json.dumps([{"name": "ops", "key_sha256": hash_key("k"), "role": "admin"}]),
                  "url_signing_key": "s" * 32, "metrics_token": "m" * 32}
    with make_gateway(**production) as client:
        for path in ("/playground", "/playground.js", "/playground.css"):
            response = client.get(path)
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    with make_gateway(**production, playground_enabled="true") as client:
        assert client.get("/playground").status_code == 200
    with make_gateway(playground_enabled="false") as client:
        assert client.get("/playground").status_code == 404
