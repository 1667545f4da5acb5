"""Micro-batching (services/batching.py): concurrent callers share batches on one thread, and a failure
stays with its item (or with every caller of a batch that raised)."""

from __future__ import annotations

import asyncio
import threading

from services.batching import MicroBatcher


def test_concurrent_items_share_batches_and_fail_alone():
    batches: list[list[int]] = []
    threads: set[str] = set()
    release = threading.Event()

    def double(items: list[int]) -> list[int | Exception]:
        release.wait(5)  # the first batch holds the thread until every caller has queued
        batches.append(items)
        threads.add(threading.current_thread().name)
        return [ValueError(f"odd {i}") if i % 2 else i * 2 for i in items]

    async def main() -> list:
        batcher: MicroBatcher[int, int] = MicroBatcher(double, max_batch=4, name="test-batcher")
        try:
            calls = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
            await asyncio.sleep(0.05)
            release.set()
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            batcher.close()

    results = asyncio.run(main())
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        0, "odd 1", 4, "odd 3", 8, "odd 5", 12, "odd 7", 16, "odd 9"
    ]
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert max(len(b) for b in batches) == 4 and len(batches) < 10  # batched, within max_batch
    assert len(threads) == 1 and threads.pop().startswith("test-batcher")


def test_a_batch_that_raises_fails_each_of_its_callers():
    def broken(items: list[int]) -> list[int]:
        raise ConnectionError("index down")

    async def main() -> list:
        batcher: MicroBatcher[int, int] = MicroBatcher(broken, max_batch=8, name="broken")
        try:
            return await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        finally:
            batcher.close()

    assert [type(r) for r in asyncio.run(main())] == [ConnectionError] * 3
