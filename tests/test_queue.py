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


def test_add_soon_collapses_a_burst_into_one_reconcile_after_the_delay():
    calls = []

    async def scenario():
        async def process(key):
            calls.append((key, loop.time() - started))

        loop = asyncio.get_running_loop()
        queue = WorkQueue(process, workers=2)
        queue.start()
        started = loop.time()
        for _ in range(20):  # a pod created, scheduled, started, ready; its Deployment's status
            queue.add_soon("ns/a", 0.3)
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.6)
        queue.add_soon("ns/a", 0.05)  # a later change is a new burst
        await asyncio.sleep(0.3)
        await queue.stop()

    run(scenario())
    # One reconcile for the burst, not before its first change's delay; one for the later change.
    assert [key for key, _ in calls] == ["ns/a", "ns/a"] and calls[0][1] >= 0.3


def test_the_inbox_delivers_every_call_from_other_threads_in_order_with_few_wakeups():
    import threading

    from llm_operator.handlers.queue import Inbox

    delivered = []

    async def scenario():
        loop = asyncio.get_running_loop()
        wakeups = 0
        original = loop.call_soon_threadsafe

        def counting(*args):
            nonlocal wakeups
            wakeups += 1
            return original(*args)
        loop.call_soon_threadsafe = counting
        inbox = Inbox(loop, lambda n: delivered.append(n))
        writer = threading.Thread(target=lambda: [inbox.put(n) for n in range(2000)])
        writer.start()
        await asyncio.to_thread(writer.join)
        await asyncio.sleep(0.05)
        return wakeups

    wakeups = run(scenario())
    assert delivered == list(range(2000))
    assert wakeups < 2000
