"""kubectl helpers the e2e tests share: read objects, apply examples, wait for conditions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import yaml

from operator_process import REPO


def get(cluster, namespace, kind, name):
    result = cluster.kubectl("-n", namespace, "get", kind, name, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def names(cluster, namespace, kind, selector):
    result = cluster.kubectl("-n", namespace, "get", kind, "-l", selector, "-o", "json")
    return sorted(item["metadata"]["name"] for item in json.loads(result.stdout)["items"])


def example(name="rag-stack.yaml"):
    return yaml.safe_load((REPO / "examples" / name).read_text())


def apply(cluster, namespace, manifest):
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(manifest))


def condition(obj, kind):
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def wait_ready(cluster, namespace, name, timeout=120):
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", f"llmd/{name}", f"--timeout={timeout}s",
                    timeout=timeout + 10)


def deploy_rag_stack(cluster, namespace):
    """The RAG-stack example with what it needs: its API-key Secret and a volume for its cache claim."""
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "llm-api-key", "--from-literal=api-key=e2e-secret")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{namespace}-cache"},
        "spec": {"capacity": {"storage": "200Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
                 "persistentVolumeReclaimPolicy": "Delete", "hostPath": {"path": f"/tmp/{namespace}"},
                 "claimRef": {"namespace": namespace, "name": "rag-stack-cache"}}}))
    apply(cluster, namespace, example())


def llm_args(cluster, namespace):
    deployment = get(cluster, namespace, "deployment", "rag-stack-llm")
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")["args"]


def wait_established(kubectl: Callable, crd: str, timeout: float = 60) -> None:
    """Wait for a CRD to be served. `kubectl wait --for=condition=Established` alone fails at once
    (".status.conditions accessor error") when it reads the CRD before the API server has written
    any condition, which happens right after a create on a busy machine: so retry until it waits."""
    deadline = time.monotonic() + timeout
    while True:
        result = kubectl("wait", "--for=condition=Established", f"crd/{crd}", f"--timeout={timeout:.0f}s", check=False)
        if result.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"CRD {crd} not Established within {timeout:.0f}s: {result.stderr.strip()}")
        time.sleep(0.5)
