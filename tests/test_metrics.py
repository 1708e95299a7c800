"""The by-phase gauge follows each object's last phase, including deletes."""

from prometheus_client import REGISTRY

from llm_operator.metrics import PhaseGauge


def gauge(phase):
    return REGISTRY.get_sample_value("llmops_llmdeployments", {"phase": phase})


def test_each_object_counts_once_under_its_last_phase():
    phases = PhaseGauge()
    phases.set("ns/a", "Pending")
    phases.set("ns/b", "Pending")
    phases.set("ns/a", "Ready")
    phases.set("ns/a", "Ready")
    assert (gauge("Pending"), gauge("Ready")) == (1, 1)
    phases.set("ns/b", None)  # deleted
    phases.set("ns/c", None)  # never seen
    assert (gauge("Pending"), gauge("Ready"), gauge("Failed")) == (0, 1, 0)
    assert phases.get("ns/a") == "Ready" and phases.get("ns/b") is None


def phase_of(namespace, name):
    """The phases with a series for one LLMDeployment (the alert's input)."""
    return {sample.labels["phase"]: sample.value
            for metric in REGISTRY.collect() if metric.name == "llmops_llmdeployment_phase"
            for sample in metric.samples
            if sample.labels["namespace"] == namespace and sample.labels["llmdeployment"] == name}


def test_each_object_has_one_series_for_its_phase_until_deleted():
    phases = PhaseGauge()
    phases.set("team/chat", "Starting")
    phases.set("team/chat", "Degraded")
    assert phase_of("team", "chat") == {"Degraded": 1}
    phases.set("team/chat", None)
    assert phase_of("team", "chat") == {}
