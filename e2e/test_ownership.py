"""Status that never lies and objects that are never taken, against the real control plane (pods
on kwok's simulated GPU nodes): a new generation is not Ready before it rolls out, a quota's
refusal is reported, other owners' objects are left alone, an autoscaler owns replicas, and of
two operators only the Lease holder writes."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

from operator_process import OPERATOR_USER, OperatorProcess, audit_lines, audit_writes, eventually
from workloads import apply, condition, example, get, wait_ready


def _statuses_seen(cluster, namespace, name, change, seconds):
    """Every version of the resource the API server sends to a watch while `change()` runs."""
    watch = subprocess.Popen([str(cluster.bin("kubectl")), f"--kubeconfig={cluster.kubeconfig}", "-n", namespace, "get",
                              "llmd", name, "--watch", "--output-watch-events", "-o", "json"],
                             stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1)  # the watch's initial ADDED event
        change()
        time.sleep(seconds)
    finally:
        watch.send_signal(signal.SIGTERM)
        output, _ = watch.communicate(timeout=10)
    decoder, position, seen = json.JSONDecoder(), 0, []
    while position < len(output):
        if output[position].isspace():
            position += 1
            continue
        event, position = decoder.raw_decode(output, position)
        seen.append(event["object"])
    return seen


def test_a_new_generation_is_not_ready_before_it_rolls_out(cluster, operator, namespace):
    manifest = example("minimal.yaml")
    apply(cluster, namespace, manifest)
    wait_ready(cluster, namespace, "qwen-mini")
    generation = get(cluster, namespace, "llmd", "qwen-mini")["metadata"]["generation"]
    # The new pods can never be scheduled: the rollout of generation+1 cannot finish.
    manifest["spec"]["llm"]["scheduling"] = {"nodeSelector": {"llmops.dev/no-such-node": "true"}}
    seen = _statuses_seen(cluster, namespace, "qwen-mini", lambda: apply(cluster, namespace, manifest), 8)
    new = [o["status"] for o in seen if (o.get("status") or {}).get("observedGeneration") == generation + 1]
    print(f"\nStatuses of generation {generation + 1}: {[s['phase'] for s in new]}")
    assert new, "the operator never reported on the new generation"
    assert all(s["phase"] != "Ready" for s in new)
    assert all(condition({"status": s}, "Ready")["status"] == "False" for s in new)


def test_a_quota_that_refuses_the_pods_is_reported(cluster, operator, namespace):
    cluster.kubectl("-n", namespace, "create", "quota", "gpus", "--hard=requests.nvidia.com/gpu=0")
    apply(cluster, namespace, example("minimal.yaml"))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Degraded", "llmd/qwen-mini", "--timeout=60s", timeout=70)
    ready = condition(get(cluster, namespace, "llmd", "qwen-mini"), "Ready")
    print(f"\nReplicaFailure: {ready['message']}")
    assert ready["reason"] == "ReplicaFailure" and "exceeded quota: gpus" in ready["message"]


def test_objects_the_operator_did_not_make_are_never_taken(cluster, operator, namespace):
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "team-cache"},
         "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                  "storageClassName": "teams-own"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "team-llm"},
         "spec": {"selector": {"app": "teams-own"}, "ports": [{"port": 80}]}}]}))
    manifest = example("minimal.yaml")
    manifest["metadata"]["name"] = "team"
    manifest["spec"]["cache"] = {"size": "10Gi"}
    apply(cluster, namespace, manifest)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Degraded", "llmd/team", "--timeout=60s", timeout=70)
    degraded = condition(get(cluster, namespace, "llmd", "team"), "Degraded")
    print(f"\nNameConflict: {degraded['message']}")
    assert degraded["reason"] == "NameConflict"
    assert "PersistentVolumeClaim team-cache" in degraded["message"] and "Service team-llm" in degraded["message"]
    for kind, name in (("pvc", "team-cache"), ("service", "team-llm")):
        assert not get(cluster, namespace, kind, name)["metadata"].get("ownerReferences"), f"{kind} {name} was taken"
    assert get(cluster, namespace, "service", "team-llm")["spec"]["selector"] == {"app": "teams-own"}
    # Its pods would mount the team's claim read-write and download into it: not made while it is held.
    assert get(cluster, namespace, "deployment", "team-llm") is None
    assert "applies nothing that would use it" in degraded["message"]

    cluster.kubectl("-n", namespace, "delete", "llmd", "team", "--wait=true", "--timeout=60s")
    time.sleep(2)
    assert get(cluster, namespace, "pvc", "team-cache") is not None and get(cluster, namespace, "service", "team-llm")


def _deployment_writes(cluster, namespace, since):
    return {k: v for k, v in audit_writes(cluster.audit_log, OPERATOR_USER, since_line=since, namespace=namespace).items()
            if k.split(" ", 1)[1].startswith("deployments")}


def test_an_autoscaler_owns_replicas(cluster, operator, namespace):
    """With autoscaling, the operator never writes replicas: not when an HPA scales (through the
    scale subresource, as below), and not when a role switches over from `replicas`."""
    manifest = example("minimal.yaml")
    manifest["spec"]["llm"]["replicas"] = 2
    apply(cluster, namespace, manifest)
    wait_ready(cluster, namespace, "qwen-mini")
    del manifest["spec"]["llm"]["replicas"]
    manifest["spec"]["llm"]["autoscaling"] = {"provider": "External"}
    apply(cluster, namespace, manifest)
    eventually(lambda: get(cluster, namespace, "llmd", "qwen-mini")["status"]["observedGeneration"] == 2, 15,
               what="the switch reconciled")
    wait_ready(cluster, namespace, "qwen-mini")
    assert get(cluster, namespace, "deployment", "qwen-mini-llm")["spec"]["replicas"] == 2  # handed over, not reset

    before = audit_lines(cluster.audit_log)
    cluster.kubectl("-n", namespace, "scale", "deployment", "qwen-mini-llm", "--replicas=3")
    eventually(lambda: get(cluster, namespace, "llmd", "qwen-mini")["status"]["roles"]["llm"]["replicas"] == 3, 30,
               what="status follows the autoscaler")
    wait_ready(cluster, namespace, "qwen-mini")
    time.sleep(3)
    assert get(cluster, namespace, "deployment", "qwen-mini-llm")["spec"]["replicas"] == 3
    assert _deployment_writes(cluster, namespace, before) == {}


def _reconciles(process: OperatorProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in process.metrics().splitlines()
               if line.startswith("llmops_reconciles_total{"))


def test_of_two_operators_only_the_lease_holder_writes(cluster, crd, operator_kubeconfig, alone, namespace):
    """Two operators of this test's own, sharing one Lease in its namespace, and no other."""
    logs = Path(cluster.state_dir) / "logs"
    pair = [OperatorProcess(operator_kubeconfig, logs / f"operator-pair-{i}.log", namespaces=(namespace,),
                            lease=(namespace, "pair"), extra_args=("--lease-seconds=10",)) for i in (0, 1)]
    try:
        pair[0].start()
        pair[1].start(lead=False)
        manifest = example("minimal.yaml")
        manifest["spec"]["llm"]["replicas"] = 0
        apply(cluster, namespace, manifest)
        wait_ready(cluster, namespace, "qwen-mini", timeout=60)
        time.sleep(2)
        counts = [_reconciles(p) for p in pair]
        print(f"\nReconciles of the two operators: {counts}")
        assert counts[0] > 0 and counts[1] == 0, "only the first, which holds the Lease, reconciles"
        leader, follower = pair
        assert leader.leading() and not follower.leading()

        leader.process.kill()  # no clean release: the follower must wait for the Lease to expire
        leader.process.wait()
        killed = time.monotonic()
        manifest["spec"]["llm"]["replicas"] = 1
        apply(cluster, namespace, manifest)
        eventually(lambda: get(cluster, namespace, "deployment", "qwen-mini-llm")["spec"]["replicas"] == 1, 40,
                   interval=0.5, what="the follower took over")
        took_over = time.monotonic() - killed
        print(f"Follower took over and applied the change {took_over:.1f}s after the leader was killed (Lease 10s)")
        assert took_over < 10 + 2 + 5  # Lease duration + retry period + one reconcile
        assert follower.leading() and eventually(lambda: _reconciles(follower) > 0, 10, what="follower reconciled")
    finally:
        for process in pair:
            process.stop()
