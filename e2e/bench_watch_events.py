"""`make bench-watch-events`: what one pod watch event costs the operator's watch cache, and what
it would cost through kopf's own watch and an index (`@kopf.index`), the alternative weighed in
docs/performance.md ("The watch cache, or kopf's indices").

    .venv/bin/python e2e/bench_watch_events.py [--events 20000]

The pod is the one a role of examples/cpu-rag-stack.yaml runs: its spec as rendered, with the
metadata and status the API server and the kubelet add (managedFields included, as watch events
carry them). Both paths start from the event's bytes and end with what reconcile reads (the slim
pod of k8s/cache.py). kopf's path here is only its lower bound: the parse and the body wrapper that
every event goes through before an index function sees it, not its queues and handler machinery.
Needs no cluster; prints microseconds per event. Not part of `make test`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kopf
import yaml

from llm_operator.api import parse_llmdeployment
from llm_operator.k8s.cache import _POD_EVENT, POD_METADATA
from llm_operator.render import render

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cpu-rag-stack.yaml"
STAMP = "2026-12-07T10:00:00Z"


def running_pod(template: dict[str, Any]) -> dict[str, Any]:
    """A pod of the Deployment's template as the API server sends it once the kubelet reported it."""
    spec = {**template["spec"], "nodeName": "llm-node", "serviceAccountName": "default"}

    def container_status(name, init):
        return {
            "name": name, "image": "ghcr.io/llmops-dev/llm-runtime:0.1.0", "imageID": "sha256:" + "a" * 64,
            "containerID": "containerd://" + "b" * 64, "ready": not init, "restartCount": 0, "started": not init,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": STAMP, "finishedAt": STAMP}}
            if init else {"running": {"startedAt": STAMP}}}

    managed = [{"manager": manager, "operation": "Update", "apiVersion": "v1", "time": STAMP, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {f"f:{key}": {} for key in spec}} if manager == "kube-controller-manager" else
                {"f:status": {f"f:{key}": {} for key in ("conditions", "containerStatuses", "podIP", "startTime")}}}
               for manager in ("kube-controller-manager", "kubelet")]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "rag-stack-llm-5d8f7c9b4-x2x7q", "generateName": "rag-stack-llm-5d8f7c9b4-",
                     "namespace": "team-a", "uid": "c" * 8 + "-0000-4000-8000-" + "d" * 12, "resourceVersion": "123456",
                     "creationTimestamp": STAMP, "labels": template["metadata"]["labels"],
                     "annotations": template["metadata"].get("annotations", {}),
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rag-stack-llm-5d8f7c9b4",
                                          "uid": "e" * 36, "controller": True, "blockOwnerDeletion": True}],
                     "managedFields": managed},
        "spec": spec,
        "status": {"phase": "Running", "podIP": "10.244.0.7", "hostIP": "10.0.0.2", "startTime": STAMP, "qosClass": "Burstable",
                   "conditions": [{"type": kind, "status": "True", "lastTransitionTime": STAMP}
                                  for kind in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")],
                   "initContainerStatuses": [container_status(c["name"], True) for c in spec.get("initContainers", [])],
                   "containerStatuses": [container_status(c["name"], False) for c in spec["containers"]]},
    }


def operator_reflector(raw: bytes) -> dict[str, Any]:
    """k8s/cache.py: only the fields reconcile reads are built."""
    obj = _POD_EVENT.validate_json(raw)["object"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": obj["metadata"], "status": obj.get("status") or {}}


def kopf_index(raw: bytes) -> dict[str, Any]:
    """kopf's watch parses the whole event, wraps the object in a Body, and an index function slims it."""
    body = kopf.Body(json.loads(raw)["object"])
    metadata = body.metadata
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {k: metadata[k] for k in POD_METADATA if k in metadata},
            "status": dict(body.status)}


def per_event_microseconds(path: Callable[[bytes], dict[str, Any]], event: bytes, count: int) -> float:
    path(event)
    started = time.perf_counter()
    for _ in range(count):
        path(event)
    return 1e6 * (time.perf_counter() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000, help="events parsed by each path (default 20000)")
    args = parser.parse_args()
    deployment = next(obj for obj in render(parse_llmdeployment(yaml.safe_load(EXAMPLE.read_text())))
                      if obj["kind"] == "Deployment")
    event = json.dumps({"type": "MODIFIED", "object": running_pod(deployment["spec"]["template"])}).encode()
    assert operator_reflector(event) == kopf_index(event), "the two paths must end with the same slim pod"
    print(f"One pod watch event of {len(event):,} bytes, {args.events:,} times:")
    for name, path in (("operator's watch cache", operator_reflector), ("kopf Body + index function", kopf_index)):
        print(f"  {name:28} {per_event_microseconds(path, event, args.events):7.1f} µs per event")


if __name__ == "__main__":
    main()
