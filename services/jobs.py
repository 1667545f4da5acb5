"""Authoritative job records in Redis (JSON per job, with a TTL), plus cancel flags, delivery
counters, idempotency keys and the per-tenant indexes.

A job has two ids. Its `internal_id` (random) names the record and everything the worker touches
(cancel flag, delivery counter, pub/sub channel, Celery task id, output paths). Its client-facing
`id` is unique only within its tenant: `realrag:jobid:<tenant>:<id>` maps it to the internal id, as
`realrag:idem:<tenant>:<key>` maps an Idempotency-Key. A tenant can only name a job through its own
indexes, so another tenant's job does not exist for it (404), whatever id it tries.

Every write bumps the record's `version` and publishes the new record on the job's channel
(`realrag:job-events:<internal id>`) in the same transaction, so subscribers (the gateway's server-sent
events) are pushed each change in order; deleting a record publishes an empty message.

Jobs in flight are counted per tenant in a set of internal ids: added when the record is created,
removed by the write that makes the job terminal, and pruned of records that expired unfinished
whenever the limit is checked. The Lua scripts read record keys they do not declare (standalone
Redis, as deployed; not Redis Cluster).

Celery only transports work; nothing here reads Celery's result state.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import redis
import redis.asyncio as aioredis

from .schemas import Job, JobStatus

PREFIX = "realrag"
JOB_PREFIX = f"{PREFIX}:job:"

# KEYS: record, id index, active set, idempotency key ('' if none), idempotency key set, queue ('' if unchecked)
# ARGV: record JSON, internal id, ttl, max in flight (0: no limit), max idempotency keys, now, job key prefix,
#       max queue depth
CREATE = """
local ttl = tonumber(ARGV[3])
local now = tonumber(ARGV[6])
if KEYS[4] ~= '' then
  local bound = redis.call('GET', KEYS[4])
  if bound then return {'exists', bound} end
end
local taken = redis.call('GET', KEYS[2])
if taken then return {'exists', taken} end
if KEYS[6] ~= '' then
  local depth = redis.call('LLEN', KEYS[6])
  if depth >= tonumber(ARGV[8]) then return {'queue_full', tostring(depth)} end
end
local max_jobs = tonumber(ARGV[4])
if max_jobs > 0 then
  local count = 0
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[3])) do
    if redis.call('EXISTS', ARGV[7] .. id) == 1 then count = count + 1 else redis.call('SREM', KEYS[3], id) end
  end
  if count >= max_jobs then return {'too_many_jobs', ''} end
end
if KEYS[4] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  if redis.call('ZCARD', KEYS[5]) >= tonumber(ARGV[5]) then
    return {'too_many_keys', redis.call('ZRANGE', KEYS[5], 0, 0, 'WITHSCORES')[2]}
  end
  redis.call('SET', KEYS[4], ARGV[2], 'EX', ttl)
  redis.call('ZADD', KEYS[5], now + ttl, KEYS[4])
  redis.call('EXPIRE', KEYS[5], ttl)
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
redis.call('SADD', KEYS[3], ARGV[2])
redis.call('EXPIRE', KEYS[3], ttl)
return {'created', ARGV[2]}
"""

# KEYS: an index key (client id or idempotency key); ARGV: job key prefix -> false | {internal id, record or ''}
LOOKUP = """
local id = redis.call('GET', KEYS[1])
if not id then return false end
return {id, redis.call('GET', ARGV[1] .. id) or ''}
"""

# KEYS: record, cancel flag, delivery counter, active set, id index, idempotency key ('' if none), idempotency key set
# ARGV: internal id, events channel. Index keys are released only while they still name this job.
DELETE = """
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('SREM', KEYS[4], ARGV[1])
redis.call('PUBLISH', ARGV[2], '')
if redis.call('GET', KEYS[5]) == ARGV[1] then redis.call('DEL', KEYS[5]) end
if KEYS[6] ~= '' and redis.call('GET', KEYS[6]) == ARGV[1] then
  redis.call('DEL', KEYS[6])
  redis.call('ZREM', KEYS[7], KEYS[6])
