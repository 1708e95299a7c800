"""The gateway's configuration: Envoy's bootstrap (`envoy.json`), and the Lua scripts that check the
key, read the model and pick its upstream (`content_type.lua`, `gateway.lua` with the routes in
front), all in one ConfigMap that the gateway pod mounts."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ...api.llmgateway import LLMGateway
from ..meta import object_meta, upstream_stat_name
from .meta import gateway_labels, gateway_name
from .routes import GatewayRoute

API_PORT = 8080  # Envoy, for clients
HEALTH_PORT = 8081  # Envoy, for the kubelet's probes only: no key, no model traffic
ROUTER_BASE_PORT = 30000  # router i listens on 127.0.0.1:30000+i
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
# A model scaled to zero: how long the gateway holds a request while the autoscaler starts a pod,
# retrying about once a second; then the client gets the 503 with Retry-After (docs/autoscaling.md).
WAKE_HOLD_SECONDS = 240
RETRY_AFTER_SECONDS = 30


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


def config_map(gateway: LLMGateway, routes: list[GatewayRoute]) -> dict[str, Any]:
    name = gateway.metadata.name
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": object_meta(gateway_name(name), gateway.metadata.namespace, gateway_labels(name)),
            "data": {"envoy.json": json.dumps(envoy_config(routes), indent=1, sort_keys=True),
                     "content_type.lua": resources.files(__package__).joinpath("content_type.lua").read_text(),
                     "gateway.lua": lua_script(gateway, routes)}}
