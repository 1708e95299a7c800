"""The operator process against the real control plane: apply, roll out, edit, drift, delete,
bad input, restart. Pods run on kwok's simulated GPU nodes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from invalid_specs import CASES  # shared with the unit tests (tests/ is on pytest's pythonpath)
from operator_process import (
    OPERATOR_USER,
    OperatorProcess,
    audit_lines,
    audit_writes,
    eventually,
)
from workloads import apply, condition, deploy_rag_stack, example, get, llm_args, names, wait_ready

ROLES = ("llm", "embedding", "rerank")


# ------------------------------------------------------------------ tests


def test_rag_stack_rolls_out_to_ready(cluster, operator, namespace):
    started = time.monotonic()
    deploy_rag_stack(cluster, namespace)
    selector = "llmops.dev/deployment=rag-stack"
    expected = [f"rag-stack-{role}" for role in sorted(ROLES)]
    eventually(lambda: names(cluster, namespace, "deployment", selector) == expected, 10, what="3 Deployments")
    eventually(lambda: names(cluster, namespace, "service", selector) == expected, 10, what="3 Services")
    wait_ready(cluster, namespace, "rag-stack")
    seconds = time.monotonic() - started
    print(f"\nApply to Ready: {seconds:.1f}s")

    gpu_nodes = {n["metadata"]["name"] for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
                 if "nvidia.com/gpu" in n["status"].get("allocatable", {})}
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    assert len(pods) == 3 and {p["spec"]["nodeName"] for p in pods} <= gpu_nodes

    llmd = get(cluster, namespace, "llmd", "rag-stack")
    assert llmd["status"]["phase"] == "Ready" and llmd["status"]["rolesReady"] == "3/3"
    assert llmd["status"]["observedGeneration"] == llmd["metadata"]["generation"]
    for role in ROLES:
        assert llmd["status"]["roles"][role]["url"] == f"http://rag-stack-{role}.{namespace}.svc:8000/v1"
    assert llmd["status"]["roles"]["llm"]["servedName"] == "qwen3-8b"
    assert "e2e-secret" not in json.dumps(llmd) + json.dumps(get(cluster, namespace, "deployment", "rag-stack-llm"))
    printed = cluster.kubectl("-n", namespace, "get", "llmd", "rag-stack").stdout
    assert "Ready" in printed and "3/3" in printed and "qwen3-8b" in printed


def test_spec_change_reaches_the_deployment(cluster, operator, namespace):
    deploy_rag_stack(cluster, namespace)
    wait_ready(cluster, namespace, "rag-stack")
    cluster.kubectl("-n", namespace, "patch", "llmd", "rag-stack", "--type=merge",
                    "-p", '{"spec": {"llm": {"engine": {"maxModelLen": 8192}}}}')
    eventually(lambda: llm_args(cluster, namespace)[llm_args(cluster, namespace).index("--max-model-len") + 1]
               == "8192", 10, what="--max-model-len 8192 in the Deployment")
    llmd = eventually(lambda: (o := get(cluster, namespace, "llmd", "rag-stack"))["status"]["observedGeneration"] == 2
                      and o, 15, what="observedGeneration 2")
    assert condition(llmd, "Ready")["observedGeneration"] == 2
    wait_ready(cluster, namespace, "rag-stack")


def test_drift_in_children_is_undone(cluster, operator, namespace):
    deploy_rag_stack(cluster, namespace)
    wait_ready(cluster, namespace, "rag-stack")
    original_args = llm_args(cluster, namespace)
    original_image = get(cluster, namespace, "deployment", "rag-stack-llm")["spec"]["template"]["spec"]["containers"][0]["image"]

    cluster.kubectl("-n", namespace, "scale", "deployment/rag-stack-llm", "--replicas=3")
    eventually(lambda: get(cluster, namespace, "deployment", "rag-stack-llm")["spec"]["replicas"] == 1, 10,
               what="replicas back to 1")

    cluster.kubectl("-n", namespace, "set", "image", "deployment/rag-stack-llm", "vllm=attacker/vllm:latest")
    eventually(lambda: get(cluster, namespace, "deployment", "rag-stack-llm")["spec"]["template"]["spec"]
               ["containers"][0]["image"] == original_image, 10, what="image restored")

    cluster.kubectl("-n", namespace, "patch", "deployment", "rag-stack-llm", "--type=json", "-p",
                    json.dumps([{"op": "replace", "path": "/spec/template/spec/containers/0/args/1", "value": "--x"}]))
    eventually(lambda: llm_args(cluster, namespace) == original_args, 10, what="arguments restored")

    uid = get(cluster, namespace, "service", "rag-stack-embedding")["metadata"]["uid"]
    cluster.kubectl("-n", namespace, "delete", "service", "rag-stack-embedding")
    eventually(lambda: (s := get(cluster, namespace, "service", "rag-stack-embedding")) and s["metadata"]["uid"] != uid,
               10, what="Service recreated")


def test_removing_a_role_deletes_its_objects(cluster, operator, namespace):
    deploy_rag_stack(cluster, namespace)
    wait_ready(cluster, namespace, "rag-stack")
    cluster.kubectl("-n", namespace, "patch", "llmd", "rag-stack", "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/rerank"}]')
    eventually(lambda: get(cluster, namespace, "deployment", "rag-stack-rerank") is None
               and get(cluster, namespace, "service", "rag-stack-rerank") is None, 10, what="rerank objects deleted")
    assert get(cluster, namespace, "deployment", "rag-stack-llm") is not None
    eventually(lambda: (o := get(cluster, namespace, "llmd", "rag-stack"))["status"].get("rolesReady") == "2/2"
               and "rerank" not in o["status"]["roles"], 15, what="status without rerank")


def test_gpu_shortage_is_reported_not_silent(cluster, operator, namespace):
    manifest = example("minimal.yaml")
    manifest["spec"]["llm"]["gpus"] = 16  # no simulated node has 16 GPUs
    apply(cluster, namespace, manifest)
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Degraded", "llmd/qwen-mini", "--timeout=60s", timeout=70)
    llmd = get(cluster, namespace, "llmd", "qwen-mini")
    ready = condition(llmd, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InsufficientGPU"
    assert "Insufficient nvidia.com/gpu" in ready["message"]
    assert llmd["status"]["phase"] == "Degraded"
    events = cluster.kubectl("-n", namespace, "get", "events", "--field-selector", "involvedObject.name=qwen-mini").stdout
    assert "InsufficientGPU" in events


def test_an_autoscaler_asking_for_more_than_the_gpus_fit_leaves_a_serving_model_ready(cluster, operator, namespace):
    """Each pod takes a whole simulated node (8 GPUs); the autoscaler (here: `kubectl scale`, as an
    HPA would) asks for one more pod than there are nodes. The pods that run serve: the model stays
    Ready, and Progressing says how many the autoscaler wanted and why the rest wait."""
    nodes = [n for n in json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
             if int(n["status"].get("allocatable", {}).get("nvidia.com/gpu", 0)) >= 8]
    manifest = example("minimal.yaml")
    manifest["spec"]["llm"].update(gpus=8, autoscaling={"provider": "External"})
    apply(cluster, namespace, manifest)
    wait_ready(cluster, namespace, "qwen-mini")
    wanted = len(nodes) + 1
    cluster.kubectl("-n", namespace, "scale", "deployment/qwen-mini-llm", f"--replicas={wanted}")

    def scaling_up():
        llmd = get(cluster, namespace, "llmd", "qwen-mini")
        progressing = condition(llmd, "Progressing")
        return llmd if progressing.get("reason") == "ScalingUp" and "Insufficient" in progressing["message"] else None

    llmd = eventually(scaling_up, 60, interval=1, what="Progressing ScalingUp on the LLMDeployment")
    print(f"\nScalingUp: {condition(llmd, 'Progressing')['message']}")
    assert llmd["status"]["phase"] == "Ready" and condition(llmd, "Ready")["status"] == "True"
    assert condition(llmd, "Degraded")["status"] == "False"
    assert f"wants {wanted} replicas" in condition(llmd, "Progressing")["message"]
    assert llmd["status"]["roles"]["llm"]["replicas"] == wanted and llmd["status"]["roles"]["llm"]["readyReplicas"] >= 1
    pending = [p for p in json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
               if p["status"].get("phase") == "Pending"]
    assert pending, "every pod was placed: the test needs one that waits for GPUs"


def test_deleting_the_resource_removes_every_child(cluster, operator, namespace):
    deploy_rag_stack(cluster, namespace)
    eventually(lambda: len(names(cluster, namespace, "deployment", "llmops.dev/deployment=rag-stack")) == 3, 10,
               what="children created")
    cluster.kubectl("-n", namespace, "delete", "llmd", "rag-stack", "--wait=true", "--timeout=60s")
    selector = "llmops.dev/deployment=rag-stack"
    eventually(lambda: not any(names(cluster, namespace, kind, selector)
                               for kind in ("deployment", "service", "pvc", "replicaset")),
               60, what="children garbage-collected")


def test_invalid_resources_are_refused_with_the_field(cluster, crd, namespace):
    assert len(CASES) >= 10
    for case in CASES:
        manifest = {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment",
                    "metadata": {"name": case.name}, "spec": case.spec}
        result = cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(manifest), check=False)
        assert result.returncode != 0, f"{case.id}: the API server accepted it"
        for fragment in case.server_says:
            assert fragment in result.stderr, f"{case.id}: {fragment!r} not in {result.stderr!r}"


def test_restart_with_unchanged_resources_writes_nothing(cluster, crd, operator, operator_kubeconfig, namespace):
    """20 settled resources, operator restarted: the API server's audit log shows zero writes by it."""
    operator.stop()  # this test runs its own operator, limited to its namespace
    log = Path(cluster.state_dir) / "logs" / "operator-restart.log"
    mine = OperatorProcess(operator_kubeconfig, log, namespaces=(namespace,))
    try:
        mine.start()
        for index in range(20):
            manifest = example("minimal.yaml")
            manifest["metadata"]["name"] = f"model-{index:02d}"
            manifest["spec"]["llm"]["replicas"] = 0  # settled without holding GPUs other tests need
            # Quantities the API server stores in another form ("500m", "64Gi", "2Gi"): not a change.
            manifest["spec"]["llm"]["resources"] = {"cpu": "0.5", "memory": "65536Mi"}
            manifest["spec"]["llm"]["shmSize"] = "2048Mi"
            apply(cluster, namespace, manifest)
        for index in range(20):
            wait_ready(cluster, namespace, f"model-{index:02d}", timeout=60)
        mine.stop()

        before = audit_lines(cluster.audit_log)
        mine.start()
        eventually(lambda: _reconciles(mine.metrics()) >= 20, 30, what="20 reconciles after restart")
        time.sleep(3)  # let any late write arrive before counting
        writes = audit_writes(cluster.audit_log, OPERATOR_USER, since_line=before)
        lease = {verb: count for verb, count in writes.items() if verb.endswith(" leases")}
        writes = {verb: count for verb, count in writes.items() if verb not in lease}
        print(f"\nWrite requests after restart with 20 unchanged LLMDeployments: {sum(writes.values())} {writes} "
              f"(and leader election's own: {lease})")
        assert writes == {}
        assert "llmops_api_writes_total" not in _nonzero_samples(mine.metrics())
    finally:
        mine.stop()
        operator.start()


