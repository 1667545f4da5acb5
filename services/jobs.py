"""Authoritative job records in Redis (JSON per job, with a TTL), plus cancel flags, delivery
counters and idempotency keys.

Every write bumps the record's `version` and publishes the new record on the job's channel
(`realrag:job-events:<id>`) in the same transaction, so subscribers (the gateway's server-sent
events) are pushed each change in order; deleting a record publishes an empty message.

Celery only transports work; nothing here reads Celery's result state.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from .schemas import Job, JobStatus

PREFIX = "realrag"


class JobNotFound(LookupError):
    pass


class JobStore:
    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self.redis = client
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, ttl_s: int, **kwargs) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True, **kwargs), ttl_s)

    # --- keys ----------------------------------------------------------------------------
    @staticmethod
    def job_key(job_id: str) -> str:
        return f"{PREFIX}:job:{job_id}"

    @staticmethod
    def cancel_key(job_id: str) -> str:
        return f"{PREFIX}:cancel:{job_id}"

    @staticmethod
    def deliveries_key(job_id: str) -> str:
        return f"{PREFIX}:deliveries:{job_id}"

    @staticmethod
    def idempotency_key(key: str) -> str:
        return f"{PREFIX}:idem:{key}"

    @staticmethod
    def events_channel(job_id: str) -> str:
        """Pub/sub channel carrying the job's record (JSON) after each write; '' once it is deleted."""
        return f"{PREFIX}:job-events:{job_id}"

    # --- records -------------------------------------------------------------------------
    def create(self, job: Job) -> bool:
        """Store a new job; False if the id is taken (the caller decides whether that's a replay)."""
        return bool(self.redis.set(self.job_key(job.id), job.model_dump_json(), nx=True, ex=self.ttl_s))

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(self.job_key(job_id))
        return Job.model_validate_json(raw) if raw else None

    def update(self, job_id: str, change: Callable[[Job], Job | None]) -> Job:
        """Apply `change` atomically (optimistic WATCH/MULTI); `change` returns None to skip.

        A write bumps `version` and publishes the new record on `events_channel` in the same MULTI."""
        key = self.job_key(job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(job_id)
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
                    pipe.publish(self.events_channel(job_id), record)
                    pipe.execute()
                    return changed
                except redis.WatchError:
                    continue

    def transition(self, job_id: str, status: JobStatus, **fields) -> Job:
        """Move a job to `status` unless it already reached a terminal state."""

        def change(job: Job) -> Job | None:
            if job.status.terminal:
                return None
            update = job.model_copy(update={"status": status, **fields})
            if status.terminal and update.finished_at is None:
                update.finished_at = time.time()
            return update

        return self.update(job_id, change)

    def delete(self, job_id: str) -> None:
        with self.redis.pipeline() as pipe:
            pipe.delete(self.job_key(job_id), self.cancel_key(job_id), self.deliveries_key(job_id))
            pipe.publish(self.events_channel(job_id), "")
            pipe.execute()

    # --- cancel, deliveries, idempotency --------------------------------------------------
    def request_cancel(self, job_id: str) -> None:
        self.redis.set(self.cancel_key(job_id), "1", ex=self.ttl_s)

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.cancel_key(job_id)))

    def count_delivery(self, job_id: str) -> int:
        key = self.deliveries_key(job_id)
        with self.redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, self.ttl_s)
            count, _ = pipe.execute()
        return int(count)

    def claim_idempotency_key(self, key: str, job_id: str) -> str:
        """Bind `key` to `job_id` if unbound; return the job id the key is bound to."""
        rkey = self.idempotency_key(key)
        if self.redis.set(rkey, job_id, nx=True, ex=self.ttl_s):
            return job_id
        bound = self.redis.get(rkey)  # str: the client decodes responses
        return str(bound) if bound else job_id

    def idempotency_binding(self, key: str) -> str | None:
        """The job id `key` is bound to, if any (a read only: claim_idempotency_key binds)."""
        bound = self.redis.get(self.idempotency_key(key))
        return str(bound) if bound else None

    def release_idempotency_key(self, key: str, job_id: str) -> None:
        rkey = self.idempotency_key(key)
        if self.redis.get(rkey) == job_id:
            self.redis.delete(rkey)

    def ping(self) -> bool:
        return bool(self.redis.ping())
