"""The LLMGateway renderer and the Lua script Envoy runs, one rule per test.

The script runs here in a real Lua (lupa) with a stand-in for Envoy's stream handle that has the
same methods; e2e/test_gateway.py runs it in Envoy itself."""

import json

import lupa
import pytest
from pydantic import ValidationError

from llm_operator.api.llmgateway import LLMGateway
from llm_operator.names import HASH_ANNOTATION
from llm_operator.render import RenderConfig, render_gateway
from llm_operator.render.gateway.envoy import (
    HEALTH_PORT,
    METRICS_PORT,
    ROUTER_BASE_PORT,
    WAKE_HOLD_SECONDS,
    config_map,
    envoy_config,
    lua_script,
)
from llm_operator.render.gateway.routes import GatewayRoute, gateway_routes, selects
from llm_operator.render.gateway.service import gateway_url
from support import KEY, ROUTES, by_kind_and_name, gateway, llmd, load_example


def chat(name, served, key=None):
    spec = {"llm": {"model": {"source": "modelscope://Qwen/Qwen2.5-0.5B-Instruct", "servedName": served}}}
    if key:
        spec["apiKeySecretRef"] = {"name": key.name, "key": key.key}
    return llmd(spec, name=name)


# ---------------------------------------------------------------- which models


def test_selector_matches_labels_and_empty_selects_all():
    assert selects(gateway(), {"gateway": "shared", "team": "x"})
    assert not selects(gateway(), {"gateway": "other"})
    assert not selects(gateway(), None)
    assert selects(gateway({"selector": {}}), None)


def test_routes_are_every_role_by_served_name_with_its_deployments_key():
    routes, problems = gateway_routes([chat("zeta", "z-chat"), chat("alpha", "a-chat", KEY)])
    assert problems == []
    assert routes == [GatewayRoute("a-chat", "alpha", "llm", KEY), GatewayRoute("z-chat", "zeta", "llm", None)]


def test_a_name_served_twice_is_routed_to_neither_and_said_why():
    routes, problems = gateway_routes([chat("one", "same"), chat("two", "same"), chat("three", "unique")])
    assert [route.served_name for route in routes] == ["unique"]
    assert problems == ["model 'same' is served by one (llm), two (llm): give each a distinct model.servedName"]


# ---------------------------------------------------------------- objects


def test_objects_are_owned_hashed_and_named_after_the_gateway():
    objects = render_gateway(gateway(), ROUTES)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        (kind, "shared-gateway") for kind in ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service")]
    for obj in objects:
        assert obj["metadata"]["namespace"] == "team"
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "gw-uid"
        assert obj["metadata"]["ownerReferences"][0]["kind"] == "LLMGateway"
        assert len(obj["metadata"]["annotations"][HASH_ANNOTATION]) == 16


def test_the_routers_may_only_read_pods():
    role = by_kind_and_name(render_gateway(gateway(), ROUTES))[("Role", "shared-gateway")]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]}]


