"""Who reaches the model: a role's Service (the in-cluster OpenAI-compatible endpoint), and the
optional NetworkPolicy that lets in only the namespaces the spec names."""

from __future__ import annotations

from typing import Any

from ..api.llmdeployment import LLMDeployment
from ..names import DEPLOYMENT_LABEL
from .config import DEFAULT_SERVICE_PORT
from .meta import child_name, labels, network_policy_name, object_meta, selector_labels

# Set by the API server on every namespace (Kubernetes >= 1.22): selects namespaces by name.
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def service_port(llmd: LLMDeployment) -> int:
    return (llmd.spec.service.port if llmd.spec.service else None) or DEFAULT_SERVICE_PORT


def service(llmd: LLMDeployment, role_name: str) -> dict[str, Any]:
    owner = llmd.metadata.name
    settings = llmd.spec.service
    metadata = object_meta(child_name(owner, role_name), llmd.metadata.namespace, labels(owner, role_name))
    if settings and settings.annotations:
        metadata["annotations"] = dict(settings.annotations)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": (settings.type if settings else None) or "ClusterIP",
            "selector": selector_labels(owner, role_name),
            "ports": [{"name": "http", "port": service_port(llmd), "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_url(llmd: LLMDeployment, role_name: str) -> str:
    """The OpenAI-compatible base URL of a role inside the cluster (`.svc` resolves in any cluster domain)."""
    host = f"{child_name(llmd.metadata.name, role_name)}.{llmd.metadata.namespace or 'default'}.svc"
    return f"http://{host}:{service_port(llmd)}/v1"


def allowed_namespaces(llmd: LLMDeployment) -> list[str] | None:
    return llmd.spec.service.allowedNamespaces if llmd.spec.service else None


def network_policy(llmd: LLMDeployment) -> dict[str, Any]:
    """Ingress to every role's pods, on the serving port only, from the named namespaces only.
    Kubelet probes are not pod traffic and stay allowed."""
    owner = llmd.metadata.name
    namespaces = {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(allowed_namespaces(llmd) or ())}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(network_policy_name(owner), llmd.metadata.namespace, labels(owner, "network-policy")),
        "spec": {
            "podSelector": {"matchLabels": {DEPLOYMENT_LABEL: owner}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [namespaces]}}],
                         "ports": [{"protocol": "TCP", "port": "http"}]}],
        },
    }
