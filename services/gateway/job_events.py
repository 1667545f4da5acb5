"""Server-sent events for one job, pushed through Redis pub/sub (JobStore publishes every write).

Each event is the whole public job view, named after the job's status, with the job's `version` as
its `id:`. Versions live in the job record, so ids survive gateway restarts and a reconnecting
client's `Last-Event-ID` says exactly what it has: it gets the current state if that is newer and
nothing it already has. Events are snapshots, so versions a client missed are collapsed into the
current one, never replayed one by one.

The stream subscribes (and waits for Redis to confirm) before it reads the record, so no write falls
between the two; after that it only waits for messages. When the channel stays quiet for `sse_ping_s` it reads the record once
more: that notices a record that expired, and a Redis that no longer answers even where the
connection did not break. Any Redis failure ends the stream with an `error` event.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sse_starlette import ServerSentEvent

from services.errors import error_body
from services.jobs import JobStore
from services.schemas import Job
from services.settings import Settings

from .views import job_view

log = logging.getLogger(__name__)

EVENT_ID = re.compile(r"[0-9]{1,18}")
REDIS_TIMEOUT_S = 5.0


def seen_version(last_event_id: str | None) -> int:
    """The version a reconnecting client already has (0: none). Ids we never sent count as none."""
    if last_event_id and EVENT_ID.fullmatch(last_event_id.strip()):
        return int(last_event_id.strip())
    return 0


def _data(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


class JobEvents:
    """One client's subscription to one job: `open()` before the response starts (so an unknown job
    is a plain 404), then `stream()`; `close()` always, also when the stream never started."""

    def __init__(self, settings: Settings, tenant: str, job_id: str, base_url: str = "") -> None:
        self.settings = settings
        self.base_url = base_url  # views carry absolute image URLs, as GET /v1/generations/{id} does
        self.tenant = tenant
        self.job_id = job_id  # the client-facing id; the channel and the record use the internal one
        self.internal_id = ""
        # Its own connections (a subscribed one cannot GET), no retries: a failure ends the stream
        # and the client resumes with Last-Event-ID, rather than a silent reconnect losing messages.
        self.redis = aioredis.Redis.from_url(
            settings.redis_url,
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=REDIS_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self.pubsub = self.redis.pubsub()
        self.closed = False

    async def open(self) -> Job | None:
        """Subscribe, then read the record: None if the tenant has no such job."""
        internal_id = await self.redis.get(JobStore.job_id_key(self.tenant, self.job_id))
        if not internal_id:
            return None
        self.internal_id = str(internal_id)
        await self.pubsub.subscribe(JobStore.events_channel(self.internal_id))
        # The GET goes over another connection: wait for Redis to confirm the subscription, so that
        # every write after the record we read is delivered to us.
        confirmed = await self.pubsub.get_message(timeout=REDIS_TIMEOUT_S)
        if confirmed is None or confirmed["type"] != "subscribe":
            raise RedisTimeoutError("Redis did not confirm the subscription")
        return await self._read()

    async def close(self) -> None:
        """Idempotent; shielded, since it also runs in a stream that is being cancelled."""
        if self.closed:
            return
        self.closed = True
        with anyio.move_on_after(5, shield=True):
            try:
                await self.pubsub.aclose()
                await self.redis.aclose()
            except (RedisError, OSError):  # closing a connection to a Redis that is gone
                log.debug("closing the event subscription of %s failed", self.job_id, exc_info=True)

    async def _read(self) -> Job | None:
        raw = await self.redis.get(JobStore.job_key(self.internal_id))
        job = Job.model_validate_json(raw) if raw else None
        return job if job is not None and job.tenant == self.tenant else None

    async def _next(self) -> Job | None:
        """The record after the next write (or after a quiet `sse_ping_s`); None once it is gone."""
        message = await self.pubsub.get_message(timeout=self.settings.sse_ping_s)
        if message is None or message["type"] != "message":
            return await self._read()
        return Job.model_validate_json(message["data"]) if message["data"] else None

    def _event(self, job: Job) -> ServerSentEvent:
        return ServerSentEvent(_data(job_view(job, self.settings, self.base_url)), event=job.status.value, id=str(job.version))

    async def stream(self, job: Job, seen: int) -> AsyncIterator[ServerSentEvent]:
        """Every version newer than `seen`, starting with `job`; ends after the terminal one."""
        try:
            current: Job | None = job
            while current is not None:
                if current.version > seen:
                    seen = current.version
                    yield self._event(current)
                if current.status.terminal:
                    return
                try:
                    current = await self._next()
                except (RedisError, OSError) as exc:
                    log.warning("job store unreachable while streaming events of %s: %s", self.job_id, exc)
                    body = error_body("job_store_unavailable", "the job store (Redis) is unreachable; reconnect to resume")
                    yield ServerSentEvent(_data(body), event="error")
                    return
            yield ServerSentEvent(_data(error_body("job_not_found", f"job {self.job_id} no longer exists")), event="error")
        finally:
            await self.close()
