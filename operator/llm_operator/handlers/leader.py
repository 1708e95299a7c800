"""Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: of all
operator processes that share a Lease, exactly one reconciles; the others watch and wait.

Assumptions, stated because safety rests on them:
- The leader renews every `renew_seconds`, and stops reconciling at the first renewal that fails,
  well before the `lease_seconds` after its last success at which another process may take over.
- A follower judges expiry by when *it* last saw the Lease change (its own monotonic clock), never
  by comparing the holder's renewTime with its own wall clock: two machines' clocks need not agree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..k8s import Kube
from ..metrics import LEADER

log = logging.getLogger("llm_operator.leader")


def identity() -> str:
    """Unique per process: the pod (or host) name and a random suffix, as client-go recommends."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claimed(lease: dict[str, Any] | None, name: str, me: str, lease_seconds: int, now: datetime) -> dict[str, Any]:
    """The Lease with `me` as holder, renewed now (pure)."""
    spec = (lease or {}).get("spec") or {}
    mine = spec.get("holderIdentity") == me
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {**((lease or {}).get("metadata") or {}), "name": name},
        "spec": {
            "holderIdentity": me,
            "leaseDurationSeconds": lease_seconds,
            "acquireTime": spec.get("acquireTime") if mine else _micro_time(now),
            "renewTime": _micro_time(now),
            "leaseTransitions": spec.get("leaseTransitions", 0) + (0 if mine or lease is None else 1),
        },
    }


class LeaderElector:
    def __init__(self, kube: Kube, namespace: str, name: str, lease_seconds: int = 15,
                 renew_seconds: float = 5.0, retry_seconds: float = 2.0,
                 on_elected: Callable[[], None] = lambda: None):
        self.kube, self.namespace, self.name = kube, namespace, name
        self.me = identity()
        self.lease_seconds, self.renew_seconds, self.retry_seconds = lease_seconds, renew_seconds, retry_seconds
        self.on_elected = on_elected
        self.leading = threading.Event()  # waited for by the work queue's threads
        self._seen_version: str | None = None
        self._seen_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def _try_once(self) -> bool:
        """Create, renew or take over the Lease; True when this process holds it afterwards."""
        lease = self.kube.read_lease(self.namespace, self.name)
        if lease is not None:
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            if holder and holder != self.me:
                version = lease["metadata"]["resourceVersion"]
                if version != self._seen_version:
                    self._seen_version, self._seen_at = version, time.monotonic()
                    return False
                if time.monotonic() < self._seen_at + spec.get("leaseDurationSeconds", self.lease_seconds):
                    return False
        body = claimed(lease, self.name, self.me, self.lease_seconds, datetime.now(UTC))
        if lease is None:
            return self.kube.create_lease(self.namespace, body)
        return self.kube.replace_lease(self.namespace, self.name, body)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop renewing, then free the Lease so that a follower takes over at once, not after
        expiry. In this order: a renewal after the release would take the Lease back."""
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.leading.is_set():
            self.leading.clear()
            await asyncio.to_thread(self._release)

    async def _run(self) -> None:
        while True:
            try:
                held = await asyncio.to_thread(self._try_once)
            except Exception as error:  # noqa: BLE001 - an API error means "not sure": stop leading
                log.warning("Failed to renew Lease %s/%s: %s", self.namespace, self.name, error)
                held = False
            if held and not self.leading.is_set():
                log.info("Acquired Lease %s/%s as %s: reconciling", self.namespace, self.name, self.me)
                self.leading.set()
                LEADER.set(1)
                self.on_elected()
            elif not held and self.leading.is_set():
                log.warning("Lost Lease %s/%s: stopped reconciling", self.namespace, self.name)
                self.leading.clear()
                LEADER.set(0)
            await asyncio.sleep(self.renew_seconds if held else self.retry_seconds)

    def _release(self) -> None:
        LEADER.set(0)
        try:
            lease = self.kube.read_lease(self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.me:
                lease["spec"].update(holderIdentity=None, leaseDurationSeconds=1)
                self.kube.replace_lease(self.namespace, self.name, lease)
                log.info("Released Lease %s/%s", self.namespace, self.name)
        except Exception as error:  # noqa: BLE001 - the Lease then expires by itself
            log.warning("Failed to release Lease %s/%s: %s", self.namespace, self.name, error)
