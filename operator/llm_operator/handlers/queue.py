"""A deduplicating work queue, as controller-runtime has: many events for one LLMDeployment
(its own, its Deployments', Services' and pods') collapse into one reconcile at a time per object,
and an object that changes while being reconciled is reconciled once more afterwards."""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Hashable

log = logging.getLogger("llm_operator.queue")


class WorkQueue:
    def __init__(self, process: Callable[[Hashable], Awaitable[None]], workers: int = 4,
                 retry_base: float = 1.0, retry_max: float = 120.0):
        self._process = process
        self._workers = workers
        self._retry_base, self._retry_max = retry_base, retry_max
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._failures: dict[Hashable, int] = {}
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"reconcile-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def add(self, key: Hashable) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        asyncio.get_running_loop().call_later(delay, self.add, key)

    async def _work(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._active.add(key)
            try:
                await self._process(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure is retried with backoff
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self._retry_base * 2 ** (failures - 1), self._retry_max)
                log.warning("Reconcile of LLMDeployment %s failed (attempt %d), retrying in %.0fs: %s",
                            key, failures, delay, error)
                self.add_after(key, delay)
            finally:
                self._active.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    self.add(key)
