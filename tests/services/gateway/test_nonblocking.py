"""No blocking call inside `async def`: while an upload waits on the retriever, and while an event
stream is open, the gateway's event loop still answers /healthz.

The gateway runs under uvicorn (real HTTP); between it and the real retriever sits a TCP gate that
holds the retriever connection until the test opens it. The test asserts the order of events, not
durations: /healthz answers while the upload is provably still in flight (the gate is closed, so the
upload cannot have finished). A handler that blocked the event loop would make /healthz wait for the
gate, which only opens after /healthz has answered: the request times out and the test fails.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from .helpers import environment, serve_in_thread, solid_png

GUARD_S = 30  # only against a hang; nothing here measures time


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Gate:
    """A TCP forwarder that holds every connection until `release` is set."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="gate", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        self.arrived.set()
        self.release.wait()
        upstream = socket.create_connection(self.upstream)
        self.sockets.append(upstream)
        threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
        _pipe(upstream, client)

    def close(self) -> None:
        self.release.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@contextmanager
def gateway_behind_a_gate(retriever_url: str, queue_name: str) -> Iterator[tuple[str, Gate]]:
    gate = Gate(retriever_url)
    try:
        # the retriever timeout outlasts the guard: a held upload ends only when the gate opens
        settings = {"REALRAG_RETRIEVER_URL": gate.url, "REALRAG_QUEUE_NAME": queue_name, "REALRAG_RETRIEVER_TIMEOUT_S": str(4 * GUARD_S)}
        with environment(settings):
            from services.gateway.app import app

            with serve_in_thread(app) as url:
                yield url, gate
    finally:
        gate.close()


def first_event(stream: httpx.Response) -> str:
    for line in stream.iter_lines():
        if line.startswith("event:"):
            return line.removeprefix("event:").strip()
    raise AssertionError("the stream ended without an event")


def test_healthz_answers_while_an_upload_and_an_event_stream_are_in_flight(base_env, retriever_url, redis_db, queue_name):
    with gateway_behind_a_gate(retriever_url, queue_name) as (url, gate), httpx.Client(base_url=url, timeout=GUARD_S) as client:
        # a queued job (no worker runs here) keeps its event stream open
        job = client.post("/v1/generations", json={"prompt": "wait", "retrieval": {"enabled": False}})
        assert job.status_code == 202, job.text
        with client.stream("GET", f"/v1/generations/{job.json()['id']}/events") as stream, ThreadPoolExecutor(1) as pool:
            assert stream.status_code == 200 and first_event(stream) == "queued"
            upload = pool.submit(
                httpx.post,
                f"{url}/v1/corpus/images",
                files={"file": ("a.png", solid_png((2, 7, 1)), "image/png")},
                data={"object_id": "in-flight"},
                timeout=GUARD_S,
            )
            assert gate.arrived.wait(GUARD_S), "the upload's handler is calling the retriever"

            health = httpx.get(f"{url}/healthz", timeout=GUARD_S)

            assert health.status_code == 200 and health.json() == {"status": "ok"}
            assert not upload.done(), "/healthz answered while the upload was still waiting on the retriever"
            gate.release.set()
            created = upload.result(timeout=GUARD_S)
        assert created.status_code == 201, created.text
        assert client.delete(f"/v1/corpus/images/{created.json()['id']}").status_code == 204