end
return 1
"""


class JobNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Created:
    """What `JobStore.create` did: created the job, found the one an id/key is bound to (`exists`,
    `internal_id` = that job's), refused a tenant limit (`retry_after_s`: when to try again), or found
    the queue full (`queue_depth`: the jobs waiting)."""

    outcome: Literal["created", "exists", "too_many_jobs", "too_many_keys", "queue_full"]
    internal_id: str = ""
    retry_after_s: int = 0
    queue_depth: int = 0

    def __bool__(self) -> bool:
        return self.outcome == "created"


class JobKeys:
    """The key layout and the script calls' arguments and answers, shared by `JobStore` (the worker's,
    synchronous) and `AsyncJobStore` (the gateway's): only the I/O differs between the two."""

    ttl_s: int

    # --- keys (job keys take the internal id) -----------------------------------------------
    @staticmethod
    def job_key(internal_id: str) -> str:
        return f"{JOB_PREFIX}{internal_id}"

    @staticmethod
    def cancel_key(internal_id: str) -> str:
        return f"{PREFIX}:cancel:{internal_id}"

    @staticmethod
    def deliveries_key(internal_id: str) -> str:
        return f"{PREFIX}:deliveries:{internal_id}"

    @staticmethod
    def events_channel(internal_id: str) -> str:
        """Pub/sub channel carrying the job's record (JSON) after each write; '' once it is deleted."""
        return f"{PREFIX}:job-events:{internal_id}"

    # tenant names have no ':' (TenantConfig), so '<tenant>:<anything>' cannot collide across tenants
    @staticmethod
    def job_id_key(tenant: str, job_id: str) -> str:
        return f"{PREFIX}:jobid:{tenant}:{job_id}"

    @staticmethod
    def idempotency_key(tenant: str, key: str) -> str:
        return f"{PREFIX}:idem:{tenant}:{key}"

    @staticmethod
    def idempotency_keys_key(tenant: str) -> str:
        """Sorted set of the tenant's idempotency keys, scored by expiry (bounds their number)."""
        return f"{PREFIX}:idem-keys:{tenant}"

    @staticmethod
    def active_key(tenant: str) -> str:
        """Set of the internal ids of the tenant's jobs in flight."""
        return f"{PREFIX}:active:{tenant}"

    # --- script arguments and answers ---------------------------------------------------------
    def _create_call(
        self, job: Job, idempotency_key: str | None, max_in_flight: int, max_idempotency_keys: int, queue: str, max_queue_depth: int
    ) -> tuple[list[str], list[str | int | float]]:
        keys = [
            self.job_key(job.internal_id),
            self.job_id_key(job.tenant, job.id),
            self.active_key(job.tenant),
            self.idempotency_key(job.tenant, idempotency_key) if idempotency_key else "",
            self.idempotency_keys_key(job.tenant),
            queue,
        ]
        args: list[str | int | float] = [
            job.model_dump_json(), job.internal_id, self.ttl_s, max_in_flight, max_idempotency_keys, time.time(), JOB_PREFIX,
            max_queue_depth,
        ]
        return keys, args

    @staticmethod
    def _created(answer: list, now: float) -> Created:
        outcome, value = answer
        if outcome == "too_many_keys":
            return Created("too_many_keys", retry_after_s=max(1, math.ceil(float(value) - now)))
        if outcome == "too_many_jobs":
            return Created("too_many_jobs")
        if outcome == "queue_full":
            return Created("queue_full", queue_depth=int(value))
        return Created(outcome, str(value))

    def _delete_call(self, job: Job, idempotency_key: str | None) -> tuple[list[str], list[str]]:
        internal_id = job.internal_id
        keys = [
            self.job_key(internal_id),
            self.cancel_key(internal_id),
            self.deliveries_key(internal_id),
            self.active_key(job.tenant),
            self.job_id_key(job.tenant, job.id),
            self.idempotency_key(job.tenant, idempotency_key) if idempotency_key else "",
            self.idempotency_keys_key(job.tenant),
        ]
        return keys, [internal_id, self.events_channel(internal_id)]

    @staticmethod
    def _bound(found: list | None) -> tuple[str, Job | None] | None:
        if not found:
            return None
        internal_id, raw = found
        return str(internal_id), Job.model_validate_json(raw) if raw else None

    @staticmethod
    def _owned(found: tuple[str, Job | None] | None, tenant: str) -> Job | None:
        job = found[1] if found else None
        return job if job is not None and job.tenant == tenant else None


class JobStore(JobKeys):
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._create = client.register_script(CREATE)
        self._lookup = client.register_script(LOOKUP)
        self._delete = client.register_script(DELETE)

    @classmethod
    def from_url(cls, url: str, ttl_s: int, **kwargs) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, **kwargs), ttl_s)

    # --- records -------------------------------------------------------------------------
    def create(
        self,
        job: Job,
        idempotency_key: str | None = None,
        max_in_flight: int = 0,
        max_idempotency_keys: int = 0,
        queue: str = "",
        max_queue_depth: int = 0,
    ) -> Created:
        """Store a new job and bind its client id (and `idempotency_key`) in one atomic step, unless
        one of them is bound already (`exists`), `queue` (if named) holds `max_queue_depth` messages,
        or the tenant is at a limit (0: no in-flight limit)."""
        keys, args = self._create_call(job, idempotency_key, max_in_flight, max_idempotency_keys, queue, max_queue_depth)
        return self._created(self._create(keys, args), float(args[5]))

    def get(self, internal_id: str) -> Job | None:
        raw = self.redis.get(self.job_key(internal_id))
        return Job.model_validate_json(raw) if raw else None

    def find(self, tenant: str, job_id: str) -> Job | None:
        """The tenant's job with client-facing id `job_id` (one round trip); None for any other tenant's."""
        return self._owned(self._bound(self._lookup([self.job_id_key(tenant, job_id)], [JOB_PREFIX])), tenant)

    def find_by_idempotency_key(self, tenant: str, key: str) -> tuple[str, Job | None] | None:
        """(internal id, its record or None if it is gone) of the job `key` is bound to, if any."""
        return self._bound(self._lookup([self.idempotency_key(tenant, key)], [JOB_PREFIX]))

    def internal_id(self, tenant: str, job_id: str) -> str | None:
        bound = self.redis.get(self.job_id_key(tenant, job_id))
        return str(bound) if bound else None

    def owner_of_output(self, internal_id: str) -> str | None:
        """The tenant owning the job whose outputs live under `outputs/<internal_id>/` (None: no such
        job, or its record expired). For the artefact route: serve outputs only to their owner."""
        raw = self.redis.get(self.job_key(internal_id))
        if not raw:
            return None
        tenant = json.loads(raw).get("tenant", "local")
        return str(tenant)

    def in_flight(self, tenant: str) -> set[str]:
        return {str(member) for member in self.redis.smembers(self.active_key(tenant))}

    def update(self, internal_id: str, change: Callable[[Job], Job | None]) -> Job:
        """Apply `change` atomically (optimistic WATCH/MULTI); `change` returns None to skip.

        A write bumps `version` and publishes the new record on `events_channel` in the same MULTI;
        the write that makes the job terminal also takes it out of its tenant's jobs in flight."""
        key = self.job_key(internal_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(internal_id)
                    job = Job.model_validate_json(raw)
                    version = job.version
                    changed = change(job)
                    if changed is None:
                        pipe.unwatch()
                        return job
                    changed.updated_at = time.time()
                    changed.version = version + 1
                    record = changed.model_dump_json()
                    pipe.multi()
                    pipe.set(key, record, keepttl=True)
                    if changed.status.terminal:
                        pipe.srem(self.active_key(job.tenant), internal_id)
                    pipe.publish(self.events_channel(internal_id), record)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def transition(self, internal_id: str, status: JobStatus, **fields) -> Job:
        """Move a job to `status` unless it already reached a terminal state."""

        def change(job: Job) -> Job | None:
            if job.status.terminal:
                return None
            update = job.model_copy(update={"status": status, **fields})
            if status.terminal and update.finished_at is None:
                update.finished_at = time.time()
            return update

        return self.update(internal_id, change)

    def delete(self, job: Job, idempotency_key: str | None = None) -> None:
        """Remove the job and every key naming it (a job that could not be enqueued), in one step."""
        self._delete(*self._delete_call(job, idempotency_key))

    # --- cancel, deliveries ----------------------------------------------------------------
    def request_cancel(self, internal_id: str) -> None:
        self.redis.set(self.cancel_key(internal_id), "1", ex=self.ttl_s)

    def cancel_requested(self, internal_id: str) -> bool:
        return bool(self.redis.exists(self.cancel_key(internal_id)))

    def count_delivery(self, internal_id: str) -> int:
        key = self.deliveries_key(internal_id)
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self.ttl_s)
            count, _ = pipe.execute()
        return int(count)

    def ping(self) -> bool:
        return bool(self.redis.ping())


