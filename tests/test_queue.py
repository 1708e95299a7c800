"""The work queue collapses bursts of events and retries failures with backoff."""

import asyncio

from llm_operator.handlers.queue import WorkQueue


def run(coroutine):
    return asyncio.run(coroutine)


def test_burst_of_events_for_one_key_is_one_reconcile():
    calls = []

    async def scenario():
        async def process(key):
            calls.append(key)

        queue = WorkQueue(process, workers=2)
        for _ in range(50):
            queue.add("ns/a")
        queue.add("ns/b")
        queue.start()
        await asyncio.sleep(0.05)
        await queue.stop()

    run(scenario())
    assert sorted(calls) == ["ns/a", "ns/b"]


def test_change_during_reconcile_reconciles_again_never_concurrently():
    running, overlaps, calls = set(), [], []

    async def scenario():
        queue = None

        async def process(key):
            if key in running:
                overlaps.append(key)
            running.add(key)
            calls.append(key)
            if len(calls) == 1:
                queue.add(key)  # an event arrives while the first reconcile runs
                queue.add(key)
            await asyncio.sleep(0.01)
            running.discard(key)

        queue = WorkQueue(process, workers=4)
        queue.add("ns/a")
        queue.start()
        await asyncio.sleep(0.1)
        await queue.stop()

    run(scenario())
    assert calls == ["ns/a", "ns/a"] and overlaps == []


def test_failure_is_retried_with_growing_delay():
    times = []

    async def scenario():
        loop = asyncio.get_running_loop()

        async def process(key):
            times.append(loop.time())
            if len(times) < 3:
                raise RuntimeError("403 Forbidden")

        queue = WorkQueue(process, workers=1, retry_base=0.05, retry_max=1)
        queue.add("ns/a")
        queue.start()
        await asyncio.sleep(0.4)
        await queue.stop()

    run(scenario())
    assert len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    assert first >= 0.05 and second >= 0.1 - 0.01
