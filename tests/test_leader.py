"""Leader election against an in-memory Lease API: who holds the Lease, when a follower may take
it, and that expiry is judged by the follower's own clock, not the holder's renewTime."""

from __future__ import annotations

import copy
import itertools

import pytest

from llm_operator.handlers import leader
from llm_operator.handlers.leader import LeaderElector

_versions = itertools.count(1)


class MemoryLeases:
    """read/create/replace with resourceVersion checks, like the API server's optimistic concurrency."""

    def __init__(self):
        self.lease = None

    def read_lease(self, namespace, name):
        return copy.deepcopy(self.lease)

    def create_lease(self, namespace, body):
        if self.lease is not None:
            return False
        self.lease = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": str(next(_versions))}}
        return True

    def replace_lease(self, namespace, name, body):
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            return False  # 409: changed since it was read
        self.lease = {**copy.deepcopy(body), "metadata": {**body["metadata"], "resourceVersion": str(next(_versions))}}
        return True


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(leader.time, "monotonic", lambda: now[0])
    return now


def test_one_holder_and_a_follower_that_waits_for_expiry_on_its_own_clock(clock):
    leases = MemoryLeases()
    first, second = (LeaderElector(leases, "ns", "op", lease_seconds=15) for _ in range(2))
    assert first._try_once() and leases.lease["spec"]["holderIdentity"] == first.me
    assert not second._try_once()  # held: the follower notes when it saw this version
    clock[0] += 10
    assert first._try_once()  # renewed: a new version, seen anew by the follower
    assert not second._try_once()
    clock[0] += 14
    assert not second._try_once()  # 14 s since it saw the renewal: not yet expired
    # A holder whose renewTime says "far future" (a skewed clock) does not delay takeover either.
    leases.lease["spec"]["renewTime"] = "2099-01-01T00:00:00.000000Z"
    clock[0] += 2
    assert second._try_once() and leases.lease["spec"]["holderIdentity"] == second.me
    assert leases.lease["spec"]["leaseTransitions"] == 1
    assert not first._try_once()  # the old leader now follows


def test_a_released_lease_is_taken_at_once(clock):
    leases = MemoryLeases()
    first, second = (LeaderElector(leases, "ns", "op") for _ in range(2))
    assert first._try_once()
    first.leading.set()
    first._release()
    assert leases.lease["spec"]["holderIdentity"] is None
    assert second._try_once()


def test_two_candidates_racing_on_one_version_elect_one(clock):
    leases = MemoryLeases()
    first, second = (LeaderElector(leases, "ns", "op", lease_seconds=1) for _ in range(2))
    assert first._try_once()
    stale = leases.read_lease("ns", "op")
    clock[0] += 5
    for elector in (first, second):
        elector._seen_version, elector._seen_at = stale["metadata"]["resourceVersion"], 0.0
    assert second._try_once()
    # The first read the same version before the second wrote: its write is refused (409).
    assert not leases.replace_lease("ns", "op", leader.claimed(stale, "op", first.me, 1, leader.datetime.now(leader.UTC)))
