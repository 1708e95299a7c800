"""A deduplicating work queue, as controller-runtime has: many events for one LLMDeployment
(its own, its Deployments', Services' and pods') collapse into one reconcile at a time per object,
and an object that changes while being reconciled is reconciled once more afterwards."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Awaitable, Callable, Hashable

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
        self._waiting: set[Hashable] = set()  # added with add_soon, not yet due
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

    def add_soon(self, key: Hashable, delay: float) -> None:
        """Add `key` once, `delay` seconds from the first of any number of calls meanwhile.

        For changes that come in bursts and need no instant answer: a pod is created, scheduled,
        started and becomes ready within a second, and its Deployment's status changes with it. One
        reconcile after the burst writes one status instead of one per step."""
        if key in self._waiting or key in self._queued:
            return
        self._waiting.add(key)

        def due() -> None:
            self._waiting.discard(key)
            self.add(key)
        asyncio.get_running_loop().call_later(delay, due)

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


class Inbox:
    """Hands calls from other threads (the watch caches' reflectors) to the event loop in batches.

    `put(*args)` from any thread; `deliver(*args)` runs in the loop, in order. The loop is woken once
    per batch, not once per call: at 1,000 resources, waking it for every watch event cost more CPU
    than the reconciles did."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[..., None]):
        self._loop, self._deliver = loop, deliver
        self._pending: list[tuple[Any, ...]] = []
        self._woken = False
        self._lock = threading.Lock()

    def put(self, *args: Any) -> None:
        with self._lock:
            self._pending.append(args)
            if self._woken:
                return
            self._woken = True
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            batch, self._pending, self._woken = self._pending, [], False
        for args in batch:
            try:
                self._deliver(*args)
            except Exception:  # noqa: BLE001 - one bad change must not drop the rest of the batch
                log.exception("Failed to handle a watched change")
