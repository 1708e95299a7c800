"""A role's KEDA ScaledObject: its pods' own vLLM metric, read from Prometheus, sets the replicas.

Assumptions, stated in docs/autoscaling.md:
- Prometheus scrapes every vLLM pod and labels each series with the pod's `namespace` and its
  labels `llmops.dev/deployment` and `llmops.dev/role`, as `llmops_dev_deployment` and
  `llmops_dev_role` (the chart's PodMonitor does, by `podTargetLabels`; so does the usual
  `kubernetes_sd` relabelling, a `labelmap` of `__meta_kubernetes_pod_label_(.+)`).
- Those two labels pick exactly the pods of the role's Deployment, whatever the length of the
  LLMDeployment's name (pod names are cut to fit, so no pattern over them can).

The query sums the metric over the role's pods. KEDA's Prometheus trigger divides the sum by the
number of replicas (metric type AverageValue), so `target` is a per-pod value: the HPA adds pods
while the average waiting requests (or running requests, or KV-cache usage) per pod exceeds it.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..api.llmdeployment import LLMDeployment, RoleSpec
from ..names import DEPLOYMENT_LABEL, ROLE_LABEL
from .meta import child_name, labels, object_meta, upstream_stat_name

KEDA_API_VERSION = "keda.sh/v1alpha1"
SCALED_OBJECT = "ScaledObject"
# How often KEDA asks Prometheus (and the HPA asks KEDA): often enough to react within a scrape or two.
POLLING_SECONDS = 15


@dataclass(frozen=True)
class ScalingMetric:
    """One metric the API offers: the vLLM series it reads and the default per-pod target."""

    series: str
    default_target: str
    meaning: str


SCALING_METRICS: dict[str, ScalingMetric] = {
    "RequestsWaiting": ScalingMetric("vllm:num_requests_waiting", "4", "requests queued per pod"),
    "RequestsRunning": ScalingMetric("vllm:num_requests_running", "16", "requests being generated per pod"),
    "KVCacheUsage": ScalingMetric("vllm:kv_cache_usage_perc", "0.8", "KV-cache usage per pod, 0 to 1"),
}
DEFAULT_METRIC = "RequestsWaiting"
DEFAULT_MIN_REPLICAS = 1
DEFAULT_SCALE_DOWN_DELAY_SECONDS = 300


def series_label(pod_label: str) -> str:
    """The Prometheus label a pod label becomes: every character a label name cannot hold is `_`."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def metric_query(series: str, namespace: str, owner: str, role: str) -> str:
    """The sum of one series over the role's pods. Label values here are Kubernetes names (DNS
    labels), so they need no escaping inside PromQL's double quotes."""
    return (f'sum({series}{{namespace="{namespace}",{series_label(DEPLOYMENT_LABEL)}="{owner}",'
            f'{series_label(ROLE_LABEL)}="{role}"}})')


def demand_query(namespace: str, owner: str, role: str) -> str:
    """Whether anyone wants the role, for a role that may be at zero pods (where its pods' own
    metrics do not exist): requests in flight through any gateway of the namespace, requests those
    gateways sent in the last minute, and their retries in the last minute (a held request retries
    about once a second), plus requests running on the role's pods (one that reached the Service
    directly included). The retries are what a request to the role's Service shows at zero pods:
    its connection fails, so Envoy counts no request, only the retry of one."""
    clusters = f'namespace="{namespace}",envoy_cluster_name=~"{upstream_stat_name(owner, role)}(_service)?"'
    parts = (f"sum(envoy_cluster_upstream_rq_active{{{clusters}}})",
             f"sum(increase(envoy_cluster_upstream_rq_total{{{clusters}}}[1m]))",
             f"sum(increase(envoy_cluster_upstream_rq_retry{{{clusters}}}[1m]))",
             metric_query(SCALING_METRICS["RequestsRunning"].series, namespace, owner, role))
    return " + ".join(f"({part} or vector(0))" for part in parts)


def scales_to_zero(role: RoleSpec) -> bool:
    return wants_scaled_object(role) and role.autoscaling is not None and role.autoscaling.minReplicas == 0


def prometheus_namespace(url: str) -> str | None:
    """The namespace of an in-cluster Prometheus Service (`http://<service>.<namespace>.svc[...]`),
    or None for any other address (an IP, a name outside the cluster)."""
    parts = (urllib.parse.urlsplit(url).hostname or "").split(".")
    return parts[1] if len(parts) >= 3 and parts[2] == "svc" else None


def wants_scaled_object(role: RoleSpec) -> bool:
    """Autoscaling by KEDA, the provider when none is named."""
    return role.autoscaling is not None and role.autoscaling.provider != "External"


def scaled_object(llmd: LLMDeployment, role_name: str, role: RoleSpec, prometheus_url: str) -> dict[str, Any]:
    """The ScaledObject of one role with `autoscaling.provider: KEDA`."""
    scaling = role.autoscaling
    assert scaling is not None
    owner, namespace = llmd.metadata.name, llmd.metadata.namespace or "default"
    metric = SCALING_METRICS[scaling.metric or DEFAULT_METRIC]
    delay = DEFAULT_SCALE_DOWN_DELAY_SECONDS if scaling.scaleDownDelaySeconds is None else scaling.scaleDownDelaySeconds
    trigger_metadata = {
        "serverAddress": prometheus_url,
        "query": metric_query(metric.series, namespace, owner, role_name),
        "threshold": scaling.target or metric.default_target,
        # No series (every pod still loading, or none yet) counts as 0, not as an error.
        "ignoreNullValues": "true",
    }
    triggers = [{"type": "prometheus", "metricType": "AverageValue", "metadata": trigger_metadata}]
    if scales_to_zero(role):
        # Wakes the role from zero (KEDA activates a ScaledObject when any trigger's value is above
        # its activationThreshold) and keeps it from zero while requests run. Its target is out of
        # reach on purpose: the number of pods above one is the first trigger's to set.
        triggers.append({"type": "prometheus", "name": "demand", "metricType": "AverageValue", "metadata": {
            "serverAddress": prometheus_url,
            "query": demand_query(namespace, owner, role_name),
            "threshold": "1000000",
            "activationThreshold": "0",
            "ignoreNullValues": "true",
        }})
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": SCALED_OBJECT,
        "metadata": object_meta(child_name(owner, role_name), llmd.metadata.namespace, labels(owner, role_name)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": child_name(owner, role_name)},
            "minReplicaCount": DEFAULT_MIN_REPLICAS if scaling.minReplicas is None else scaling.minReplicas,
            "maxReplicaCount": scaling.maxReplicas,
            "pollingInterval": POLLING_SECONDS,
            # Applies only to the last pod (scaling to zero); scaling down between pods follows the
            # HPA's stabilisation window below. Both are the role's scale-down delay.
            "cooldownPeriod": delay,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {"scaleDown": {"stabilizationWindowSeconds": delay}},
                },
            },
            "triggers": triggers,
        },
    }
