"""An LLMGateway's objects: one endpoint for the models of the LLMDeployments it selects.

The gateway pod runs Envoy in front and one vLLM router per served model behind it:

- Envoy (the `envoy` container, the only one listening beyond the pod's loopback) checks the
  gateway's key, answers GET /v1/models, reads the body's `model` and sends the request on with the
  model's own key (gateway.lua). Unknown models get a 404 in OpenAI's format.
- Each router (`router-<i>`) finds the ready pods of one role by its labels (its own Kubernetes
  service discovery, hence the Role to watch pods) and picks one by the gateway's policy. It serves
  chat, completions and embeddings. vLLM's other APIs (rerank, score, pooling, tokenize ...) go
  from Envoy to the role's Service instead: the router forwards no Authorization header on them,
  and rewrites a /v1/rerank body so that vLLM refuses it.

Why not one router for every model (its IGW mode): it learns a pod's model from an unauthenticated
GET /v1/models, so models with a key register as "unknown", and it sends requests for models it
does not know to any pod. docs/gateway.md has what was measured.

Pure like the rest of render/: the routes come in already worked out from the selected
LLMDeployments (`gateway_routes`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from ..api.llmdeployment import LLMDeployment
from ..api.llmgateway import GATEWAY_KIND, ROUTING_POLICIES, LLMGateway
from ..api.meta import API_VERSION, SecretKeySelector
from ..names import GATEWAY_LABEL, HASH_ANNOTATION
from .autoscaling import scales_to_zero
from .chat_page import render_chat_page
from .config import CONTAINER_PORT, DEFAULT_SERVICE_PORT, RenderConfig, served_name
from .meta import app_labels, content_hash, object_meta, selector_labels, upstream_stat_name
from .pod import container_security, placement, pod_security

ENVOY_CONTAINER = "envoy"
API_PORT = 8080  # Envoy, for clients
HEALTH_PORT = 8081  # Envoy, for the kubelet's probes only: no key, no model traffic
ROUTER_BASE_PORT = 30000  # router i listens on 127.0.0.1:30000+i
ROUTER_METRICS_BASE_PORT = 29000
METRICS_PORT = 8082  # Envoy, Prometheus only: GET /metrics is Envoy's /stats/prometheus, nothing else
ENVOY_ADMIN_PORT = 9901  # loopback only; reached from outside the pod through METRICS_PORT's one path
CONFIG_DIR = "/etc/llm-gateway/config"  # siblings, not nested: a ConfigMap volume is read-only
GATEWAY_KEY_DIR = "/etc/llm-gateway/key"
UPSTREAM_KEY_DIR = "/etc/llm-gateway/upstream"
# Envoy buffers a request's body to read its `model`: the largest body it accepts (a long RAG
# prompt or a batch of documents to embed fits; more gets 413).
MAX_REQUEST_BYTES = 32 * 2**20
# As long as the router waits for an answer (its --request-timeout-secs default): a long generation
# that sends nothing for a while is not cut.
REQUEST_IDLE_SECONDS = 1800
DEFAULT_POLICY = "PrefixAware"
CHAT_ROLE = "llm"  # the role whose models a chat page lists
DRAIN_SECONDS = 5
# A model scaled to zero: how long the gateway holds a request while the autoscaler starts a pod,
# retrying about once a second; then the client gets the 503 with Retry-After (docs/autoscaling.md).
WAKE_HOLD_SECONDS = 240
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class GatewayRoute:
    """One served model behind the gateway: a role of a selected LLMDeployment, and the address
    ("clusterIP:port") of that role's Service once it has one."""

    served_name: str
    llmdeployment: str
    role: str
    upstream_key: SecretKeySelector | None
    service: str | None = None
    wakes: bool = False  # the role may be scaled to zero: hold its requests while it wakes