def _reconciles(metrics: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("llmops_reconciles_total{"))


def _nonzero_samples(metrics: str) -> str:
    return "\n".join(line for line in metrics.splitlines()
                     if line and not line.startswith("#") and float(line.rsplit(" ", 1)[1]) != 0)


def test_spec_the_cluster_refuses_fails_once_without_retry_storm(cluster, operator, namespace):
    """The CRD passes affinity through; the API server refuses the Deployment. Failed, quietly, until fixed."""
    manifest = example("minimal.yaml")
    manifest["spec"]["llm"]["scheduling"] = {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}}
    apply(cluster, namespace, manifest)
    failed = eventually(lambda: (o := get(cluster, namespace, "llmd", "qwen-mini")) and
                        o.get("status", {}).get("phase") == "Failed" and o, 15, what="phase Failed")
    ready = condition(failed, "Ready")
    assert ready["reason"] == "ApplyFailed" and "nodeSelectorTerms" in ready["message"]
    # Failed may be another operator's report (a running `make demo`'s): wait for this one's own
    # refused apply, then for quiet.
    eventually(lambda: audit_writes(cluster.audit_log, OPERATOR_USER, namespace=namespace).get("patch deployments"),
               15, what="this operator's refused apply")
    time.sleep(1)
    failed = get(cluster, namespace, "llmd", "qwen-mini")

    before = audit_lines(cluster.audit_log)
    time.sleep(5)
    writes = audit_writes(cluster.audit_log, OPERATOR_USER, since_line=before, namespace=namespace)
    assert writes == {}, f"the operator kept writing after Failed: {writes}"
    assert get(cluster, namespace, "llmd", "qwen-mini")["metadata"]["resourceVersion"] == \
        failed["metadata"]["resourceVersion"]

    cluster.kubectl("-n", namespace, "patch", "llmd", "qwen-mini", "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/llm/scheduling"}]')
    wait_ready(cluster, namespace, "qwen-mini", timeout=60)


def test_kubectl_explain_documents_the_fields(cluster, crd):
    explained = cluster.kubectl("explain", "llmd.spec.llm.engine").stdout
    for field in ("maxModelLen", "gpuMemoryUtilization", "toolCallParser", "reasoningParser", "extraArgs"):
        assert field in explained
    assert "--tool-call-parser" in explained  # descriptions come from the pydantic models
