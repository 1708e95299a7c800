"""The work queue collapses bursts of events and retries failures with backoff, on its own threads."""

import threading
import time

from llm_operator.handlers.queue import WorkQueue


def test_burst_of_events_for_one_key_is_one_reconcile():
    calls = []
    queue = WorkQueue(calls.append, workers=2)
    for _ in range(50):
        queue.add("ns/a")
    queue.add("ns/b")
    queue.start()
    time.sleep(0.05)
    queue.stop()
    assert sorted(calls) == ["ns/a", "ns/b"]


def test_change_during_reconcile_reconciles_again_never_concurrently():
    running, overlaps, calls = set(), [], []
    queue = None

    def process(key):
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls.append(key)
        if len(calls) == 1:
            queue.add(key)  # an event arrives while the first reconcile runs
            queue.add(key)
        time.sleep(0.01)
        running.discard(key)

    queue = WorkQueue(process, workers=4)
    queue.add("ns/a")
    queue.start()
    time.sleep(0.1)
    queue.stop()
    assert calls == ["ns/a", "ns/a"] and overlaps == []


def test_failure_is_retried_with_growing_delay():
    times = []

    def process(key):
        times.append(time.monotonic())
        if len(times) < 3:
            raise RuntimeError("403 Forbidden")

    queue = WorkQueue(process, workers=1, retry_base=0.05, retry_max=1)
    queue.add("ns/a")
    queue.start()
    time.sleep(0.4)
    queue.stop()
    assert len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    assert first >= 0.05 and second >= 0.1 - 0.01


def test_add_soon_collapses_a_burst_into_one_reconcile_after_the_delay():
    calls = []
    queue = WorkQueue(lambda key: calls.append((key, time.monotonic() - started)), workers=2)
    queue.start()
    started = time.monotonic()
    for _ in range(20):  # a pod created, scheduled, started, ready; its Deployment's status
        queue.add_soon("ns/a", 0.3)
        time.sleep(0.002)
    time.sleep(0.6)
    queue.add_soon("ns/a", 0.05)  # a later change is a new burst
    time.sleep(0.3)
    queue.stop()
    # One reconcile for the burst, not before its first change's delay; one for the later change.
    assert [key for key, _ in calls] == ["ns/a", "ns/a"] and calls[0][1] >= 0.3


def test_an_earlier_timer_wakes_a_worker_already_waiting_for_a_later_one():
    calls = []
    queue = WorkQueue(lambda key: calls.append((key, time.monotonic() - started)), workers=1)
    queue.start()
    started = time.monotonic()
    queue.add_after("ns/late", 5)
    time.sleep(0.05)  # the worker now sleeps until the late one is due
    queue.add_after("ns/early", 0.1)
    time.sleep(0.4)
    queue.stop()
    assert [key for key, _ in calls] == ["ns/early"] and calls[0][1] < 0.35


def test_keys_added_from_many_threads_at_once_are_each_reconciled():
    done, lock = set(), threading.Lock()

    def process(key):
        with lock:
            done.add(key)

    queue = WorkQueue(process, workers=4)
    queue.start()
    adders = [threading.Thread(target=lambda t=t: [(queue.add if i % 2 else lambda k: queue.add_soon(k, 0.01))(f"ns/{t}-{i}")
                                                 for i in range(500)]) for t in range(4)]
    for adder in adders:
        adder.start()
    for adder in adders:
        adder.join()
    deadline = time.monotonic() + 5
    while len(done) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    queue.stop()
    assert len(done) == 2000


def test_stop_ends_idle_workers_at_once():
    queue = WorkQueue(lambda key: None, workers=3)
    queue.start()
    queue.add_after("ns/a", 60)
    started = time.monotonic()
    queue.stop()
    assert time.monotonic() - started < 1 and not any(t.is_alive() for t in queue._threads)


def test_a_requeuing_key_keeps_one_timer_whatever_the_extra_events():
    """A reconcile that asks to be requeued each time (a running batch, a rejected apply): extra
    events for the key reconcile it at once, but leave one requeue chain, not one more per event."""
    period, calls = 0.2, []
    queue = None

    def process(key):
        calls.append(time.monotonic())
        queue.add_after(key, period)

    queue = WorkQueue(process, workers=2)
    queue.start()
    queue.add("ns/a")
    for _ in range(10):  # each finds the key idle: a reconcile, which asks for its requeue again
        time.sleep(0.03)
        queue.add("ns/a")
    time.sleep(0.5)
    window_start = time.monotonic()
    time.sleep(6 * period)
    queue.stop()
    in_window = [t for t in calls if t >= window_start]
    assert 4 <= len(in_window) <= 8, f"{len(in_window)} reconciles in 6 periods: one requeue chain gives 6"


def test_add_soon_after_a_later_requeue_comes_due_at_its_own_time():
    calls = []
    queue = WorkQueue(lambda key: calls.append(time.monotonic() - started), workers=1)
    queue.start()
    started = time.monotonic()
    queue.add_after("ns/a", 5.0)  # a requeue far off
    queue.add_soon("ns/a", 0.1)  # then a change: the earlier time wins
    time.sleep(0.3)
    queue.add_soon("ns/a", 0.05)  # answered, so a new burst is taken again
    time.sleep(0.2)
    queue.stop()
    assert len(calls) == 2 and 0.1 <= calls[0] < 0.3, calls
