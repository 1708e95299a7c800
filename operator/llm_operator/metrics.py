"""Prometheus metrics of the operator (served by `llm-operator run --metrics-port`)."""

import threading

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "llmops_reconciles_total", "Reconciles of LLMDeployments by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "llmops_reconcile_duration_seconds", "Time one reconcile took.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PHASES = Gauge(
    "llmops_llmdeployments", "LLMDeployments by phase, as last observed by this operator.", ["phase"])
PHASE = Gauge(
    "llmops_llmdeployment_phase", "1 for the phase each LLMDeployment is in, as last observed by this operator "
    "(one series per LLMDeployment; alerts join it with llmops_leader == 1).",
    ["namespace", "llmdeployment", "phase"])
API_WRITES = Counter(
    "llmops_api_writes_total", "Write requests this operator sent to the API server, by kind and verb "
    "(Lease renewals of leader election not included).", ["kind", "verb"])
LEADER = Gauge(
    "llmops_leader", "1 while this process holds the leader-election Lease and reconciles, else 0.")

ALL_PHASES = ("Pending", "Downloading", "Starting", "Ready", "Idle", "Degraded", "Failed")


class PhaseGauge:
    """The last phase of every object, published as the by-phase gauge. Each change moves one
    object between two labels (counting all objects again on every reconcile was O(N))."""

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()  # set by the work queue's and the watch caches' threads
        for phase in ALL_PHASES:
            PHASES.labels(phase=phase).set(0)

    def set(self, key: str, phase: str | None) -> None:
        """Record `phase` for `key` ("namespace/name"); None forgets the object (deleted)."""
        with self._lock:
            old = self._phases.pop(key, None) if phase is None else self._phases.get(key)
            if old == phase:
                return
            if phase is not None:
                self._phases[key] = phase
            namespace, _, name = key.partition("/")
            if old in ALL_PHASES:
                PHASES.labels(phase=old).dec()
                PHASE.remove(namespace, name, old)
            if phase in ALL_PHASES:
                PHASES.labels(phase=phase).inc()
                PHASE.labels(namespace=namespace, llmdeployment=name, phase=phase).set(1)

    def get(self, key: str) -> str | None:
        return self._phases.get(key)
