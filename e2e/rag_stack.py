"""The CPU RAG stack on the real node as the serving, autoscaling and batch tests share it: a
namespace of its own, the stack's keys, its LLMDeployment and LLMGateway, and what the tests read
back from them."""

from __future__ import annotations

import json
import time

import yaml

import serving
from operator_process import eventually
from workloads import get

API_KEY = "e2e-serving-key"
GATEWAY_KEY = "e2e-gateway-key"
READY_TIMEOUT = 900  # a cold start of three vLLM servers on 2 cores, with headroom
GATEWAY_LABEL = {"gateway": "shared"}
# examples/gateway.yaml, with round robin so that two replicas' shares are predictable.
GATEWAY = serving.gateway_on_real_node(GATEWAY_LABEL)
GATEWAY["spec"]["policy"] = "RoundRobin"


def new_namespace(cluster, prefix: str) -> str:
    """A namespace of its own for one module's stack, once its default ServiceAccount exists (pods
    are refused before)."""
    namespace = f"{prefix}-{int(time.time()) % 100000}"
    cluster.kubectl("create", "namespace", namespace)
    eventually(lambda: cluster.kubectl("-n", namespace, "get", "sa", "default", check=False).returncode == 0, 30,
               what="default ServiceAccount")
    return namespace


class Stack:
    def __init__(self, cluster, namespace, manifest, models, hub):
        self.cluster, self.namespace, self.manifest, self.models, self.hub = cluster, namespace, manifest, models, hub
        self.name = manifest["metadata"]["name"]
        self.times: dict[str, float] = {}
        self.first_pods: dict[str, list[dict]] = {}  # by role, the pods of the first start

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl("-n", self.namespace, *args, **kwargs)

    def apply(self, manifest):
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))

    def status(self):
        return (get(self.cluster, self.namespace, "llmd", self.name) or {}).get("status") or {}

    def pods(self, role):
        out = self.kubectl("get", "pods", "-l", f"llmops.dev/deployment={self.name},llmops.dev/role={role}",
                           "-o", "json").stdout
        return [p for p in json.loads(out)["items"] if not p["metadata"].get("deletionTimestamp")]

    def base_urls(self) -> dict[str, str]:
        """Each role's OpenAI base URL through its Service's ClusterIP (no cluster DNS on the host)."""
        urls = {}
        for role in self.status()["roles"]:
            service = get(self.cluster, self.namespace, "service", f"{self.name}-{role}")
            urls[role] = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
        return urls

    def served_names(self) -> dict[str, str]:
        return {role: info["servedName"] for role, info in self.status()["roles"].items()}

    def wait_ready(self, timeout=READY_TIMEOUT) -> float:
        started = time.monotonic()
        self.kubectl("wait", "--for=condition=Ready", f"llmd/{self.name}", f"--timeout={timeout}s", timeout=timeout + 30)
        return time.monotonic() - started


def init_log(stack: Stack, pod: dict) -> str:
    return stack.kubectl("logs", pod["metadata"]["name"], "-c", "model-download").stdout


def gateway_status(stack):
    return (get(stack.cluster, stack.namespace, "llmgw", "shared") or {}).get("status") or {}


def gateway_url(stack) -> str:
    service = get(stack.cluster, stack.namespace, "service", "shared-gateway")
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def gateway_ready(stack, timeout=180):
    stack.kubectl("wait", "--for=condition=Ready", "llmgw/shared", f"--timeout={timeout}s", timeout=timeout + 30)
