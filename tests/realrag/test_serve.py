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


def test_serve_on_embedded_redis_runs_a_job_and_sigterm_stops_every_child(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "REALRAG_DATA_DIR": str(tmp_path),
        "REALRAG_ENCODER_MODEL": TINY_CLIP,
        "REALRAG_GATEWAY_PORT": str(port),
        "REALRAG_RETRIEVER_PORT": str(free_port()),
        "REALRAG_EMBEDDED_REDIS": "always",  # the server-free fallback, on its own port
    }
    proc = subprocess.Popen([sys.executable, "-m", "realrag.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "serve did not come up"
            time.sleep(0.5)
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        assert ready["redis"] == "ok" and ready["retriever"]["status"] == "ready"
        job = httpx.post(f"http://127.0.0.1:{port}/v1/generations", json={"prompt": "x", "retrieval": {"enabled": False}}).json()
        while job["status"] not in ("succeeded", "failed"):
            time.sleep(0.2)
            job = httpx.get(f"http://127.0.0.1:{port}/v1/generations/{job['id']}").json()
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
