"""The vLLM series the chart's monitoring and the operator's ScaledObjects query, and the families a
/metrics page exposes: tests/test_chart_monitoring.py checks the chart with them, and
e2e/test_serving.py checks the same names against a real vLLM pod."""

from __future__ import annotations

import re
from collections.abc import Iterable

from llm_operator.render.autoscaling import SCALING_METRICS

# The chart's values that turn on its dashboard and alerting rules.
MONITORING_VALUES = ("--set", "grafanaDashboard.enabled=true", "--set", "prometheusRule.enabled=true")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
VLLM_NAME = re.compile(r"vllm:[A-Za-z0-9_:]*[A-Za-z0-9_]")


def metric_family(name: str) -> str:
    """The family a sample name belongs to: a histogram's _bucket/_sum/_count map to the histogram."""
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)]
    return name


def vllm_metric_names(*texts: str) -> set[str]:
    """The families of every `vllm:` name in the texts (queries, dashboard JSON)."""
    return {metric_family(name) for text in texts for name in VLLM_NAME.findall(text)}


def vllm_metrics_used(rendered: Iterable[dict]) -> set[str]:
    """The vLLM series families queried by the rendered chart's dashboard (every ConfigMap: the
    dashboard is the chart's only one) and PrometheusRule, and by the operator's ScaledObjects."""
    texts = [metric.series for metric in SCALING_METRICS.values()]
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            texts += doc["data"].values()
        elif doc["kind"] == "PrometheusRule":
            texts += [rule["expr"] for group in doc["spec"]["groups"] for rule in group["rules"]]
    return vllm_metric_names(*texts)


def exposed_families(metrics_text: str) -> set[str]:
    """The families of the samples in a Prometheus text exposition (/metrics), comments skipped."""
    names = (line.split("{", 1)[0].split(" ", 1)[0] for line in metrics_text.splitlines()
             if line and not line.startswith("#"))
    return {metric_family(name) for name in names}
