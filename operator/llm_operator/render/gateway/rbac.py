"""What the gateway pod's routers may read of the API server."""

from __future__ import annotations

from typing import Any

from ...api.llmgateway import LLMGateway
from ..meta import object_meta
from .meta import gateway_labels, gateway_name


def rbac(gateway: LLMGateway) -> list[dict[str, Any]]:
    """The routers' service discovery watches the pods of their namespace: that and nothing else."""
    name, namespace = gateway_name(gateway.metadata.name), gateway.metadata.namespace
    labels = gateway_labels(gateway.metadata.name)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": object_meta(name, namespace, labels)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": object_meta(name, namespace, labels),
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": object_meta(name, namespace, labels),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, **({"namespace": namespace} if namespace else {})}]},
    ]
