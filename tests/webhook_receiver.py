"""A real webhook receiver for tests: an HTTP server on loopback, in a thread, that records every POST
(headers, body) and answers with scripted statuses, or holds the request open until released."""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    def verified(self, secret: str) -> dict:
        """The payload, verified the way a receiver does it (raises WebhookVerificationError)."""
        return Webhook(secret).verify(self.body, self.headers)


class WebhookReceiver:
    """`statuses`: the answer to the 1st, 2nd, ... POST (the last one repeats). `hold`: every POST
    waits until `release()` before answering (a hung receiver); `waiting` counts the POSTs held right
    now whose sender is still connected (a sender that timed out and hung up is no longer counted)."""

    def __init__(self, statuses: tuple[int, ...] = (204,), hold: bool = False) -> None:
        self.received: list[Delivery] = []
        self.waiting = 0
        self._statuses = statuses
        self._released = threading.Event()
        if not hold:
            self._released.set()
        self._lock = threading.Lock()
        receiver = self

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    receiver.received.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
                    status = receiver._statuses[min(len(receiver.received), len(receiver._statuses)) - 1]
                    receiver.waiting += 1
                try:
                    while not receiver._released.wait(0.05):
                        if self._client_left():
                            return  # the sender gave up (its timeout): nobody to answer
                finally:
                    with receiver._lock:
                        receiver.waiting -= 1
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def _client_left(self) -> bool:
                readable, _, _ = select.select([self.connection], [], [], 0)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook?token=t"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook-receiver")
        self._thread.start()

    def release(self) -> None:
        self._released.set()

    def wait(self, count: int = 1, timeout: float = 60.0) -> list[Delivery]:
        """The first `count` deliveries, waiting for them (AssertionError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} webhook deliveries after {timeout:.0f}s, expected {count}")
            time.sleep(0.05)
        return self.received[:count]

    def wait_held(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.waiting == 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"no delivery held open after {timeout:.0f}s")
            time.sleep(0.05)

    def __enter__(self) -> WebhookReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused: a dead receiver)."""
    from realrag.stack import free_port

    return f"http://127.0.0.1:{free_port()}/hook"
