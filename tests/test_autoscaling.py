"""Autoscaling by KEDA: the ScaledObject a role gets, what its query selects, and what reconcile
does with it in a cluster with KEDA and in one without."""

import re

import promql_parser

from llm_operator.k8s import CHILD_KINDS
from llm_operator.render import RenderConfig, render
from llm_operator.render.autoscaling import SCALING_METRICS, pod_pattern
from support import by_kind_and_name, llmd
from test_reconcile import MemoryKube, resource, run

MODEL = {"source": "hf://Qwen/Qwen3-8B"}
WITH_KEDA = (*CHILD_KINDS, "ScaledObject")


def objects(role, **metadata):
    return by_kind_and_name(render(llmd({"llm": {"model": MODEL, **role}}, "team", namespace="ns", **metadata)))


def test_a_keda_role_gets_a_scaled_object_on_its_own_deployment():
    named = objects({"autoscaling": {"maxReplicas": 4}})
    scaled = named[("ScaledObject", "team-llm")]["spec"]
    assert scaled["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "team-llm"}
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"]) == (1, 4)
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert trigger["metadata"]["threshold"] == "4"
    assert trigger["metadata"]["serverAddress"] == RenderConfig().prometheus_url
    assert "vllm:num_requests_waiting{" in trigger["metadata"]["query"]
    assert scaled["cooldownPeriod"] == 300
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"] == {
        "stabilizationWindowSeconds": 300}
    assert "replicas" not in named[("Deployment", "team-llm")]["spec"]  # the HPA's field


def test_the_spec_sets_metric_target_bounds_and_delay():
    role = {"autoscaling": {"minReplicas": 2, "maxReplicas": 8, "metric": "KVCacheUsage", "target": "0.7",
                            "scaleDownDelaySeconds": 60}}
    scaled = objects(role)[("ScaledObject", "team-llm")]["spec"]
    metadata = scaled["triggers"][0]["metadata"]
    assert metadata["query"].startswith("sum(vllm:kv_cache_usage_perc{") and metadata["threshold"] == "0.7"
    assert (scaled["minReplicaCount"], scaled["maxReplicaCount"], scaled["cooldownPeriod"]) == (2, 8, 60)
    assert scaled["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60


def test_external_and_fixed_replicas_get_no_scaled_object():
    assert not [key for key in objects({"autoscaling": {"provider": "External"}}) if key[0] == "ScaledObject"]
    assert not [key for key in objects({"replicas": 2}) if key[0] == "ScaledObject"]


def test_each_metric_query_parses_and_selects_only_the_roles_pods():
    for name, metric in SCALING_METRICS.items():
        role = {"autoscaling": {"maxReplicas": 2, "metric": name}}
        query = objects(role)[("ScaledObject", "team-llm")]["spec"]["triggers"][0]["metadata"]["query"]
        selected = []
        promql_parser.walk(promql_parser.parse(query), lambda node: selected.append(node)
                           if isinstance(node, promql_parser.VectorSelector) else None)
        (selector,) = selected
        assert selector.name == metric.series
        assert 'namespace="ns"' in query
    pods = pod_pattern("team", "llm")  # PromQL anchors its regexes: so does fullmatch
    assert re.fullmatch(pods, "team-llm-7d9c5b8f6-x2k4q")
    for other in ("team-llm-x-llm-7d9c5b8f6-x2k4q", "team-embedding-7d9c5b8f6-x2k4q", "team-llm-cache-0",
                  "steam-llm-7d9c5b8f6-x2k4q"):
        assert not re.fullmatch(pods, other), other


def test_prometheus_url_comes_from_the_operator():
    config = RenderConfig(prometheus_url="http://127.0.0.1:9091")
    spec = llmd({"llm": {"model": MODEL, "autoscaling": {"maxReplicas": 2}}}, "team", namespace="ns")
    scaled = next(o for o in render(spec, config) if o["kind"] == "ScaledObject")
    assert scaled["spec"]["triggers"][0]["metadata"]["serverAddress"] == "http://127.0.0.1:9091"


def autoscaled(**autoscaling):
    return resource({"llm": {"model": MODEL, "autoscaling": {"maxReplicas": 3, **autoscaling}}})


def test_with_keda_the_scaled_object_is_applied_and_the_role_gets_ready():
    kube = MemoryKube(autoscaled())
    kube.child_kinds = WITH_KEDA
    run(kube)
    assert ("ScaledObject", "team-llm") in kube.objects
    kube.roll_out()
    assert run(kube).phase == "Ready"
    assert run(kube).writes == 0


def test_without_keda_nothing_is_applied_for_it_and_status_says_what_to_do():
    kube = MemoryKube(autoscaled())
    result = run(kube)
    assert ("ScaledObject", "team-llm") not in kube.objects and ("Deployment", "team-llm") in kube.objects
    kube.roll_out()
    result = run(kube)
    degraded = next(c for c in kube.llmd["status"]["conditions"] if c["type"] == "Degraded")
    assert result.phase == "Degraded" and degraded["reason"] == "AutoscalerNotInstalled"
    assert "Roles llm" in degraded["message"] and "Install KEDA" in degraded["message"]
    assert "provider: External" in degraded["message"]
    assert run(kube).writes == 0  # reported once, not rewritten on every reconcile


def test_leaving_autoscaling_deletes_the_scaled_object():
    kube = MemoryKube(autoscaled())
    kube.child_kinds = WITH_KEDA
    run(kube)
    kube.llmd = {**resource({"llm": {"model": MODEL, "replicas": 2}}, generation=2), "status": kube.llmd["status"]}
    run(kube)
    assert ("ScaledObject", "team-llm") not in kube.objects
    assert kube.objects[("Deployment", "team-llm")]["spec"]["replicas"] == 2


def test_a_role_scaled_to_zero_by_its_autoscaler_is_idle_not_a_problem():
    kube = MemoryKube(autoscaled(minReplicas=0))
    kube.child_kinds = WITH_KEDA
    run(kube)
    kube.objects[("Deployment", "team-llm")]["spec"]["replicas"] = 0  # what KEDA does after the delay
    kube.roll_out()
    assert run(kube).phase == "Idle"
    conditions = {c["type"]: c for c in kube.llmd["status"]["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Ready"]["reason"] == "Idle"
    assert conditions["Degraded"]["status"] == "False"
    assert run(kube).writes == 0  # the operator leaves it asleep
    assert kube.objects[("Deployment", "team-llm")]["spec"]["replicas"] == 0


def test_scaling_to_zero_adds_a_demand_trigger_that_only_wakes():
    scaled = objects({"autoscaling": {"minReplicas": 0, "maxReplicas": 2}})[("ScaledObject", "team-llm")]["spec"]
    assert scaled["minReplicaCount"] == 0
    queue, demand = scaled["triggers"]
    assert demand["name"] == "demand" and demand["metadata"]["activationThreshold"] == "0"
    assert float(demand["metadata"]["threshold"]) >= 1e6  # never sets the number of pods above one
    query = demand["metadata"]["query"]
    selected = []
    promql_parser.walk(promql_parser.parse(query), lambda node: selected.append(node.name)
                       if isinstance(node, promql_parser.VectorSelector) else None)
    assert set(selected) == {"envoy_cluster_upstream_rq_active", "envoy_cluster_upstream_rq_total",
                             "vllm:num_requests_running"}
    assert 'envoy_cluster_name=~"team_llm(_service)?"' in query
    assert len(objects({"autoscaling": {"minReplicas": 1, "maxReplicas": 2}})[("ScaledObject", "team-llm")]
               ["spec"]["triggers"]) == 1