def selects(gateway: LLMGateway, labels: dict[str, str] | None) -> bool:
    """Whether the gateway's selector matches an LLMDeployment's labels (empty selects all)."""
    wanted = gateway.spec.selector.matchLabels or {}
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def guarded_models(gateway: LLMGateway, llmds: list[LLMDeployment]) -> tuple[list[LLMDeployment], list[str]]:
    """The selected LLMDeployments this gateway may route to, and why each other one may not. A
    gateway without apiKeySecretRef answers anyone who reaches it: fronting a model with an API key
    would hand that key to them, and one with service.allowedNamespaces would let in every namespace
    its NetworkPolicy keeps out."""
    if gateway.spec.apiKeySecretRef is not None:
        return llmds, []
    allowed, refused = [], []
    for llmd in llmds:
        guards = [guard for guard, present in (
            ("an API key (apiKeySecretRef)", llmd.spec.apiKeySecretRef is not None),
            ("service.allowedNamespaces", bool(llmd.spec.service and llmd.spec.service.allowedNamespaces))) if present]
        if guards:
            refused.append(f"LLMDeployment {llmd.metadata.name} has {' and '.join(guards)}, and this gateway has no "
                           "key: it is not routed, or the gateway would open it to anyone. Set spec.apiKeySecretRef "
                           "on the gateway, or stop selecting it.")
        else:
            allowed.append(llmd)
    return allowed, refused


def gateway_routes(llmds: list[LLMDeployment]) -> tuple[list[GatewayRoute], list[str]]:
    """The routes of the selected LLMDeployments, by served name, and what keeps a model out: a name
    served by two roles is routed to neither (which one a client meant cannot be known)."""
    by_name: dict[str, list[GatewayRoute]] = {}
    for llmd in sorted(llmds, key=lambda item: item.metadata.name):
        for role_name, role in llmd.spec.roles().items():
            name = served_name(role.model)
            by_name.setdefault(name, []).append(GatewayRoute(
                name, llmd.metadata.name, role_name, llmd.spec.apiKeySecretRef, wakes=scales_to_zero(role)))
    routes, problems = [], []
    for name in sorted(by_name):
        candidates = by_name[name]
        if len(candidates) == 1:
            routes.append(candidates[0])
        else:
            where = ", ".join(f"{route.llmdeployment} ({route.role})" for route in candidates)
            problems.append(f"model {name!r} is served by {where}: give each a distinct model.servedName")
    return routes, problems


def routes_of(gateway: LLMGateway, selected: list[LLMDeployment]) -> tuple[list[GatewayRoute], list[str], list[str]]:
    """The gateway's routes over the LLMDeployments it selects (`selects`), the served names that
    clash (routed to neither: gateway_routes), and why the models it may not front are left out
    (guarded_models). The operator and `llm-operator render` both route this way."""
    guarded, unguarded = guarded_models(gateway, selected)
    routes, clashes = gateway_routes(guarded)
    return routes, clashes, unguarded


def chat_models(routes: list[GatewayRoute]) -> list[str]:
    """The served names of the gateway's chat models (its `llm` roles), sorted: what its chat page lists."""
    return sorted(route.served_name for route in routes if route.role == CHAT_ROLE)


def gateway_name(gateway: str) -> str:
    return f"{gateway}-gateway"


def gateway_labels(gateway: str) -> dict[str, str]:
    return {**app_labels("llm-gateway", gateway, "gateway"), GATEWAY_LABEL: gateway}


def service_port(gateway: LLMGateway) -> int:
    return (gateway.spec.service.port if gateway.spec.service else None) or DEFAULT_SERVICE_PORT


def gateway_url(gateway: LLMGateway) -> str:
    host = f"{gateway_name(gateway.metadata.name)}.{gateway.metadata.namespace or 'default'}.svc"
    return f"http://{host}:{service_port(gateway)}/v1"


# ---------------------------------------------------------------- Envoy and its Lua


def _lua_string(text: str) -> str:
    """A Lua string literal of any text: a long bracket ([==[...]==]) that the text cannot close, or,
    for text with control characters (which a long bracket would change), decimal escapes."""
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        return '"' + "".join(chr(b) if chr(b).isalnum() else f"\\{b:03d}" for b in text.encode()) + '"'
    level = 0
    while f"]{'=' * level}]" in text + "]":
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


def _router_cluster(index: int) -> str:
    return f"router-{index}"


def _service_cluster(index: int) -> str:
    return f"service-{index}"


def _upstream_key_file(route: GatewayRoute) -> str:
    return f"{UPSTREAM_KEY_DIR}/{route.llmdeployment}" if route.upstream_key else ""


