"""The notifier as deployed: `python -m services.notifier`, a real Celery worker process consuming the
webhooks queue on a Redis database of its own, delivering to real HTTP receivers on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from services.settings import Settings
from tests.conftest import TEST_REDIS, TEST_WEBHOOK_SECRET

REDIS_URL = f"redis://{TEST_REDIS}/10"  # a database of its own; flushed before and after each notifier


class Notifier:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        with pytest.MonkeyPatch.context() as patch:  # the settings the notifier process reads
            for name, value in env.items():
                patch.setenv(name, value)
            self.settings = Settings()
        self.log = open(log_path, "ab")
        self.process_env = {**os.environ, **env}
        self.process = subprocess.Popen([sys.executable, "-m", "services.notifier", "--concurrency", "2"],
                                        env=self.process_env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 60.0) -> re.Match:
        """The first log line matching `pattern` (AssertionError with the log after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.log_text())
            if found:
                return found
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no log line matching {pattern!r}; the notifier's log:\n{self.log_text()[-4000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture
def start_notifier(tmp_path) -> Iterator[Callable]:
    """start_notifier(webhook_allow_private="true", ...) -> a context manager running the notifier with
    these REALRAG_* settings (short retry delays by default), its log under tmp_path."""

    @contextmanager
    def start(**settings: str) -> Iterator[Notifier]:
        env = {
            "REALRAG_ENV_FILE": "",
            "REALRAG_REDIS_URL": REDIS_URL,
            "REALRAG_WEBHOOK_QUEUE": f"realrag.test.webhooks.{uuid.uuid4().hex[:8]}",
            "REALRAG_WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
            "REALRAG_WEBHOOK_ALLOW_PRIVATE": "true",
            "REALRAG_WEBHOOK_TIMEOUT_S": "2",
            "REALRAG_WEBHOOK_RETRY_DELAYS_S": "[1, 1]",
        }
        env.update({f"REALRAG_{name.upper()}": value for name, value in settings.items()})
        client = redis.Redis.from_url(REDIS_URL)
        client.flushdb()
        notifier = Notifier(env, tmp_path / f"notifier-{uuid.uuid4().hex[:6]}.log")
        try:
            yield notifier
        finally:
            notifier.stop()
            client.flushdb()
            client.close()

    return start
