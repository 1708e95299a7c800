"""Prometheus metrics of the operator (served by `llm-operator run --metrics-port`)."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "llmops_reconciles_total", "Reconciles of LLMDeployments by result.", ["result"])
RECONCILE_SECONDS = Histogram(
    "llmops_reconcile_duration_seconds", "Time one reconcile took.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PHASES = Gauge(
    "llmops_llmdeployments", "LLMDeployments by phase, as last observed by this operator.", ["phase"])
API_WRITES = Counter(
    "llmops_api_writes_total", "Write requests this operator sent to the API server, by kind and verb "
    "(Lease renewals of leader election not included).", ["kind", "verb"])
LEADER = Gauge(
    "llmops_leader", "1 while this process holds the leader-election Lease and reconciles, else 0.")

ALL_PHASES = ("Pending", "Downloading", "Starting", "Ready", "Degraded", "Failed")


def publish_phases(phase_by_object: dict) -> None:
    """Set the by-phase gauge from the operator's memory of every object's last phase."""
    counts = dict.fromkeys(ALL_PHASES, 0)
    for phase in phase_by_object.values():
        if phase in counts:
            counts[phase] += 1
    for phase, count in counts.items():
        PHASES.labels(phase=phase).set(count)