class AsyncJobStore(JobKeys):
    """The gateway's side of `JobStore` on redis.asyncio: the same scripts and keys, one round trip each."""

    def __init__(self, client: aioredis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s
        self._create = client.register_script(CREATE)
        self._lookup = client.register_script(LOOKUP)
        self._delete = client.register_script(DELETE)

    @classmethod
    def from_url(cls, url: str, ttl_s: int, **kwargs) -> AsyncJobStore:
        return cls(aioredis.Redis.from_url(url, decode_responses=True, **kwargs), ttl_s)

    async def create(
        self,
        job: Job,
        idempotency_key: str | None = None,
        max_in_flight: int = 0,
        max_idempotency_keys: int = 0,
        queue: str = "",
        max_queue_depth: int = 0,
    ) -> Created:
        """`JobStore.create`."""
        keys, args = self._create_call(job, idempotency_key, max_in_flight, max_idempotency_keys, queue, max_queue_depth)
        return self._created(await self._create(keys, args), float(args[5]))

    async def get(self, internal_id: str) -> Job | None:
        raw = await self.redis.get(self.job_key(internal_id))
        return Job.model_validate_json(raw) if raw else None

    async def find(self, tenant: str, job_id: str) -> Job | None:
        """`JobStore.find`."""
        return self._owned(self._bound(await self._lookup([self.job_id_key(tenant, job_id)], [JOB_PREFIX])), tenant)

    async def find_by_idempotency_key(self, tenant: str, key: str) -> tuple[str, Job | None] | None:
        """`JobStore.find_by_idempotency_key`."""
        return self._bound(await self._lookup([self.idempotency_key(tenant, key)], [JOB_PREFIX]))

    async def delete(self, job: Job, idempotency_key: str | None = None) -> None:
        """`JobStore.delete`."""
        await self._delete(*self._delete_call(job, idempotency_key))

    async def aclose(self) -> None:
        await self.redis.aclose()
