"""Dockerfiles, .dockerignore and the install pins the images share with the tests (no Docker)."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading

import pytest

from deploy import validate as v

DOCKER = v.DEPLOY / "docker"
TEXTS = {role: path.read_text() for role, path in v.DOCKERFILES.items()}
DOCKERIGNORE = (v.REPO / ".dockerignore").read_text()


@pytest.mark.parametrize("role", sorted(TEXTS))
def test_dockerfile_keeps_our_invariants(role):
    assert v.check_dockerfile(TEXTS[role], role) == []


def test_dockerignore_sends_what_the_images_copy_and_nothing_secret():
    assert v.check_dockerignore(TEXTS, DOCKERIGNORE) == []


def test_images_install_the_tests_pins():
    """Same pyproject, same constraints.txt as `make install`: the image runs what the tests ran."""
    constraints = v.REPO / "constraints.txt"
    makefile = v.REPO / "Makefile"
    if not constraints.exists():
        pytest.skip("constraints.txt not generated yet")
    assert v.check_constraints(constraints.read_text(), makefile.read_text() if makefile.exists() else None) == []


def test_requirements_helper_prints_the_pyproject_pins(tmp_path):
    run = [sys.executable, str(DOCKER / "requirements_from_pyproject.py"), str(v.REPO / "pyproject.toml")]
    core = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    ml = subprocess.run([*run, "ml"], capture_output=True, text=True, check=True).stdout.split()
    project = v.pyproject()["project"]
    assert core == project["dependencies"]
    assert ml == project["dependencies"] + project["optional-dependencies"]["ml"]
    assert not [r for r in core if r.startswith(("torch", "diffusers", "open-clip"))], "the gateway image must stay torch-free"
    bad = subprocess.run([*run, "no-such-extra"], capture_output=True, text=True)
    assert bad.returncode != 0 and "unknown extra" in bad.stderr


@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (stdlib name)
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_probe_follows_the_service_port_and_status(http_server):
    probe = [sys.executable, str(DOCKER / "http_probe.py"), "--port-env", "REALRAG_TEST_PORT", "--default-port", "1"]
    env = {"REALRAG_TEST_PORT": str(http_server), "PATH": "/usr/bin:/bin"}
    assert subprocess.run([*probe, "/healthz"], env=env, capture_output=True).returncode == 0
    assert subprocess.run([*probe, "/readyz"], env=env, capture_output=True).returncode == 1
    closed = subprocess.run([*probe, "--timeout", "1", "/healthz"], env={"PATH": "/usr/bin:/bin"}, capture_output=True)
    assert closed.returncode == 1  # default port 1: nothing listens


# ---- planted mistakes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "old", "new", "expected"),
    [
        pytest.param("gateway", "USER 10001:10001", "USER root", "numeric non-root USER", id="root-user"),
        pytest.param("ml", "USER 10001:10001", "", "numeric non-root USER", id="no-user"),
        pytest.param("gateway", "ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:3.11-slim",
                     "full x.y.z version", id="floating-base"),
        pytest.param("ml", "ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm", "ARG PYTHON_IMAGE=python:latest",
                     "not pinned", id="latest-base"),
        pytest.param("ml", "HEALTHCHECK --interval=30s --timeout=10s", "HEALTHCHECK NONE\n#", "ml:worker: no HEALTHCHECK",
                     id="worker-without-healthcheck"),
        pytest.param("gateway", "pip install -c constraints.txt . ", "pip install . ", "does not use -c constraints.txt",
                     id="unconstrained-install"),
        pytest.param("gateway", "requirements_from_pyproject.py pyproject.toml >", "requirements_from_pyproject.py pyproject.toml ml >",
                     "must stay torch-free", id="torch-in-gateway"),
        pytest.param("ml", 'VOLUME ["/models"]\n# Start', "# Start", "ml:retriever: no model-cache VOLUME", id="no-model-volume"),
        pytest.param("ml", "FROM ml-runtime AS worker", "FROM ml-runtime AS generator", "no build target 'worker'", id="renamed-target"),
    ],
)
def test_planted_dockerfile_mistake_is_caught(role, old, new, expected):
    assert old in TEXTS[role], f"the planted edit no longer applies: {old!r}"
    problems = v.check_dockerfile(TEXTS[role].replace(old, new, 1), role)
    assert any(expected in p for p in problems), problems


def test_planted_dockerignore_mistakes_are_caught():
    problems = v.check_dockerignore(TEXTS, DOCKERIGNORE.replace("!generator_service/\n", ""))
    assert any("excludes generator_service," in p for p in problems), problems
    problems = v.check_dockerignore(TEXTS, "**/__pycache__\n")  # no allow-list at all
    assert any("lets .env into the build context" in p for p in problems), problems


def test_planted_missing_copy_source_is_caught():
    text = TEXTS["gateway"].replace("COPY services ./services", "COPY service ./services")
    problems = v.check_dockerignore({"gateway": text}, DOCKERIGNORE)
    assert any("copies service, which does not exist" in p for p in problems), problems


def test_planted_constraint_drift_is_caught():
    torch = v.pinned_version(v.pyproject()["project"]["optional-dependencies"]["ml"], "torch")
    drifted = f"torch=={torch}.post9\n"
    assert any("constraints.txt pins torch" in p for p in v.check_constraints(drifted, None))
    assert any("does not pin fastapi" in p for p in v.check_constraints(drifted, None))
    assert any("Makefile does not install with -c constraints.txt" in p
               for p in v.check_constraints(drifted, "install:\n\tpip install -e .[dev]\n"))
