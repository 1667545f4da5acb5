"""GET /v1/generations/{id}/events over real HTTP: the gateway app served by uvicorn from a thread,
a real Redis, and the writes a worker makes through JobStore (each one published on the job's channel).

The Redis is a redis-server of this module's own (started here, discarded after), not the machine's
shared one: streams here live for seconds, and a test run beside this one that cleans up "every key
created during its test" in the shared database would delete these jobs mid-stream.

No SSE client library is installed, so the client is httpx streaming plus `read_sse` below, a
parser that follows the WHATWG event-stream rules (fields, comments, blank line dispatches).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import redis

from services.jobs import JobStore
from services.schemas import GenerationRequest, Job, JobStatus, Progress
from tests.redis_server import RedisServer

from .helpers import environment, serve_in_thread

# a read that waits longer than this fails the test instead of hanging it
CLIENT_TIMEOUT = httpx.Timeout(10.0)


@dataclass
class Event:
    event: str
    data: str
    id: str | None  # the id field of this event, if it had one
    last_event_id: str | None  # what EventSource reports and sends back as Last-Event-ID

    @property
    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class Comment:
    text: str


@dataclass
class _Buffer:
    event: str = ""
    data: list[str] = field(default_factory=list)
    id: str | None = None


def read_sse(lines: Iterator[str]) -> Iterator[Event | Comment]:
    """Events and comments in arrival order (https://html.spec.whatwg.org/#event-stream-interpretation)."""
    buffer = _Buffer()
    last_id: str | None = None
    for line in lines:
        if not line:
            if buffer.data:
                yield Event(buffer.event or "message", "\n".join(buffer.data), buffer.id, last_id)
            buffer = _Buffer()
            continue
        if line.startswith(":"):
            yield Comment(line[1:].removeprefix(" "))
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            buffer.event = value
        elif name == "data":
            buffer.data.append(value)
        elif name == "id" and "\0" not in value:
            buffer.id = last_id = value


def events_only(items: Iterator[Event | Comment]) -> Iterator[Event]:
    return (item for item in items if isinstance(item, Event))


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), persist=False).start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_client(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def serve_gateway(retriever_url, redis_url, queue_name):
    """serve_gateway(sse_ping_s='0.2', ...) -> the base URL of the real gateway app served by uvicorn."""

    @contextmanager
    def serve(**settings: str) -> Iterator[str]:
        values = {"REALRAG_RETRIEVER_URL": retriever_url, "REALRAG_QUEUE_NAME": queue_name, "REALRAG_REDIS_URL": redis_url}
        values.update({f"REALRAG_{name.upper()}": value for name, value in settings.items()})
        with environment(values):
            from services.gateway.app import app

            with serve_in_thread(app) as url:
                yield url

    return serve


@pytest.fixture
def store(redis_client) -> JobStore:
    """The job store as the worker uses it (the gateway's Redis)."""
    return JobStore(redis_client, ttl_s=600)


def submit(client: httpx.Client, prompt: str) -> str:
    response = client.post("/v1/generations", json={"prompt": prompt, "steps": 3, "retrieval": {"enabled": False}})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def run_to_success(store: JobStore, job_id: str, steps: int = 3) -> None:
    """The writes a worker makes: start, one progress write per step, finish."""
    store.transition(job_id, JobStatus.generating, progress=Progress(step=0, total=steps))
    for step in range(1, steps + 1):
        store.update(job_id, lambda j, step=step: j.model_copy(update={"progress": Progress(step=step, total=steps)}))
    store.transition(job_id, JobStatus.succeeded)


def test_events_have_increasing_ids_and_the_terminal_event_closes_the_stream(serve_gateway, store):
    with serve_gateway() as url, httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        job_id = submit(client, "pushed, not polled")
        with client.stream("GET", f"/v1/generations/{job_id}/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            assert response.headers["x-accel-buffering"] == "no"
            events = events_only(read_sse(response.iter_lines()))
            first = next(events)
            assert first.event == "queued" and first.json["id"] == job_id
            run_to_success(store, store.internal_id("local", job_id))  # published after the stream subscribed: every write arrives
            received = [first, *events]  # ends only when the server closes the stream
    assert [e.event for e in received] == ["queued", "generating", "generating", "generating", "generating", "succeeded"]
    assert [e.json["progress"]["step"] for e in received[1:5]] == [0, 1, 2, 3]
    ids = [int(e.id) for e in received if e.id is not None]
    assert len(ids) == len(received) and ids == sorted(set(ids)), "every event has an id, strictly increasing"
    assert [e.json["version"] for e in received] == ids, "the id is the job's version"


def test_last_event_id_resumes_without_duplicates(serve_gateway, store):
    with serve_gateway() as url, httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        job_id = submit(client, "resume me")
        path = f"/v1/generations/{job_id}/events"
        job_id = store.internal_id("local", job_id)  # the worker's writes name the internal id
        seen = store.transition(job_id, JobStatus.generating, progress=Progress(step=0, total=2)).version

        # the client has the current version: nothing is repeated, the next write is the first event
        with client.stream("GET", path, headers={"Last-Event-ID": str(seen)}) as response:
            assert response.status_code == 200
            events = events_only(read_sse(response.iter_lines()))
            store.update(job_id, lambda j: j.model_copy(update={"progress": Progress(step=1, total=2)}))
            resumed = next(events)
            assert int(resumed.id) == seen + 1 and resumed.json["progress"]["step"] == 1
            store.update(job_id, lambda j: j.model_copy(update={"progress": Progress(step=2, total=2)}))
            final = store.transition(job_id, JobStatus.succeeded)
            rest = list(events)
        assert [int(e.id) for e in rest] == [seen + 2, final.version]
        assert rest[-1].event == "succeeded"

        # a client that missed versions gets the current state once, not the ones in between
        with client.stream("GET", path, headers={"Last-Event-ID": str(seen)}) as response:
            caught_up = list(events_only(read_sse(response.iter_lines())))
        assert [(e.event, int(e.id)) for e in caught_up] == [("succeeded", final.version)]

        # ids it never sent count as none: the current state
        for bogus in ("abc", "-1", "12abc"):
            answer = client.get(path, headers={"Last-Event-ID": bogus})
            received = [e.id for e in events_only(read_sse(iter(answer.text.splitlines())))]
            assert received == [str(final.version)], (bogus, answer.status_code, answer.text)

        # it has seen the end: 204, which tells EventSource to stop reconnecting
        done = client.get(path, headers={"Last-Event-ID": str(final.version)})
        assert done.status_code == 204 and done.content == b""


def test_a_silent_queued_job_gets_keep_alive_comments(serve_gateway):
    with serve_gateway(sse_ping_s="0.2") as url, httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        job_id = submit(client, "waiting in the queue")
        with client.stream("GET", f"/v1/generations/{job_id}/events") as response:
            items = read_sse(response.iter_lines())
            first = next(items)
            assert isinstance(first, Event) and first.event == "queued"
            keep_alive = next(items)  # nothing changes, yet the stream is not silent
    assert isinstance(keep_alive, Comment) and keep_alive.text.startswith("ping")


def test_a_client_that_goes_away_releases_its_subscription(serve_gateway, redis_client):
    with serve_gateway(sse_ping_s="0.2") as url, httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        job_id = submit(client, "nobody is listening")
        channel = JobStore.events_channel(JobStore(redis_client, ttl_s=600).internal_id("local", job_id))
        with client.stream("GET", f"/v1/generations/{job_id}/events") as response:
            events = events_only(read_sse(response.iter_lines()))  # held: dropping it closes the connection
            assert next(events).event == "queued"
            assert redis_client.pubsub_numsub(channel) == [(channel, 1)]
        # the client hung up mid-stream; the gateway notices and unsubscribes (a bounded wait, no timing claim)
        for _ in range(200):
            if redis_client.pubsub_numsub(channel) == [(channel, 0)]:
                break
            time.sleep(0.05)
        assert redis_client.pubsub_numsub(channel) == [(channel, 0)]


def test_unknown_job_is_404_before_any_stream(serve_gateway):
    with serve_gateway() as url, httpx.Client(base_url=url, timeout=CLIENT_TIMEOUT) as client:
        response = client.get("/v1/generations/no-such-job/events")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["error"]["code"] == "job_not_found"


@pytest.fixture
def doomed_redis(tmp_path) -> Iterator[RedisServer]:
    """A redis-server for one test, to be killed mid-stream."""
    server = RedisServer(tmp_path / "redis", persist=False).start()
    yield server
    server.stop()


def test_redis_dropping_mid_stream_sends_an_error_event_and_closes(serve_gateway, doomed_redis):
    url = doomed_redis.url
    store = JobStore(redis.Redis.from_url(url, decode_responses=True), ttl_s=600)
    job = Job(id="drop-me", model="tiny-sd", prompt="p", request=GenerationRequest(prompt="p"), request_hash="h")
    assert store.create(job)
    with serve_gateway(redis_url=url) as base, httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as client:
        with client.stream("GET", f"/v1/generations/{job.id}/events") as response:
            events = events_only(read_sse(response.iter_lines()))
            assert next(events).event == "queued"
            doomed_redis.crash()
            rest = list(events)  # ends: the server closes the stream after the error event
        unreachable = client.get(f"/v1/generations/{job.id}/events")
    assert unreachable.status_code == 503 and unreachable.json()["error"]["code"] == "redis_unavailable"
    assert [e.event for e in rest] == ["error"]
    assert rest[0].id is None and rest[0].last_event_id == "1", "an error is no version: Last-Event-ID stays"
    assert rest[0].json["error"]["code"] == "job_store_unavailable"
