"""Smoke tests of the local control plane itself: the behaviours the operator relies on.

If one of these fails, the operator's e2e failures are about the plane, not the operator.
"""

from __future__ import annotations

import json
import secrets
import time

from workloads import wait_established

GPU = "nvidia.com/gpu"


def _deployment(name: str, gpus: int) -> str:
    return json.dumps({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
                    # An init container too: kwok must complete it for the pod to be Ready.
                    "initContainers": [{"name": "fetch", "image": "busybox:1.36"}],
                    "containers": [{
                        "name": "server",
                        "image": "vllm/vllm-openai:latest",
                        "resources": {"limits": {GPU: str(gpus)}},
                    }],
                },
            },
        },
    })


def _get(cluster, namespace: str, *what: str) -> dict:
    return json.loads(cluster.kubectl("-n", namespace, "get", *what, "-o", "json").stdout)


def _poll(predicate, timeout: float, interval: float = 0.5):
    """Returns the first truthy value of predicate(), or the last value at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_nodes_have_gpus_and_taint(cluster):
    nodes = json.loads(cluster.kubectl("get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o", "json").stdout)
    items = nodes["items"]
    assert len(items) == cluster.plane.cfg.nodes
    for node in items:
        assert node["status"]["allocatable"][GPU] == str(cluster.plane.cfg.gpus_per_node)
        assert {"key": GPU, "effect": "NoSchedule"} in node["spec"]["taints"]
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["status"]["conditions"]


def test_gpu_deployment_becomes_available(cluster, namespace):
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=_deployment("fits", 2))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Available", "deployment/fits", "--timeout=90s")
    pods = _get(cluster, namespace, "pods", "-l", "app=fits")["items"]
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    assert pod["spec"]["nodeName"].startswith("kwok-gpu-")
    assert pod["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    assert all(c["ready"] for c in pod["status"]["containerStatuses"])


def test_too_many_gpus_stays_pending_unschedulable(cluster, namespace):
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=_deployment("too-big", 100))

    def scheduled_condition():
        for pod in _get(cluster, namespace, "pods", "-l", "app=too-big")["items"]:
            for cond in pod["status"].get("conditions", []):
                if cond["type"] == "PodScheduled" and cond["status"] == "False":
                    return pod, cond
        return None

    found = _poll(scheduled_condition, timeout=60)
    assert found, "The scheduler never reported the 100-GPU pod as unschedulable"
    pod, cond = found
    assert cond["reason"] == "Unschedulable"
    assert f"Insufficient {GPU}" in cond["message"], cond["message"]
    # It must stay Pending: nothing (kwok included) may move an unscheduled pod on.
    time.sleep(3)
    pod = _get(cluster, namespace, "pod", pod["metadata"]["name"])
    assert pod["status"]["phase"] == "Pending"
    assert not pod["spec"].get("nodeName")


def test_deleting_owner_garbage_collects_dependents(cluster, namespace):
    cluster.kubectl("-n", namespace, "create", "configmap", "owner", "--from-literal=k=v")
    owner = _get(cluster, namespace, "configmap", "owner")
    dependent = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "dependent",
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                 "uid": owner["metadata"]["uid"]}],
        },
        "data": {"k": "v"},
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(dependent))
    assert cluster.kubectl("-n", namespace, "get", "configmap", "dependent", check=False).returncode == 0

    cluster.kubectl("-n", namespace, "delete", "configmap", "owner")

    def dependent_gone():
        proc = cluster.kubectl("-n", namespace, "get", "configmap", "dependent", check=False)
        return proc.returncode != 0 and "NotFound" in proc.stderr

    assert _poll(dependent_gone, timeout=60), "The garbage collector left the dependent ConfigMap behind"


def test_crd_cel_rule_rejects_bad_object(cluster, namespace):
    group = f"smoke{secrets.token_hex(3)}.e2e.llmops.dev"
    message = "spec.replicas must not exceed spec.maxReplicas"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "properties": {"replicas": {"type": "integer"}, "maxReplicas": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.replicas <= self.maxReplicas",
                                                      "message": message}],
                    }},
                }},
            }],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(crd))
    try:
        wait_established(cluster.kubectl, f"widgets.{group}")

        def widget(name: str, replicas: int) -> str:
            return json.dumps({"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": name},
                               "spec": {"replicas": replicas, "maxReplicas": 3}})

        # Discovery of a brand-new group can lag Established by a moment: retry the good one.
        good = _poll(lambda: cluster.kubectl("-n", namespace, "apply", "-f", "-", input=widget("good", 2),
                                             check=False).returncode == 0, timeout=30)
        assert good, "A valid Widget was not accepted"
        bad = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=widget("bad", 5), check=False)
        assert bad.returncode != 0, "A Widget breaking the CEL rule was accepted"
        assert message in bad.stderr, bad.stderr
        assert "Invalid" in bad.stderr, bad.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_server_side_apply_twice_keeps_resource_version(cluster, namespace):
    cm = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"},
                     "data": {"model": "qwen"}})
    apply = ("-n", namespace, "apply", "--server-side", "--field-manager=smoke", "-f", "-", "-o", "json",
             "--show-managed-fields")
    first = json.loads(cluster.kubectl(*apply, input=cm).stdout)
    second = json.loads(cluster.kubectl(*apply, input=cm).stdout)
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    managers = [m["manager"] for m in second["metadata"]["managedFields"]]
    assert managers == ["smoke"], managers

    # The audit log records both applies (as patch requests): later tests count writes this way.
    def applies_logged():
        events = []
        for line in cluster.audit_log.read_text().splitlines():
            ev = json.loads(line)
            ref = ev.get("objectRef", {})
            if ref.get("namespace") == namespace and ref.get("name") == "applied" and ev["verb"] == "patch":
                events.append(ev)
        return events

    logged = _poll(lambda: len(applies_logged()) >= 2 and applies_logged(), timeout=10)
    assert logged and len(logged) == 2, logged
    assert all(ev["stage"] == "ResponseComplete" and ev["level"] == "Metadata" for ev in logged)
