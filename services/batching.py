"""Micro-batching of concurrent requests: one blocking call per batch, on one dedicated thread.

Requests that arrive while a batch runs wait together and form the next batch, so a busy service
pays one call per batch (the retriever: one encoder forward pass; the gateway: one broker pipeline)
and an idle one adds no delay (no timer). The blocking call runs on a single-thread executor: the
event loop keeps accepting and parsing requests meanwhile, and the library behind the call (torch,
kombu) sees one caller at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# One result per item: the value, or the exception that item raised (other items are unaffected).
BatchRun = Callable[[list[T]], Sequence[R | BaseException]]


class MicroBatcher(Generic[T, R]):
    def __init__(self, run: BatchRun, max_batch: int, name: str) -> None:
        self._run = run
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            batch = [(item, future) for item, future in batch if not future.done()]  # cancelled: client gone
            if not batch:
                continue
            try:
                results: Sequence[R | BaseException] = await loop.run_in_executor(
                    self._executor, self._run, [item for item, _ in batch]
                )
            except Exception as exc:  # the whole batch failed (e.g. the index is down): every caller sees it
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def run_alone(self, call: Callable[[], R]) -> R:
        """A one-off blocking call on this batcher's thread (serialised with its batches)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