def lua_script(gateway: LLMGateway, routes: list[GatewayRoute]) -> str:
    """gateway.lua with this gateway's data in front of it."""
    models = ", ".join(
        f"[ {_lua_string(route.served_name)} ] = {{router = {_lua_string(_router_cluster(i))}, "
        f"service = {_lua_string(_service_cluster(i)) if route.service else 'nil'}, "
        f"key_file = {_lua_string(_upstream_key_file(route))}}}" for i, route in enumerate(routes))
    model_list = json.dumps({"object": "list", "data": [
        {"id": route.served_name, "object": "model", "created": 0, "owned_by": "llm-operator"} for route in routes]},
        separators=(",", ":"))
    key_file = _lua_string(f"{GATEWAY_KEY_DIR}/key") if gateway.spec.apiKeySecretRef else "nil"
    data = (f"GATEWAY_KEY_FILE = {key_file}\nMODELS = {{{models}}}\nMODEL_LIST = {_lua_string(model_list)}\n"
            f"RETRY_AFTER = \"{RETRY_AFTER_SECONDS}\"\n")
    return data + resources.files(__package__).joinpath("gateway.lua").read_text()


def _connection_manager(name: str, routes: list[dict[str, Any]], filters: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "stream_idle_timeout": f"{REQUEST_IDLE_SECONDS}s",
            "route_config": {"virtual_hosts": [{"name": name, "domains": ["*"], "routes": routes}]},
            "http_filters": [*filters, {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        },
    }


def _listener(name: str, port: int, manager: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
            "per_connection_buffer_limit_bytes": MAX_REQUEST_BYTES, "filter_chains": [{"filters": [manager]}]}


def _static_cluster(name: str, host: str, port: int, stat_name: str | None = None, held: bool = False) -> dict[str, Any]:
    cluster: dict[str, Any] = {"name": name, "type": "STATIC", "connect_timeout": "2s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}
    if stat_name:
        cluster["alt_stat_name"] = stat_name
    if held:
        # Every held request retries at once; Envoy's default allows 3 retries in flight per cluster.
        cluster["circuit_breakers"] = {"thresholds": [{"max_retries": 1024}]}
    return cluster


def _hold_routes(routes: list[GatewayRoute]) -> list[dict[str, Any]]:
    """A route per upstream of a model that may be at zero pods: its requests are retried for about
    WAKE_HOLD_SECONDS (the router answers 503 and the Service refuses connections until a pod is
    ready), which is also what its ScaledObject sees as demand."""
    hold = {"retry_on": "connect-failure,retriable-status-codes", "retriable_status_codes": [503],
            "num_retries": WAKE_HOLD_SECONDS, "retry_back_off": {"base_interval": "0.5s", "max_interval": "2s"}}
    held = []
    for index, route in enumerate(routes):
        if not route.wakes:
            continue
        for cluster in (_router_cluster(index), _service_cluster(index)):
            held.append({"match": {"prefix": "/", "headers": [{"name": "x-llm-gateway-upstream",
                                                               "string_match": {"exact": cluster}}]},
                         "route": {"cluster": cluster, "timeout": "0s", "retry_policy": hold}})
    return held


def envoy_config(routes: list[GatewayRoute]) -> dict[str, Any]:
    """Envoy's bootstrap: the API listener (content_type.lua, json_to_metadata, gateway.lua, then the
    cluster the script picked by header), the health listener, and per model a cluster for its
    router on loopback and one for its Service."""
    # A router answers 503 before it has found a ready pod: for a moment after a gateway pod starts
    # (it lists the pods once running), or when a model has none. Retried for about two seconds (and
    # a refused connection too), a rollout of the gateway drops no request; nothing reached a model
    # server, so none runs twice.
    retry = {"retry_on": "connect-failure,retriable-status-codes", "retriable_status_codes": [503], "num_retries": 3,
             "retry_back_off": {"base_interval": "0.25s", "max_interval": "1s"}}
    api_routes = [*_hold_routes(routes), {"match": {"prefix": "/"},
                   "route": {"cluster_header": "x-llm-gateway-upstream", "timeout": "0s", "retry_policy": retry}}]
    api_filters = [
        {"name": "llm-gateway.content-type", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"filename": f"{CONFIG_DIR}/content_type.lua"}}},
        {"name": "envoy.filters.http.json_to_metadata", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {"rules": [{"selectors": [{"key": "model"}],
                                         "on_present": {"metadata_namespace": "llm_gateway", "key": "model", "type": "STRING"}}],
                              "allow_empty_content_type": True}}},
        {"name": "envoy.filters.http.lua", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
            "default_source_code": {"filename": f"{CONFIG_DIR}/gateway.lua"}}},
    ]
    # The kubelet asks each router whether it is alive through this listener (routers bind loopback).
    health_routes = [{"match": {"path": "/healthz"}, "direct_response": {"status": 200}}]
    metrics_routes = [{"match": {"path": "/metrics"}, "route": {"cluster": "admin", "prefix_rewrite": "/stats/prometheus"}}]
    clusters = [_static_cluster("admin", "127.0.0.1", ENVOY_ADMIN_PORT)]
    for index, route in enumerate(routes):
        # Probes reach the router through a cluster of their own: counted under the router's, the
        # kubelet's probes would look like demand and keep a role from ever scaling to zero.
        health_routes.append({"match": {"path": f"/routers/{index}/liveness"}, "route": {
            "cluster": f"probe-{index}", "regex_rewrite": {"pattern": {"regex": ".*"}, "substitution": "/liveness"}}})
        clusters.append(_static_cluster(f"probe-{index}", "127.0.0.1", ROUTER_BASE_PORT + index))
        stat_name = upstream_stat_name(route.llmdeployment, route.role)
        clusters.append(_static_cluster(_router_cluster(index), "127.0.0.1", ROUTER_BASE_PORT + index,
                                        stat_name, route.wakes))
        if route.service:
            host, port = route.service.rsplit(":", 1)
            clusters.append(_static_cluster(_service_cluster(index), host, int(port), f"{stat_name}_service", route.wakes))
    return {
        # Envoy's admin API stays on the pod's loopback: only its statistics leave, through "metrics".
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": ENVOY_ADMIN_PORT}}},
        "static_resources": {
            "listeners": [_listener("api", API_PORT, _connection_manager("api", api_routes, api_filters)),
                          _listener("health", HEALTH_PORT, _connection_manager("health", health_routes, [])),
                          _listener("metrics", METRICS_PORT, _connection_manager("metrics", metrics_routes, []))],
            "clusters": clusters,
        }}


