"""Greedy dynamic batching on one event loop: no Ray, no FastAPI (tested on its own).

A request is dispatched as soon as the model is free: the next batch is everything that
queued while the previous one ran (up to ``max_batch_size``), so a lone request never waits
and a loaded model runs full batches. ``wait_s`` > 0 additionally holds a batch that is not
full for up to that long after its first request arrived (worth it where a fuller batch is
almost free, e.g. a GPU). Ray Serve's ``@serve.batch`` instead forms the next batch while
the previous one still runs -- it waits ``batch_wait_timeout_s`` even for a lone request, and
under load it ships small batches that then queue behind each other.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

#: runs a batch of items in a worker thread; one result dict per item, in order
RunBatch = Callable[[List[Any]], List[Dict[str, Any]]]


class Batcher:
    """Queue of pending requests and the one task that runs them in batches.

    ``await submit(item)`` answers the item's result dict plus ``batch`` (requests in its
    batch), ``wait_ms`` (arrival to batch start) and ``model_ms`` (the batch's run time).
    ``pending`` counts requests submitted and not yet answered (the queue bound's measure).
    A cancelled request (deadline) is dropped if its batch has not started yet.
    """

    def __init__(self, run: RunBatch, max_batch_size: int, wait_s: float = 0.0) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._run = run
        self.max_batch_size = max_batch_size
        self.wait_s = max(0.0, wait_s)
        self.pending = 0
        self._queue: Deque[Tuple[Any, asyncio.Future, float]] = deque()
        self._arrived: Optional[asyncio.Event] = None
        self._worker: Optional[asyncio.Task] = None

    async def submit(self, item: Any) -> Dict[str, Any]:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():  # first call: on the serving loop
            self._arrived = asyncio.Event()
            self._worker = loop.create_task(self._serve())
        future = loop.create_future()
        self._queue.append((item, future, time.perf_counter()))
        self._arrived.set()
        self.pending += 1
        try:
            return await future
        finally:
            self.pending -= 1

    async def _serve(self) -> None:
        while True:
            batch = await self._next_batch()
            if batch:
                await self._run_batch(batch)

    async def _next_batch(self) -> List[Tuple[Any, asyncio.Future, float]]:
        while not self._queue:
            self._arrived.clear()
            await self._arrived.wait()
        if self.wait_s > 0:
            deadline = self._queue[0][2] + self.wait_s
            while len(self._queue) < self.max_batch_size:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        batch = []
        while self._queue and len(batch) < self.max_batch_size:
            entry = self._queue.popleft()
            if not entry[1].done():  # cancelled while queued (its deadline passed)
                batch.append(entry)
        return batch

    async def _run_batch(self, batch: List[Tuple[Any, asyncio.Future, float]]) -> None:
        start = time.perf_counter()
        try:
            results = await asyncio.to_thread(self._run, [item for item, _, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except Exception as err:  # every request of the batch gets the error
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(err)
            return
        model_ms = (time.perf_counter() - start) * 1000
        for (_, future, arrived), result in zip(batch, results):
            if not future.done():
                future.set_result({**result, "batch": len(batch), "model_ms": model_ms,
                                   "wait_ms": (start - arrived) * 1000})  # fmt: skip
