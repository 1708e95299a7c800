"""The gateway's Service: the one endpoint clients use."""

from __future__ import annotations

from typing import Any

from ...api.llmgateway import LLMGateway
from ...names import GATEWAY_LABEL
from ..config import DEFAULT_SERVICE_PORT
from ..meta import object_meta
from .meta import gateway_labels, gateway_name


def service_port(gateway: LLMGateway) -> int:
    return (gateway.spec.service.port if gateway.spec.service else None) or DEFAULT_SERVICE_PORT


def gateway_url(gateway: LLMGateway) -> str:
    host = f"{gateway_name(gateway.metadata.name)}.{gateway.metadata.namespace or 'default'}.svc"
    return f"http://{host}:{service_port(gateway)}/v1"


def service(gateway: LLMGateway) -> dict[str, Any]:
    name = gateway.metadata.name
    settings = gateway.spec.service
    metadata = object_meta(gateway_name(name), gateway.metadata.namespace, gateway_labels(name))
    if settings and settings.annotations:
        metadata["annotations"] = dict(settings.annotations)
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": {
        "type": (settings.type if settings else None) or "ClusterIP",
        "selector": {GATEWAY_LABEL: name},
        "ports": [{"name": "http", "port": service_port(gateway), "targetPort": "http", "protocol": "TCP"}],
    }}
