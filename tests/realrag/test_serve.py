import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from realrag.stack import free_port
from tests.conftest import TINY_CLIP

pytestmark = pytest.mark.slow  # starts real processes: run with -m slow, skip with -m 'not slow'


def start_serve(tmp_path, port: int, retriever_port: int | None = None, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = {
        **os.environ,
        "REALRAG_DATA_DIR": str(tmp_path),
        "REALRAG_ENCODER_MODEL": TINY_CLIP,
        "REALRAG_GATEWAY_PORT": str(port),
        "REALRAG_RETRIEVER_PORT": str(retriever_port or free_port()),
        "REALRAG_EMBEDDED_REDIS": "always",  # the server-free fallback, on its own port
    }
    proc = subprocess.Popen([sys.executable, "-m", "realrag.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "serve did not come up"
        time.sleep(0.5)


def generate(port: int, body: dict) -> dict:
    job = httpx.post(f"http://127.0.0.1:{port}/v1/generations", json=body, timeout=30).json()
    deadline = time.monotonic() + 180
    while job["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.2)
        job = httpx.get(f"http://127.0.0.1:{port}/v1/generations/{job['id']}", timeout=30).json()
    return job


def test_serve_on_embedded_redis_runs_a_job_and_sigterm_stops_every_child(tmp_path):
    port = free_port()
    proc = start_serve(tmp_path, port)
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["redis"] == "ok" and ready["retriever"]["status"] == "ready"
        job = generate(port, {"prompt": "x", "retrieval": {"enabled": False}})
        assert job["status"] == "succeeded", "a job runs on the embedded Redis"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    time.sleep(1)
    leftovers = [
        pid for pid in os.listdir("/proc") if pid.isdigit() and _env_has(pid, f"REALRAG_DATA_DIR={tmp_path}")
    ]
    assert leftovers == [], "every child process stops with serve"


def _env_has(pid: str, needle: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle.encode() in fh.read()
    except OSError:
        return False


def test_serve_restarts_a_killed_retriever_and_generation_works_again(tmp_path):
    port, retriever_port = free_port(), free_port()
    log = tmp_path / "serve.stderr"
    with open(log, "wb") as stderr:
        proc = start_serve(tmp_path, port, retriever_port, stderr=stderr)
    try:
        first = _child_pids(tmp_path, "retriever_service")
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 180
        while True:  # back: a new retriever process that answers its readiness probe
            pids = _child_pids(tmp_path, "retriever_service")
            if pids and pids != first and _answers(f"http://127.0.0.1:{retriever_port}/readyz"):
                break
            assert proc.poll() is None, f"serve exited with {proc.returncode}: {log.read_text()}"
            assert time.monotonic() < deadline, f"the retriever did not come back: {log.read_text()}"
            time.sleep(0.5)
        job = generate(port, {"prompt": "the Zorblat X1", "retrieval": {"top_k": 1}})  # through the new retriever
        assert job["status"] == "succeeded", job
        assert proc.poll() is None, "serve keeps running"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    said = log.read_text()
    assert "retriever exited (killed by SIGKILL)" in said
    assert str(tmp_path / "logs" / "retriever.log") in said and "retriever restarted" in said
    assert proc.returncode == 0, "a SIGTERM is a clean stop"


def _child_pids(data_dir, module: str) -> list[int]:
    """Processes started for this data dir whose command line runs `module`."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv and _env_has(pid, f"REALRAG_DATA_DIR={data_dir}"):
            pids.append(int(pid))
    return sorted(pids)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
