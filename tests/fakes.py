"""The in-memory API server the reconcile tests run against, and the resource it serves."""

from __future__ import annotations

import copy

from llm_operator.controllers.llmdeployment.reconcile import reconcile
from llm_operator.k8s import CHILD_KINDS, ApplyRejected
from llm_operator.render import RenderConfig
from support import manifest

SPEC = {"llm": {"model": {"source": "hf://Qwen/Qwen3-8B"}}}


class MemoryKube:
    """The few API calls reconcile makes, over dicts. Deployments behave like the real ones: an
    apply that changes the spec bumps metadata.generation and leaves status for the controller."""

    child_kinds = CHILD_KINDS  # a cluster without KEDA, unless a test adds ScaledObject
    reads_pod_logs = True  # as the chart's operator.readPodLogs allows; a test may take it away

    def __init__(self, llmd):
        self.llmd = llmd
        self.objects = {}
        self.pods = []
        self.refuse = set()  # kinds whose apply the "API server" refuses
        self.applied, self.events = [], []
        self.logs, self.log_reads = {}, []  # pod name -> its engine's log; the pods whose log was read

    def get_llmdeployment(self, namespace, name):
        return copy.deepcopy(self.llmd)

    def list_children(self, namespace, owner, owner_uid):
        return [copy.deepcopy(o) for o in self.objects.values()
                if any(r.get("uid") == owner_uid and r.get("controller") for r in o["metadata"].get("ownerReferences", []))]

    def get_child(self, kind, namespace, name):
        return copy.deepcopy(self.objects.get((kind, name)))

    def list_pods(self, namespace, owner):
        return copy.deepcopy(self.pods)

    def apply(self, obj, field_manager="llm-operator"):
        if obj["kind"] in self.refuse:
            raise ApplyRejected(f"{obj['kind']} {obj['metadata']['name']}: refused")
        key = (obj["kind"], obj["metadata"]["name"])
        old = self.objects.get(key)
        stored = copy.deepcopy(obj)
        stored["metadata"]["generation"] = (old["metadata"]["generation"] + (old.get("spec") != obj.get("spec"))) if old else 1
        stored["status"] = copy.deepcopy(old.get("status", {})) if old else {}
        self.objects[key] = stored
        self.applied.append(key)
        return copy.deepcopy(stored)

    def delete(self, kind, namespace, name):
        self.objects.pop((kind, name), None)

    def apply_status(self, namespace, name, status, kind="LLMDeployment"):
        self.llmd["status"] = status

    def post_event(self, llmd, event_type, reason, message, kind="LLMDeployment"):
        self.events.append(reason)

    def read_log_head(self, namespace, pod, container, limit_bytes):
        self.log_reads.append(pod)
        return self.logs.get(pod, "")

    def roll_out(self):
        """What the Deployment controller and kubelet do once the pods are up."""
        for (kind, _), obj in self.objects.items():
            if kind == "Deployment":
                replicas = obj["spec"].get("replicas", 1)
                obj["status"] = {"observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                                 "updatedReplicas": replicas, "readyReplicas": replicas}


def resource(spec=SPEC, generation=1):
    return manifest(spec, "team", namespace="ns", uid="u-1", generation=generation)


def run(kube):
    return reconcile(kube, RenderConfig(), "ns", "team")
