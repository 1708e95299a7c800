"""A deduplicating work queue, as controller-runtime has: many events for one LLMDeployment
(its own, its Deployments', Services' and pods') collapse into one reconcile at a time per object,
and an object that changes while being reconciled is reconciled once more afterwards.

It runs on threads, not on the event loop: the watch caches' threads add keys directly, and the
reconciles (synchronous code that waits on the API server) run on worker threads of their own. At
1,000 resources, passing every change and every reconcile through the event loop and back cost a
sixth of the operator's CPU."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("llm_operator.queue")

# How late a timer may fire: the delays are a second and more, and timers due together are then
# taken in one wake-up.
TIMER_SLACK = 0.05


Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    """Thread-safe: `add`, `add_after` and `add_soon` may be called from any thread."""

    def __init__(self, process: Callable[[Key], None], workers: int = 4,
                 retry_base: float = 1.0, retry_max: float = 120.0):
        self._process = process
        self._workers = workers
        self._retry_base, self._retry_max = retry_base, retry_max
        self._changed = threading.Condition()  # guards everything below
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._active: set[Key] = set()
        self._dirty: set[Key] = set()
        self._waiting: set[Key] = set()  # added with add_soon, not yet due
        # One pending time per key, the earliest asked for (as client-go's delaying queue keeps): a
        # reconcile that requeues asks again each time, so keeping every timer would start a new
        # chain of reconciles with every extra event. A heap entry whose order is no longer the
        # key's in `_pending` was replaced by an earlier one and is skipped when it comes due.
        self._timers: list[tuple[float, int, Key]] = []  # (due, order, key)
        self._pending: dict[Key, tuple[float, int]] = {}  # key -> (due, order) of its live timer
        self._order = itertools.count()
        self._failures: dict[Key, int] = {}
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self._watching_timers = False  # an idle worker sleeps until the earliest timer

    @property
    def stopped(self) -> bool:
        return self._stopped

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
                         for i in range(self._workers)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Let running reconciles finish (up to `timeout`), start no more."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def add(self, key: Key) -> None:
        with self._changed:
            self._add(key)

    def add_after(self, key: Key, delay: float) -> None:
        with self._changed:
            self._at(time.monotonic() + delay, key)

    def add_soon(self, key: Key, delay: float) -> None:
        """Add `key` once, `delay` seconds from the first of any number of calls meanwhile.

        For changes that come in bursts and need no instant answer: a pod is created, scheduled,
        started and becomes ready within a second, and its Deployment's status changes with it. One
        reconcile after the burst writes one status instead of one per step."""
        with self._changed:
            if key in self._waiting or key in self._queued:
                return
            self._waiting.add(key)
            self._at(time.monotonic() + delay, key)

    # ------------------------------------------------------------ under self._changed

    def _add(self, key: Key) -> None:
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._changed.notify()

    def _at(self, due: float, key: Key) -> None:
        pending = self._pending.get(key)
        if pending and pending[0] <= due:
            return  # the key comes due no later already
        timer = (due, next(self._order), key)
        self._pending[key] = timer[:2]
        heapq.heappush(self._timers, timer)
        if self._timers[0] is timer:  # a new earliest timer (rare: delays are mostly equal)
            self._changed.notify_all()  # the worker watching the timers must wake sooner

    def _next(self) -> Key | None:
        """The next key to reconcile, waiting for one; None once stopped.

        One idle worker at a time watches the timers; the others sleep until work is ready, so a
        due timer wakes one worker, not all of them."""
        while not self._stopped:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, order, key = heapq.heappop(self._timers)
                if self._pending.get(key, (0.0, -1))[1] != order:
                    continue  # replaced by an earlier timer, which has fired
                del self._pending[key]
                self._waiting.discard(key)  # an add_soon in wait is answered by this reconcile too
                self._add(key)
            if self._ready:
                key = self._ready.popleft()
                self._queued.discard(key)
                self._active.add(key)
                if self._ready or (self._timers and not self._watching_timers):
                    self._changed.notify()  # another worker takes the rest, or watches the timers
                return key
            if self._timers and not self._watching_timers:
                self._watching_timers = True
                # Due timers are taken together, at most TIMER_SLACK late: one wake-up per batch.
                self._changed.wait(max(self._timers[0][0] - now, TIMER_SLACK))
                self._watching_timers = False
            else:
                self._changed.wait()
        return None

    # ------------------------------------------------------------ workers

    def _work(self) -> None:
        while True:
            with self._changed:
                key = self._next()
            if key is None:
                return
            try:
                self._process(key)
                self._failures.pop(key, None)
            except Exception as error:  # noqa: BLE001 - any failure is retried with backoff
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(self._retry_base * 2 ** (failures - 1), self._retry_max)
                log.warning("Reconcile of %s failed (attempt %d), retrying in %.0fs: %s",
                            key, failures, delay, error)
                self.add_after(key, delay)
            finally:
                with self._changed:
                    self._active.discard(key)
                    if key in self._dirty:
                        self._dirty.discard(key)
                        self._add(key)
