"""Autoscaling by KEDA: the ScaledObject a role gets, what its query selects, and what reconcile
does with it in a cluster with KEDA and in one without."""

import promql_parser

from fakes import MemoryKube, resource, run
from llm_operator.k8s import CHILD_KINDS
from llm_operator.render import RenderConfig, render
from llm_operator.render.autoscaling import SCALING_METRICS, prometheus_namespace
from support import by_kind_and_name, llmd, vector_selectors

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
        (selector,) = vector_selectors(promql_parser.parse(query))
        assert selector.name == metric.series
        assert 'namespace="ns"' in query
        matchers = {m.name: (str(m.op), m.value) for m in selector.matchers.matchers if m.name != "__name__"}
        assert matchers == {"namespace": ("MatchOp.Equal", "ns"), "llmops_dev_deployment": ("MatchOp.Equal", "team"),
                            "llmops_dev_role": ("MatchOp.Equal", "llm")}, query


def test_the_query_picks_the_role_s_pods_by_the_labels_of_its_pod_template_whatever_the_name_s_length():
    """The API server cuts a pod's generated name to 58 characters, which drops the `-` after the
    ReplicaSet hash of a long LLMDeployment's pods: a name pattern would match none of them."""
    name = "n" * 53  # the longest the CRD allows
    rendered = objects({"autoscaling": {"maxReplicas": 2}}) | by_kind_and_name(render(llmd(
        {"llm": {"model": MODEL, "autoscaling": {"maxReplicas": 2}}}, name, namespace="ns")))
    for owner in ("team", name):
        pod_labels = rendered[("Deployment", f"{owner}-llm")]["spec"]["template"]["metadata"]["labels"]
        query = rendered[("ScaledObject", f"{owner}-llm")]["spec"]["triggers"][0]["metadata"]["query"]
        series_labels = {m.name: m.value for m in vector_selectors(promql_parser.parse(query))[0].matchers.matchers}
        assert "pod" not in series_labels
        assert series_labels["llmops_dev_deployment"] == pod_labels["llmops.dev/deployment"] == owner
        assert series_labels["llmops_dev_role"] == pod_labels["llmops.dev/role"] == "llm"


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
    selected = [node.name for node in vector_selectors(promql_parser.parse(query))]
    # At zero pods a request to the role's Service fails to connect: Envoy counts its retries only.
    assert set(selected) == {"envoy_cluster_upstream_rq_active", "envoy_cluster_upstream_rq_total",
                             "envoy_cluster_upstream_rq_retry", "vllm:num_requests_running"}
    assert 'envoy_cluster_name=~"team_llm(_service)?"' in query
    assert len(objects({"autoscaling": {"minReplicas": 1, "maxReplicas": 2}})[("ScaledObject", "team-llm")]
               ["spec"]["triggers"]) == 1


def test_a_role_at_zero_under_an_external_autoscaler_is_not_said_to_wake_through_the_gateway():
    kube = MemoryKube(resource({"llm": {"model": MODEL, "autoscaling": {"provider": "External"}}}))
    run(kube)
    kube.objects[("Deployment", "team-llm")]["spec"]["replicas"] = 0  # what the user's autoscaler did
    kube.roll_out()
    assert run(kube).phase == "Idle"
    ready = next(c for c in kube.llmd["status"]["conditions"] if c["type"] == "Ready")
    assert "LLMGateway" not in ready["message"] and "provider External" in ready["message"], ready["message"]


def test_a_network_policy_that_keeps_prometheus_out_is_a_problem_named_with_its_fix():
    """A NetworkPolicy cannot let in /metrics alone: Prometheus's namespace must be allowed."""
    def with_namespaces(*namespaces):
        kube = MemoryKube(resource({"llm": {"model": MODEL, "autoscaling": {"maxReplicas": 3}},
                                    "service": {"allowedNamespaces": list(namespaces)}}))
        kube.child_kinds = WITH_KEDA
        run(kube)
        kube.roll_out()
        return run(kube), next(c for c in kube.llmd["status"]["conditions"] if c["type"] == "Degraded")

    result, degraded = with_namespaces("team-a")
    assert result.phase == "Degraded" and degraded["reason"] == "MetricsBlocked"
    assert "Add monitoring to service.allowedNamespaces" in degraded["message"]  # the default --prometheus-url's
    result, degraded = with_namespaces("team-a", "monitoring")
    assert result.phase == "Ready" and degraded["status"] == "False"
    assert prometheus_namespace("http://prometheus-operated.monitoring.svc:9090") == "monitoring"
    assert prometheus_namespace("http://kube-prometheus.obs.svc.cluster.local:9090") == "obs"
    assert prometheus_namespace("http://127.0.0.1:9090") is None
