"""The gateway's Deployment: one pod with Envoy in front and a vLLM router per served model, the
keys mounted as files from their Secrets."""

from __future__ import annotations

from typing import Any

from ...api.llmgateway import ROUTING_POLICIES, LLMGateway
from ...names import GATEWAY_LABEL
from ..config import CONTAINER_PORT, RenderConfig, placement
from ..meta import object_meta, selector_labels
from ..pod import container_security, pod_security
from .envoy import API_PORT, CONFIG_DIR, GATEWAY_KEY_DIR, HEALTH_PORT, METRICS_PORT, ROUTER_BASE_PORT, UPSTREAM_KEY_DIR
from .meta import gateway_labels, gateway_name
from .routes import GatewayRoute

ENVOY_CONTAINER = "envoy"
ROUTER_METRICS_BASE_PORT = 29000
DEFAULT_POLICY = "PrefixAware"
DRAIN_SECONDS = 5


def _drain() -> dict[str, Any]:
    """A stopping gateway pod keeps serving while kube-proxy and load balancers stop sending to it
    (they learn of it seconds after its containers get SIGTERM): without this, a rollout refused a
    few requests."""
    return {"preStop": {"exec": {"command": ["sleep", str(DRAIN_SECONDS)]}}}


def _router_container(gateway: LLMGateway, index: int, route: GatewayRoute, image: str) -> dict[str, Any]:
    selector = selector_labels(route.llmdeployment, route.role)
    args = ["--host", "127.0.0.1", "--port", str(ROUTER_BASE_PORT + index),
            "--policy", ROUTING_POLICIES[gateway.spec.policy or DEFAULT_POLICY],
            "--service-discovery", "--selector", *(f"{key}={value}" for key, value in selector.items()),
            "--service-discovery-namespace", gateway.metadata.namespace or "default",
            "--service-discovery-port", str(CONTAINER_PORT),
            "--prometheus-host", "0.0.0.0", "--prometheus-port", str(ROUTER_METRICS_BASE_PORT + index),
            "--log-level", "warning"]
    container = {"name": f"router-{index}", "image": image, "command": ["vllm-router"], "args": args,
                 "ports": [{"name": f"metrics-{index}", "containerPort": ROUTER_METRICS_BASE_PORT + index, "protocol": "TCP"}],
                 "env": [{"name": "LLM_GATEWAY_MODEL", "value": route.served_name}],
                 # Ready once it listens (whether or not it has found a pod yet): a gateway pod takes
                 # requests only when every router can take them.
                 # Envoy's health port by number: a probe names only its own container's ports.
                 "readinessProbe": {"httpGet": {"path": f"/routers/{index}/liveness", "port": HEALTH_PORT},
                                    "periodSeconds": 2, "timeoutSeconds": 2},
                 "livenessProbe": {"httpGet": {"path": f"/routers/{index}/liveness", "port": HEALTH_PORT},
                                   "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3},
                 "lifecycle": _drain(),
                 "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
                 "securityContext": {**container_security(), "readOnlyRootFilesystem": True}}
    if gateway.spec.imagePullPolicy:
        container["imagePullPolicy"] = gateway.spec.imagePullPolicy
    return container


def _envoy_container(gateway: LLMGateway, routes: list[GatewayRoute], image: str) -> dict[str, Any]:
    mounts = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}]
    if gateway.spec.apiKeySecretRef:
        mounts.append({"name": "gateway-key", "mountPath": GATEWAY_KEY_DIR, "readOnly": True})
    if any(route.upstream_key for route in routes):
        mounts.append({"name": "upstream-keys", "mountPath": UPSTREAM_KEY_DIR, "readOnly": True})
    container = {
        "name": ENVOY_CONTAINER, "image": image,
        "command": ["envoy", "--config-path", f"{CONFIG_DIR}/envoy.json", "--disable-hot-restart", "--log-level", "warn"],
        "ports": [{"name": "http", "containerPort": API_PORT, "protocol": "TCP"},
                  {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                  {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "periodSeconds": 10, "failureThreshold": 3},
        "lifecycle": _drain(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {**container_security(), "readOnlyRootFilesystem": True},
        "volumeMounts": mounts,
    }
    if gateway.spec.imagePullPolicy:
        container["imagePullPolicy"] = gateway.spec.imagePullPolicy
    return container


def _volumes(gateway: LLMGateway, routes: list[GatewayRoute]) -> list[dict[str, Any]]:
    """The configuration, and the keys: each only as a file from its Secret, never in the pod spec."""
    name = gateway_name(gateway.metadata.name)
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": name}}]
    key = gateway.spec.apiKeySecretRef
    if key:
        volumes.append({"name": "gateway-key", "secret": {"secretName": key.name, "items": [{"key": key.key, "path": "key"}]}})
    keyed = [(route.llmdeployment, route.upstream_key) for route in routes if route.upstream_key]
    if keyed:
        # One file per LLMDeployment, named after it; its roles share its key.
        # Optional: one model's missing Secret must not keep every gateway pod from starting. Its
        # requests get 503 upstream_key_missing, and its own LLMDeployment is Degraded (SecretMissing),
        # which the gateway's status quotes.
        sources = {owner: {"secret": {"name": key.name, "optional": True, "items": [{"key": key.key, "path": owner}]}}
                   for owner, key in keyed}
        volumes.append({"name": "upstream-keys", "projected": {"sources": [sources[owner] for owner in sorted(sources)]}})
    return volumes


def _pod_spec(gateway: LLMGateway, containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceAccountName": gateway_name(gateway.metadata.name),
        # The routers' service discovery reads the API server with this account's token.
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": pod_security(),
    }
    spec.update(placement(gateway.spec.scheduling))
    spec["containers"] = containers
    spec["volumes"] = volumes
    return spec


def deployment(gateway: LLMGateway, routes: list[GatewayRoute], config: RenderConfig, config_hash: str) -> dict[str, Any]:
    name = gateway.metadata.name
    image = gateway.spec.image or config.gateway_image
    selector = {GATEWAY_LABEL: name}
    containers = [_envoy_container(gateway, routes, image),
                  *(_router_container(gateway, index, route, image) for index, route in enumerate(routes))]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": object_meta(gateway_name(name), gateway.metadata.namespace, gateway_labels(name)),
        "spec": {
            "replicas": 1 if gateway.spec.replicas is None else gateway.spec.replicas,
            "selector": {"matchLabels": selector},
            # A new gateway pod takes traffic before the old one stops: no GPU is held here.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                # The configuration is read at start: a changed one rolls the pods.
                "metadata": {"labels": gateway_labels(name), "annotations": {"llmops.dev/config-hash": config_hash}},
                "spec": _pod_spec(gateway, containers, _volumes(gateway, routes)),
            },
        },
    }