# ---------------------------------------------------------------- objects


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


def config_map(gateway: LLMGateway, routes: list[GatewayRoute]) -> dict[str, Any]:
    name = gateway.metadata.name
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": object_meta(gateway_name(name), gateway.metadata.namespace, gateway_labels(name)),
            "data": {"envoy.json": json.dumps(envoy_config(routes), indent=1, sort_keys=True),
                     "content_type.lua": resources.files(__package__).joinpath("content_type.lua").read_text(),
                     "gateway.lua": lua_script(gateway, routes)}}


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


def _hash(data: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _http_base(address: str) -> str:
    """The URL of "clusterIP:port"; an IPv6 address is bracketed, as a URL needs (RFC 3986)."""
    host, port = address.rsplit(":", 1)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def render_gateway(gateway: LLMGateway, routes: list[GatewayRoute], config: RenderConfig | None = None,
                   address: str | None = None) -> list[dict[str, Any]]:
    """Every object of the gateway: ServiceAccount, Role, RoleBinding, ConfigMap, Deployment, Service,
    and with spec.chatPage the page's PersistentVolumeClaim, Service and, once the gateway's Service
    has an `address` ("clusterIP:port") for it to reach, its Deployment."""
    config = config or RenderConfig()
    settings = config_map(gateway, routes)
    endpoint = f"{_http_base(address)}/v1" if address else None
    objects = [*rbac(gateway), settings, deployment(gateway, routes, config, _hash(settings["data"])), service(gateway),
               *render_chat_page(gateway, endpoint, chat_models(routes), config.chat_page_image)]
    for obj in objects:
        if gateway.metadata.uid:
            obj["metadata"]["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": GATEWAY_KIND, "name": gateway.metadata.name,
                                                   "uid": gateway.metadata.uid, "controller": True, "blockOwnerDeletion": True}]
        obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = content_hash(obj)
    return objects