def test_one_router_per_model_watching_that_roles_pods_with_the_users_policy():
    deployment = by_kind_and_name(render_gateway(gateway({"policy": "LeastLoaded"}), ROUTES))[("Deployment", "shared-gateway")]
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["envoy", "router-0", "router-1", "router-2"]
    args = containers[2]["args"]
    assert args[args.index("--selector") + 1:args.index("--selector") + 3] == [
        "llmops.dev/deployment=rag", "llmops.dev/role=embedding"]
    assert args[args.index("--port") + 1] == str(ROUTER_BASE_PORT + 1)
    assert args[args.index("--host") + 1] == "127.0.0.1"  # only Envoy faces the network
    assert args[args.index("--policy") + 1] == "power_of_two"
    assert args[args.index("--service-discovery-namespace") + 1] == "team"
    assert all(c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep" for c in containers)  # drains
    # The pod is ready only when every router listens.
    assert containers[2]["readinessProbe"]["httpGet"] == {"path": "/routers/1/liveness", "port": HEALTH_PORT}
    assert containers[2]["livenessProbe"]["httpGet"] == {"path": "/routers/1/liveness", "port": HEALTH_PORT}
    default = by_kind_and_name(render_gateway(gateway(), ROUTES))[("Deployment", "shared-gateway")]
    router = default["spec"]["template"]["spec"]["containers"][1]
    assert router["args"][router["args"].index("--policy") + 1] == "cache_aware"  # PrefixAware


def test_keys_reach_the_pod_only_as_files_from_their_secrets():
    objects = render_gateway(gateway({"apiKeySecretRef": {"name": "gw", "key": "token"}}), ROUTES)
    pod = by_kind_and_name(objects)[("Deployment", "shared-gateway")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["gateway-key"]["secret"] == {"secretName": "gw", "items": [{"key": "token", "path": "key"}]}
    # One file per LLMDeployment with a key, named after it; "other" has none. Optional: one missing
    # Secret must not keep the gateway's pods (and so every other model) from starting.
    assert volumes["upstream-keys"]["projected"]["sources"] == [
        {"secret": {"name": "llm-api-key", "optional": True, "items": [{"key": "api-key", "path": "rag"}]}}]
    assert all("env" not in c or all("valueFrom" not in e for e in c["env"]) for c in pod["containers"])
    assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in pod["containers"])
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_a_changed_model_set_rolls_the_gateway_pods():
    first = by_kind_and_name(render_gateway(gateway(), ROUTES))[("Deployment", "shared-gateway")]
    second = by_kind_and_name(render_gateway(gateway(), ROUTES[:2]))[("Deployment", "shared-gateway")]

    def hash_of(deployment):
        return deployment["spec"]["template"]["metadata"]["annotations"]["llmops.dev/config-hash"]

    assert hash_of(first) != hash_of(second)
    assert hash_of(first) == hash_of(by_kind_and_name(render_gateway(gateway(), ROUTES))[("Deployment", "shared-gateway")])


def test_service_and_url():
    objects = by_kind_and_name(render_gateway(gateway({"service": {"type": "LoadBalancer", "port": 443,
                                                                    "allowUnauthenticated": True}}), ROUTES))
    assert objects[("Service", "shared-gateway")]["spec"]["type"] == "LoadBalancer"
    assert objects[("Service", "shared-gateway")]["spec"]["ports"][0]["port"] == 443
    assert gateway_url(gateway()) == "http://shared-gateway.team.svc:8000/v1"
    assert RenderConfig().gateway_image in str(objects[("Deployment", "shared-gateway")])


def test_the_example_is_a_valid_gateway():
    example = LLMGateway.model_validate(load_example("gateway.yaml"))
    assert example.spec.policy == "PrefixAware" and example.spec.apiKeySecretRef.name == "gateway-key"


def test_an_exposed_gateway_without_a_key_is_refused():
    with pytest.raises(ValidationError, match="apiKeySecretRef"):
        gateway({"service": {"type": "NodePort"}})
    with pytest.raises(ValidationError, match="at most 55 characters"):
        gateway(name="g" * 56)


def test_envoy_has_a_loopback_cluster_per_router_and_one_per_service_with_an_address():
    config = envoy_config(ROUTES)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert sorted(clusters) == ["admin", "probe-0", "probe-1", "probe-2", "router-0", "router-1", "router-2",
                                "service-0", "service-1"]
    assert "alt_stat_name" not in clusters["probe-0"]  # the kubelet's probes are no demand for the model
    # Statistics name each upstream by LLMDeployment and role, whatever the route order.
    assert clusters["router-1"]["alt_stat_name"] == "rag_embedding"
    assert clusters["service-1"]["alt_stat_name"] == "rag_embedding_service"

    def address(name):
        return clusters[name]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert address("router-2") == {"address": "127.0.0.1", "port_value": ROUTER_BASE_PORT + 2}
    assert address("service-1") == {"address": "10.96.0.11", "port_value": 8000}
    api = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    (route,) = api["route_config"]["virtual_hosts"][0]["routes"]
    assert route["match"] == {"prefix": "/"} and route["route"]["cluster_header"] == "x-llm-gateway-upstream"
    assert route["route"]["retry_policy"]["retriable_status_codes"] == [503]
    assert [f["name"] for f in api["http_filters"]] == [
        "llm-gateway.content-type", "envoy.filters.http.json_to_metadata", "envoy.filters.http.lua",
        "envoy.filters.http.router"]


def test_only_envoys_statistics_leave_the_pod_and_only_through_the_metrics_port():
    config = envoy_config(ROUTES)
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    listeners = {listener["name"]: listener for listener in config["static_resources"]["listeners"]}
    metrics = listeners["metrics"]["filter_chains"][0]["filters"][0]["typed_config"]
    assert listeners["metrics"]["address"]["socket_address"]["port_value"] == METRICS_PORT
    (route,) = metrics["route_config"]["virtual_hosts"][0]["routes"]
    assert route == {"match": {"path": "/metrics"}, "route": {"cluster": "admin", "prefix_rewrite": "/stats/prometheus"}}
    for name in ("api", "health"):
        manager = listeners[name]["filter_chains"][0]["filters"][0]["typed_config"]
        assert all(r.get("route", {}).get("cluster") != "admin" for r in manager["route_config"]["virtual_hosts"][0]["routes"])
    envoy = by_kind_and_name(render_gateway(gateway(), ROUTES))[("Deployment", "shared-gateway")]
    ports = {p["name"]: p["containerPort"] for p in envoy["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports["metrics"] == METRICS_PORT


def test_requests_for_a_model_that_scales_to_zero_are_held_while_it_wakes():
    sleepy = GatewayRoute("sleepy", "night", "llm", None, "10.96.0.12:8000", wakes=True)
    config = envoy_config([ROUTES[0], sleepy])
    api = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    *held, fallback = api["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["route"]["cluster"] for r in held] == ["router-1", "service-1"]  # not router-0: it never sleeps
    for route in held:
        (header,) = route["match"]["headers"]
        assert header == {"name": "x-llm-gateway-upstream", "string_match": {"exact": route["route"]["cluster"]}}
        policy = route["route"]["retry_policy"]
        assert policy["num_retries"] == WAKE_HOLD_SECONDS and "connect-failure" in policy["retry_on"]
        assert policy["retry_back_off"]["max_interval"] == "2s"
    assert fallback["route"]["retry_policy"]["num_retries"] == 3
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    assert clusters["router-1"]["circuit_breakers"]["thresholds"][0]["max_retries"] >= 1024
    assert "circuit_breakers" not in clusters["router-0"]


def test_routes_of_roles_that_scale_to_zero_wake():
    sleepy = llmd({"llm": {"model": {"source": "hf://a/b", "servedName": "night"},
                           "autoscaling": {"minReplicas": 0, "maxReplicas": 2}}}, "night", namespace="team")
    awake = llmd({"llm": {"model": {"source": "hf://a/c", "servedName": "day"},
                          "autoscaling": {"minReplicas": 1, "maxReplicas": 2}}}, "day", namespace="team")
    routes, _ = gateway_routes([sleepy, awake])
    assert {route.served_name: route.wakes for route in routes} == {"night": True, "day": False}


# ---------------------------------------------------------------- the Lua front, run in Lua

HARNESS = """
function request(headers, model)
  local handle = {sent = {}}
  for name, value in pairs(headers) do handle.sent[name] = value end
  local view = {get = function(_, name) return handle.sent[name] end,
                remove = function(_, name) handle.sent[name] = nil end,
                replace = function(_, name, value) handle.sent[name] = value end}
  function handle:headers() return view end
  function handle:respond(reply, body)
    self.status = reply[":status"]; self.body = body; self.retry_after = reply["retry-after"]
  end
  function handle:clearRouteCache() self.rerouted = true end
  function handle:streamInfo()
    return {dynamicMetadata = function()
      return {get = function(_, namespace)
        if namespace == "llm_gateway" and model ~= nil then return {model = model} end
        return nil
      end}
    end}
  end
  envoy_on_request(handle)
  return handle
end

function response(status, retry_after)
  local sent = {[":status"] = status, ["retry-after"] = retry_after}
  local view = {get = function(_, name) return sent[name] end,
                add = function(_, name, value) sent[name] = value end}
  envoy_on_response({headers = function() return view end})
  return sent
end
"""


@pytest.fixture
def front(tmp_path):
    """The script of a keyed gateway over ROUTES, its key files in tmp_path; call it with
    (method, path, headers, model) and get the handle back."""
    (tmp_path / "gateway").write_text("gw-secret\n")
    (tmp_path / "rag").write_text("upstream-secret")
    lua = lupa.LuaRuntime()
    lua.execute(lua_script(gateway({"apiKeySecretRef": {"name": "gw", "key": "key"}}), ROUTES))
    lua.execute(HARNESS)
    lua.execute(f'GATEWAY_KEY_FILE = "{tmp_path}/gateway"')
    for name in ("chat-a", "embed-b"):
        lua.execute(f'MODELS["{name}"].key_file = "{tmp_path}/rag"')

    def call(method="POST", path="/v1/chat/completions", headers=None, model="chat-a", key="gw-secret"):
        sent = {":method": method, ":path": path, **({"authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
        return lua.globals().request(lua.table_from(sent), model)
    call.tmp_path = tmp_path
    call.lua = lua
    return call


def error_of(handle):
    return json.loads(handle.body)["error"]


def test_a_known_model_goes_to_its_router_with_its_own_key(front):
    handle = front(headers={"x-llm-gateway-upstream": "router-2"})
    assert handle.status is None and handle.rerouted
    assert handle.sent["x-llm-gateway-upstream"] == "router-0"
    assert handle.sent["authorization"] == "Bearer upstream-secret"
    open_model = front(model="open-c")
    assert open_model.sent["x-llm-gateway-upstream"] == "router-2"
    assert open_model.sent["authorization"] is None  # the gateway's key is not passed on


def test_apis_the_router_does_not_serve_go_to_the_models_service(front):
    for path in ("/v1/rerank", "/v2/rerank", "/rerank", "/v1/score", "/tokenize", "/pooling"):
        handle = front(path=path, model="embed-b")
        assert handle.status is None, path
        assert handle.sent["x-llm-gateway-upstream"] == "service-1", path
        assert handle.sent["authorization"] == "Bearer upstream-secret"
    assert front(path="/v1/embeddings", model="embed-b").sent["x-llm-gateway-upstream"] == "router-1"
    waiting = front(path="/v1/rerank", model="open-c")  # no Service address yet
    assert waiting.status == "503" and error_of(waiting)["code"] == "model_not_ready"
    assert waiting.retry_after == "30"


def test_an_upstream_503_tells_the_client_when_to_retry(front):
    response = front.lua.globals().response
    assert response("503", None)["retry-after"] == "30"  # e.g. a model that did not wake in time
    assert response("503", "5")["retry-after"] == "5"  # the upstream's own advice wins
    assert response("200", None)["retry-after"] is None
    assert response("429", None)["retry-after"] is None


def test_missing_or_wrong_keys_get_401(front):
    for key in (None, "wrong", "upstream-secret", "gw-secret\n"):
        handle = front(key=key)
        assert handle.status == "401", key
        assert error_of(handle)["code"] == "invalid_api_key"
        assert handle.sent["x-llm-gateway-upstream"] is None


def test_a_rotated_key_applies_without_a_restart(front):
    (front.tmp_path / "gateway").write_text("rotated")
    assert front(key="gw-secret").status == "401"
    assert front(key="rotated").status is None


def test_unknown_and_missing_models(front):
    handle = front(model='no"such\\model')
    assert handle.status == "404"
    error = error_of(handle)  # valid JSON whatever the name holds
    assert error == {"message": "The model 'no\"such\\model' does not exist here: GET /v1/models lists the models "
                                "this gateway serves.", "type": "invalid_request_error", "param": "model",
                     "code": "model_not_found"}
    missing = front(model=None)
    assert missing.status == "400" and error_of(missing)["code"] == "model_required"


def test_models_listing_and_health(front):
    listing = front(method="GET", path="/v1/models?x=1", model=None)
    assert listing.status == "200"
    assert [m["id"] for m in json.loads(listing.body)["data"]] == ["chat-a", "embed-b", "open-c"]
    assert front(method="GET", path="/health", model=None).status == "200"
    assert front(method="GET", path="/v1/models", model=None, key=None).status == "401"


def test_only_vllms_model_apis_reach_an_upstream(front):
    for path in ("/workers", "/add_worker?url=http://x", "/flush_cache", "/list_workers", "/metrics"):
        handle = front(path=path)
        assert handle.status == "404", path
        assert handle.sent["x-llm-gateway-upstream"] is None
    for path in ("/v1/embeddings", "/v2/rerank", "/rerank", "/score", "/tokenize"):
        assert front(path=path).status is None, path


def test_a_missing_upstream_key_file_is_a_503(front):
    (front.tmp_path / "rag").unlink()
    handle = front()
    assert handle.status == "503" and error_of(handle)["type"] == "server_error"


def test_a_json_media_type_with_parameters_or_capitals_reaches_json_to_metadata_bare():
    """content_type.lua runs before json_to_metadata, which reads the model only from exactly
    "application/json" (checked in Envoy itself by the gateway test on the real node)."""
    lua = lupa.LuaRuntime()
    lua.execute(config_map(gateway(), ROUTES)["data"]["content_type.lua"])
    lua.execute(HARNESS)
    for sent, seen in [("application/json; charset=utf-8", "application/json"), ("Application/JSON", "application/json"),
                       (" application/json;charset=UTF-8", "application/json"), ("application/json", "application/json"),
                       ("text/plain", "text/plain"), ("application/jsonl", "application/jsonl")]:
        handle = lua.globals().request(lua.table_from({":method": "POST", "content-type": sent}), None)
        assert handle.sent["content-type"] == seen, sent
    assert lua.globals().request(lua.table_from({":method": "GET"}), None).sent["content-type"] is None
