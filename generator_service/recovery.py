"""Requeue a job within seconds when the worker holding its message lost the broker or died.

The problem: with late acks, a message a worker has taken sits in kombu's ``unacked`` hash until it
is acked. When the worker's broker connection drops (Redis restart) Celery terminates the running
child (``worker_cancel_long_running_tasks_on_connection_loss``) and, after reconnecting, forgets the
old channel's deliveries; when the whole worker dies nothing is left to remember them. Either way
only kombu's visibility timeout (REALRAG_VISIBILITY_TIMEOUT_S, 900 s) would put the message back,
and the job stayed ``generating`` that long. (A killed *child* is already handled: the main process
requeues its message at once, ``task_reject_on_worker_lost``.)

The design: delivery leases plus a sweep, both in each worker's main process.

* Lease: every few seconds the worker writes ``realrag:lease:<delivery tag>`` (TTL
  REALRAG_WORKER_LEASE_S) for each message it holds (Celery's reserved and running requests), plus
  ``realrag:leased:<tag>`` (TTL: the visibility timeout) saying that a worker took part in leasing
  it. The lease of a delivery it no longer holds simply expires.
* Sweep, right after the leases: read the ``unacked`` hash (messages of our queue and generate task
  only) and put back every delivery that
  - this worker released itself at least one cycle ago and is still unacked: the reconnect case,
    recovered on the first cycle after the broker returns (the cycle's wait lets a finished task's
    ack land first), or
  - was leased once and has no lease now: its owner died or lost it, and its lease expired.
  A delivery that was never leased (taken by a worker of an older version during a rolling upgrade,
  or by one that died in the instant before its first lease) is left to the visibility timeout, so
  a worker that does not lease is never raced. No clocks are compared across hosts.
* Requeue through the queue contract: kombu's own ``restore_by_tag`` moves the *same* message (same
  task id = job id) from ``unacked`` back to the front of its queue in one WATCH/MULTI transaction,
  so a message is never in the queue twice; a ``SET NX`` claim per delivery makes exactly one of
  several concurrent sweepers do it (and log it). The redelivery then goes through runner.run_job as
  any other: the delivery counter and its cap, and the terminal-state checks that drop a duplicate
  of a finished job, keep the outputs written once.
* When: on worker start, on every broker (re)connection (a consumer bootstep wakes the loop), when
  a message arrives (to lease it at once) and every lease/5 seconds.

Why not the alternatives: restoring only a worker's own deliveries on reconnect misses a worker that
died; scanning job records for ``generating`` needs an index of jobs by state and a liveness record
per worker process, and a new message would leave the stale one in ``unacked`` for the visibility
timeout to redeliver. The heartbeat file (heartbeat.py) is local to a host, so it cannot tell another
worker who is alive. Redis losing its data (no persistence) loses the queue and the job records too:
that is a different failure and out of scope here.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from celery import bootsteps
from kombu import Connection

log = logging.getLogger(__name__)

LEASE_PREFIX = "realrag:lease:"
LEASED_PREFIX = "realrag:leased:"
CLAIM_PREFIX = "realrag:recovering:"


def lease_key(tag: str) -> str:
    return f"{LEASE_PREFIX}{tag}"


def leased_key(tag: str) -> str:
    return f"{LEASED_PREFIX}{tag}"


def claim_key(tag: str) -> str:
    return f"{CLAIM_PREFIX}{tag}"


def held_deliveries() -> set[str]:
    """Delivery tags of the messages this worker process holds: reserved or running requests."""
    from celery.worker import state

    for _ in range(10):
        try:  # the event loop thread changes the set while we copy it: try again
            requests = list(state.reserved_requests)
        except RuntimeError:
            time.sleep(0.01)
            continue
        return {str(r.message.delivery_tag) for r in requests if getattr(r, "message", None) is not None}
    raise RuntimeError("could not read the worker's reserved requests")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Recovery:
    """Lease keeping and the orphan sweep for one worker process (see the module docstring)."""

    def __init__(
        self,
        connect: Callable[[], Connection],
        queue: str,
        task_name: str,
        lease_s: float,
        owner: str,
        remember_s: float,
        held: Callable[[], set[str]] = held_deliveries,
        settle_s: float | None = None,
    ) -> None:
        self.connect = connect
        self.queue = queue
        self.task_name = task_name
        self.lease_s = lease_s
        self.remember_s = remember_s  # how long "leased once" is kept: the visibility timeout
        self.interval_s = lease_s / 5
        # a task's ack follows its end by moments: a released delivery still unacked after this is lost
        self.settle_s = self.interval_s if settle_s is None else settle_s
        self.owner = owner
        self.held = held
        self._held: set[str] = set()
        self._released: dict[str, float] = {}  # tag -> when this worker stopped holding it (monotonic)
        self._connection: Connection | None = None
        self._channel: Any = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    # --- one cycle -------------------------------------------------------------------------
    def run_once(self) -> list[str]:
        """Renew this worker's leases, then requeue orphaned deliveries; returns their job ids."""
        current = self.held()
        now = time.monotonic()
        for tag in self._held - current:  # noted even while the broker is down: that counts as settling
            self._released.setdefault(tag, now)
        self._held = current
        channel = self._open()
        self._renew_leases(channel.client)
        return self._sweep(channel)

    def _renew_leases(self, client) -> None:
        # A released delivery keeps its lease until it expires: other sweepers leave it alone (its
        # ack has long landed by then), while this worker requeues it itself if it is still unacked.
        with client.pipeline(transaction=False) as pipe:
            for tag in self._held:
                pipe.set(lease_key(tag), self.owner, px=int(self.lease_s * 1000))
                pipe.set(leased_key(tag), self.owner, ex=int(self.remember_s))
            pipe.execute()

    def _sweep(self, channel) -> list[str]:
        client = channel.client
        entries = client.hgetall(channel.unacked_key)
        ours: list[tuple[str, str | None]] = []
        for raw_tag, raw in entries.items():
            try:
                payload, _exchange, routing_key = json.loads(raw)
                headers = payload.get("headers") or {}
            except (ValueError, TypeError, AttributeError):
                continue
            # only our generate messages; an ETA message waits in a worker's timer, not in a lease
            if routing_key == self.queue and headers.get("task") == self.task_name and not headers.get("eta"):
                ours.append((_text(raw_tag), headers.get("id")))
        unacked = {_text(tag) for tag in entries}
        self._released = {tag: at for tag, at in self._released.items() if tag in unacked}
        candidates = [(tag, job_id) for tag, job_id in ours if tag not in self._held]
        if not candidates:
            return []
        with client.pipeline(transaction=False) as pipe:
            for tag, _ in candidates:
                pipe.exists(lease_key(tag))
                pipe.exists(leased_key(tag))
            answers = pipe.execute()
        now = time.monotonic()
        requeued = []
        for (tag, job_id), leased_now, leased_once in zip(candidates, answers[::2], answers[1::2], strict=True):
            released_at = self._released.get(tag)
            if released_at is not None and now - released_at >= self.settle_s:
                reason = "this worker lost it (broker connection lost, or its task ended without an ack)"
            elif leased_once and not leased_now:
                reason = "its worker's lease lapsed (the worker died or lost Redis)"
            else:
                continue  # held by a live worker, or never leased: left to the visibility timeout
            if self._requeue(channel, tag):
                self._released.pop(tag, None)
                requeued.append(job_id or tag)
                log.warning("requeued job %s (delivery %s): %s", job_id, tag, reason)
        return requeued

    def _requeue(self, channel, tag: str) -> bool:
        """Move one unacked message back to its queue; False if another sweeper claimed it."""
        client = channel.client
        if not client.set(claim_key(tag), self.owner, nx=True, ex=max(60, int(self.lease_s * 4))):
            return False
        try:
            channel.qos.restore_by_tag(tag, client=client)
        except Exception:
            try:
                client.delete(claim_key(tag))
            except Exception:  # the broker is gone again: the claim expires on its own
                pass
            raise
        client.delete(lease_key(tag), leased_key(tag))  # the tag is spent: a redelivery gets a new one
        return True

    # --- the broker connection of the sweep (its own, not the consumer's) -------------------
    def _open(self):
        if self._channel is None:
            connection = self.connect()
            try:
                self._channel = connection.channel()
            except Exception:
                connection.release()
                raise
            self._connection = connection
        return self._channel

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # a dead connection has nothing left to close
                pass

    # --- the loop ----------------------------------------------------------------------------
    def wake(self) -> None:
        """Run a cycle now (a message was received, or the broker connection came back)."""
        self._wake.set()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # broker down: try again next cycle on a fresh connection
                log.warning("job recovery cycle failed: %s", exc)
                self.close()
            self._wake.wait(self.interval_s)
            self._wake.clear()
        self.close()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="realrag-recovery", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


_active: Recovery | None = None


def start(app, queue: str, task_name: str, lease_s: float, remember_s: float, hostname: str) -> Recovery:
    """Start this worker process's recovery loop (once); later calls return the running one."""
    global _active
    if _active is None:
        owner = f"{hostname}:{os.getpid()}"
        _active = Recovery(app.connection_for_write, queue, task_name, lease_s, owner, remember_s)
        _active.start()
    return _active


def wake() -> None:
    if _active is not None:
        _active.wake()


class WakeRecoveryOnConnect(bootsteps.StartStopStep):
    """Consumer bootstep: its start runs on every broker (re)connection, so recovery runs at once."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent) -> None:
        wake()

