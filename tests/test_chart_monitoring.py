"""The chart's monitoring objects, rendered with the cached helm binary: the Grafana dashboard ConfigMap
(grafanaDashboard) and the PrometheusRule (prometheusRule), both off by default.

Dashboards and alerts name their series in strings, so a renamed metric leaves a panel empty or an
alert silent without any error. Hence three checks of the names: every series the queries use is in
one list here (VLLM_SERIES and the operator's and kube-state-metrics' own); VLLM_SERIES is checked
against the pinned vLLM's source (the `make vllm-check-env` environment); and e2e/test_serving.py
checks the same names, extracted by `vllm_metrics_used` below, against a real vLLM pod's /metrics.

Outside CI, a missing helm binary (`make cluster-tools`) skips; with CI=true it fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import llm_operator.metrics
import plane
from llm_operator.render.autoscaling import SCALING_METRICS
from monitoring import MONITORING_VALUES, exposed_families, metric_family, vllm_metric_names, vllm_metrics_used
from support import REPO, vector_selectors
from vllm_check import MISSING_HINT, env_dir

CHART = REPO / "charts" / "llm-operator"

# The vLLM series the dashboard, the alerts and the ScaledObjects query, by family (a histogram's
# _bucket/_sum/_count samples count as the histogram; counters keep _total, as exposed). Checked
# against vLLM 0.32 (CPU image) and 0.33 (GPU image): vllm/v1/metrics/loggers.py, same names in both.
VLLM_SERIES = {
    "vllm:request_success_total",
    "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",  # vllm:time_per_output_token_seconds before the V1 engine
    "vllm:num_requests_waiting",
    "vllm:num_requests_running",
    "vllm:kv_cache_usage_perc",  # vllm:gpu_cache_usage_perc before the V1 engine
    "vllm:prefix_cache_hits_total",
    "vllm:prefix_cache_queries_total",
}
# The dashboard's replicas panel (kube-state-metrics; kube_deployment_labels needs its label allowlist).
KUBE_STATE_METRICS_SERIES = {
    "kube_deployment_labels",
    "kube_deployment_spec_replicas",
    "kube_deployment_status_replicas",
    "kube_deployment_status_replicas_available",
}
# Queried by the LLMDeploymentDegraded alert, not yet exported by operator/llm_operator/metrics.py:
# a gauge per LLMDeployment and phase, labels namespace, llmdeployment, phase; 1 for the current phase.
PENDING_OPERATOR_SERIES: set[str] = set()

# Every series the chart queries has one of these prefixes; the PromQL parser test checks that.
PREFIXED_NAME = re.compile(r"(?:vllm:|llmops_|kube_)[A-Za-z0-9_:]*[A-Za-z0-9_]")


# ------------------------------------------------------------------ rendering


def _helm() -> Path:
    try:
        return plane.find_binary("helm")
    except FileNotFoundError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(str(error), pytrace=False)
        pytest.skip(str(error))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(_helm()), *args], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render(*args: str) -> list[dict]:
    rendered = helm("template", "rel", str(CHART), "-n", "ops", *args).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def one(docs: list[dict], kind: str) -> dict:
    [doc] = [doc for doc in docs if doc["kind"] == kind]
    return doc


def dashboard_of(docs: list[dict]) -> dict:
    [text] = one(docs, "ConfigMap")["data"].values()
    return json.loads(text)


def queries(docs: list[dict]) -> list[str]:
    """Every PromQL expression of the dashboard panels and the alerts (Grafana's template variables
    are `label_values(...)` calls, not PromQL; their series are in VLLM_NAME's reach all the same)."""
    panels = dashboard_of(docs)["panels"]
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    return exprs + [rule["expr"] for group in one(docs, "PrometheusRule")["spec"]["groups"] for rule in group["rules"]]


def operator_series() -> set[str]:
    """The series the operator exports, from its prometheus_client objects (counters gain _total)."""
    names = set()
    for collector in vars(llm_operator.metrics).values():
        if isinstance(collector, MetricWrapperBase):
            for metric in collector.describe():
                names.add(metric.name + "_total" if metric.type == "counter" else metric.name)
    return names


# ------------------------------------------------------------------ tests


def test_monitoring_is_off_by_default():
    kinds = {doc["kind"] for doc in render()}
    assert "PrometheusRule" not in kinds and "ConfigMap" not in kinds


def test_dashboard_is_valid_json_in_a_configmap_the_sidecar_finds():
    docs = render("--set", "grafanaDashboard.enabled=true", "--set", "grafanaDashboard.label=grafana.io/dashboard",
                  "--set", "grafanaDashboard.labelValue=llm", "--set", "grafanaDashboard.namespace=monitoring",
                  "--set", "grafanaDashboard.annotations.grafana_folder=LLM")
    config_map = one(docs, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana.io/dashboard"] == "llm"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    dashboard = dashboard_of(docs)
    assert dashboard == json.loads((CHART / "dashboards" / "llm-operator.json").read_text())
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "namespace", "model_name"]
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert {target["datasource"]["uid"] for target in panel["targets"]} == {"${datasource}"}, panel["title"]
    # Per-model panels filter on both variables; the operator's and the replicas panel cannot.
    for expr in (target["expr"] for panel in panels for target in panel["targets"] if "vllm:" in target["expr"]):
        assert 'namespace=~"$namespace"' in expr and 'model_name=~"$model_name"' in expr, expr
    default = one(render("--set", "grafanaDashboard.enabled=true"), "ConfigMap")["metadata"]
    assert default["namespace"] == "ops" and default["labels"]["grafana_dashboard"] == "1"


def test_prometheus_rule_alerts_take_their_thresholds_from_values():
    rule = one(render("--set", "prometheusRule.enabled=true", "--set", "prometheusRule.labels.release=kps",
                      "--set-json", "prometheusRule.kvCacheUsage.threshold=0.95",
                      "--set", "prometheusRule.kvCacheUsage.for=15m",
                      "--set", "prometheusRule.requestsWaiting.threshold=20",
                      "--set", "prometheusRule.requestsWaiting.for=3m",
                      "--set", "prometheusRule.degraded.for=20m"), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["metadata"]["labels"]["release"] == "kps"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert sorted(alerts) == ["LLMDeploymentDegraded", "VLLMKVCacheAlmostFull", "VLLMRequestsQueued"]
    kv, queue, degraded = alerts["VLLMKVCacheAlmostFull"], alerts["VLLMRequestsQueued"], alerts["LLMDeploymentDegraded"]
    assert kv["expr"].endswith("(vllm:kv_cache_usage_perc) > 0.95") and kv["for"] == "15m"
    assert "over 95 % of its KV cache for 15m" in kv["annotations"]["description"]
    assert queue["expr"].endswith("(vllm:num_requests_waiting) > 20") and queue["for"] == "3m"
    assert degraded["for"] == "20m" and 'llmops_llmdeployment_phase{phase="Degraded"}' in degraded["expr"]
    # Prometheus templates reach the rule unrendered by Helm, naming where and what.
    for alert, where in ((kv, "$labels.pod"), (queue, "$labels.pod"), (degraded, "$labels.llmdeployment")):
        assert alert["labels"] == {"severity": "warning"}
        for text in alert["annotations"].values():
            assert "{{ $labels.namespace }}" in text and "{{ " + where + " }}" in text, text
    assert "{{ $labels.model_name }}" in kv["annotations"]["summary"]
    assert "describe llmd" in degraded["annotations"]["description"]
    assert "replicas" in kv["annotations"]["description"] and "replicas" in queue["annotations"]["description"]


def _balanced(expr: str) -> bool:
    """Brackets pair up outside string literals (the queries' strings hold no escaped quotes)."""
    closing = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote = None
    for char in expr:
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in closing and (not stack or stack.pop() != closing[char]):
            return False
    return not stack and quote is None


def test_queries_name_only_known_series():
    known = VLLM_SERIES | KUBE_STATE_METRICS_SERIES | operator_series() | PENDING_OPERATOR_SERIES
    docs = render(*MONITORING_VALUES)
    for expr in queries(docs):
        assert _balanced(expr), expr
        unknown = {name for name in PREFIXED_NAME.findall(expr) if metric_family(name) not in known}
        assert not unknown, f"{sorted(unknown)} in {expr}"
    assert PENDING_OPERATOR_SERIES.isdisjoint(operator_series()), \
        "the operator exports it now: drop it from PENDING_OPERATOR_SERIES"


def test_queries_parse_as_promql():
    for expr in queries(render(*MONITORING_VALUES)):
        # Grafana's interval variable is not PromQL; the other variables sit inside label strings.
        tree = promql_parser.parse(expr.replace("$__rate_interval", "5m"))
        selected = [node.name for node in vector_selectors(tree)]
        # Every series selected carries a known prefix, so the name check above saw them all.
        assert selected and set(selected) == set(PREFIXED_NAME.findall(expr)), expr


def test_vllm_series_extraction_covers_dashboard_alerts_and_autoscaling():
    used = vllm_metrics_used(render(*MONITORING_VALUES))
    assert used == VLLM_SERIES
    assert {metric.series for metric in SCALING_METRICS.values()} <= used
    assert vllm_metrics_used([]) == {metric.series for metric in SCALING_METRICS.values()}


def test_exposed_families_read_a_metrics_page():
    page = "\n".join([
        "# HELP vllm:request_success_total Count of successfully processed requests.",
        "# TYPE vllm:request_success counter",
        'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 3.0',
        'vllm:request_success_created{engine="0",finished_reason="stop",model_name="m"} 1.7e+09',
        "# TYPE vllm:time_to_first_token_seconds histogram",
        'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="m"} 0.0',
        'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 1.0',
        'vllm:iteration_tokens_total_bucket{engine="0",le="1.0",model_name="m"} 0.0',
        "python_gc_objects_collected_total 12.0",
        "",
    ])
    families = exposed_families(page)
    assert {"vllm:request_success_total", "vllm:time_to_first_token_seconds", "vllm:iteration_tokens_total",
            "python_gc_objects_collected_total"} <= families
    assert "vllm:request_success" not in families  # a counter is queried with its _total
    assert vllm_metric_names("rate(vllm:time_to_first_token_seconds_bucket[5m])") == {"vllm:time_to_first_token_seconds"}


def _vllm_source_series() -> tuple[set[str], str]:
    loggers = list(env_dir().glob("venv/lib/python3*/site-packages/vllm/v1/metrics/loggers.py"))
    if not loggers or not (env_dir() / ".complete").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING_HINT, pytrace=False)
        pytest.skip(MISSING_HINT)
    source = loggers[0].read_text()
    declared = re.findall(r'_(counter|gauge|histogram)_cls\(\s*name="(vllm:[^"]+)"', source)
    # prometheus_client exposes a counter as <name>_total (unless the name ends so already).
    return {name + "_total" if kind == "counter" and not name.endswith("_total") else name
            for kind, name in declared}, source


def test_vllm_series_are_declared_by_the_pinned_vllm():
    declared, source = _vllm_source_series()
    assert VLLM_SERIES <= declared, f"not in vLLM's loggers.py: {sorted(VLLM_SERIES - declared)}"
    # The dashboard's per-model variable and grouping label.
    assert 'labelnames = ["model_name", "engine"]' in source


@pytest.mark.parametrize("args, complaint", [
    (["--set", "grafanaDashboard.foo=1"], "additional properties 'foo' not allowed"),
    (["--set", "prometheusRule.kvCacheUsage.bogus=1"], "additional properties 'bogus' not allowed"),
    (["--set", "prometheusRule.degraded.threshold=1"], "additional properties 'threshold' not allowed"),
    (["--set", "prometheusRule.kvCacheUsage.threshold=90"], "kvCacheUsage/threshold"),  # a fraction, not percent
    (["--set", "prometheusRule.requestsWaiting.for=5 minutes"], "requestsWaiting/for"),
    (["--set", "prometheusRule.degraded.for=5m1h"], "degraded/for"),  # the CRD wants the largest unit first
    (["--set", "grafanaDashboard.label=not a label"], "grafanaDashboard/label"),
], ids=["unknown-dashboard-key", "unknown-threshold-key", "no-threshold-for-degraded", "percent-not-fraction",
        "bad-duration", "unit-order", "bad-label-key"])
def test_values_schema_refuses_bad_monitoring_values(args, complaint):
    result = helm("template", "rel", str(CHART), *args, check=False)
    assert result.returncode != 0, "helm accepted values the schema should refuse"
    assert complaint in result.stderr


def test_helm_lint_is_strict_clean_with_monitoring_on():
    result = helm("lint", "--strict", str(CHART), *MONITORING_VALUES, "--set", "metrics.serviceMonitor.enabled=true",
                  "--set", "vllmPodMonitor.enabled=true")
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout
