"""An LLMGateway's chat page (render/gateway/chat_page.py): off unless asked for, only the gateway's chat
models, keys only by reference, a restricted pod that keeps its data on a claim."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from llm_operator.api.llmgateway import LLMGateway
from llm_operator.names import GATEWAY_LABEL
from llm_operator.render import RenderConfig, render_gateway
from llm_operator.render.gateway.chat_page import DATA_DIR
from llm_operator.render.gateway.routes import GatewayRoute
from support import KEY, ROUTES, by_kind_and_name, gateway

ADMIN = {"adminSecretRef": {"name": "chat-admin"}}


GATEWAY_ADDRESS = "10.96.0.20:8000"  # the gateway Service's cluster IP and port


def page_objects(spec=None, routes=ROUTES, config=None, address=GATEWAY_ADDRESS):
    key = {"apiKeySecretRef": {"name": KEY.name, "key": KEY.key}}
    objects = by_kind_and_name(render_gateway(gateway({**key, **(spec or {})}), routes, config or RenderConfig(),
                                              address))
    return {kind: obj for (kind, name), obj in objects.items() if name == "shared-chat"}


def container(objects):
    return objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def env(objects):
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(objects)["env"]}


def test_there_is_no_chat_page_unless_asked_for():
    assert page_objects() == {}


def test_a_chat_page_is_a_claim_a_deployment_and_a_service_owned_by_the_gateway():
    objects = page_objects({"chatPage": ADMIN})
    assert set(objects) == {"PersistentVolumeClaim", "Deployment", "Service"}
    for obj in objects.values():
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "gw-uid"
    claim = objects["PersistentVolumeClaim"]["spec"]
    assert claim["accessModes"] == ["ReadWriteOnce"] and claim["resources"]["requests"]["storage"] == "1Gi"
    deployment = objects["Deployment"]["spec"]
    # One writer of its SQLite file: the old pod stops before the new one starts.
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    assert objects["Service"]["spec"]["ports"][0]["port"] == 8080


def test_the_page_starts_only_once_the_gateways_service_has_an_address():
    assert set(page_objects({"chatPage": ADMIN}, address=None)) == {"PersistentVolumeClaim", "Service"}


def test_the_page_pods_are_not_the_gateways():
    objects = page_objects({"chatPage": ADMIN})
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert GATEWAY_LABEL not in pod_labels  # the gateway's Service selects on it
    assert objects["Service"]["spec"]["selector"].items() <= pod_labels.items()


def test_it_lists_exactly_the_gateways_chat_models():
    variables = env(page_objects({"chatPage": ADMIN}))
    # The Service's address, not its DNS name: no cluster DNS needed.
    assert variables["OPENAI_API_BASE_URL"] == "http://10.96.0.20:8000/v1"
    # chat-a and open-c are llm roles; embed-b is an embedding model and is left out.
    assert json.loads(variables["OPENAI_API_CONFIGS"]) == {"0": {"enable": True, "model_ids": ["chat-a", "open-c"]}}


def test_with_no_chat_model_the_connection_is_off_rather_than_listing_everything():
    embedding_only = [GatewayRoute("embed-b", "rag", "embedding", KEY, "10.96.0.11:8000")]
    variables = env(page_objects({"chatPage": ADMIN}, routes=embedding_only))
    assert json.loads(variables["OPENAI_API_CONFIGS"]) == {"0": {"enable": False, "model_ids": []}}


def test_keys_and_the_admin_password_come_from_their_secrets_by_reference():
    objects = page_objects({"chatPage": ADMIN})
    variables = env(objects)
    assert variables["OPENAI_API_KEY"] == {"secretKeyRef": {"name": KEY.name, "key": KEY.key}}
    assert variables["WEBUI_ADMIN_EMAIL"] == {"secretKeyRef": {"name": "chat-admin", "key": "email"}}
    assert variables["WEBUI_ADMIN_PASSWORD"] == {"secretKeyRef": {"name": "chat-admin", "key": "password"}}
    assert variables["WEBUI_AUTH"] == "true" and variables["ENABLE_SIGNUP"] == "false"
    assert "WEBUI_SECRET_KEY" not in variables  # kept on the claim by Open WebUI itself (workingDir)
    assert container(objects)["workingDir"] == DATA_DIR


def test_a_gateway_without_a_key_gives_the_page_none():
    objects = by_kind_and_name(render_gateway(gateway({"chatPage": ADMIN}), ROUTES, RenderConfig(), GATEWAY_ADDRESS))
    assert "OPENAI_API_KEY" not in env({"Deployment": objects[("Deployment", "shared-chat")]})


def test_an_open_page_has_no_sign_in_and_no_admin():
    variables = env(page_objects({"chatPage": {"allowUnauthenticated": True}, "apiKeySecretRef": None}))
    assert variables["WEBUI_AUTH"] == "false"
    assert "WEBUI_ADMIN_EMAIL" not in variables and "WEBUI_ADMIN_PASSWORD" not in variables


def test_it_works_offline_and_sends_no_extra_requests_to_the_model():
    variables = env(page_objects({"chatPage": ADMIN}))
    assert variables["OFFLINE_MODE"] == "true" and variables["HF_HUB_OFFLINE"] == "1"
    assert variables["ENABLE_VERSION_UPDATE_CHECK"] == "false" and variables["ENABLE_OLLAMA_API"] == "false"
    assert variables["RAG_EMBEDDING_ENGINE"] == "openai"  # no local embedding model (the image has no torch)
    for task in ("TITLE", "TAGS", "FOLLOW_UP", "AUTOCOMPLETE"):
        assert variables[f"ENABLE_{task}_GENERATION"] == "false"
    # No hidden tools: vLLM refuses requests with tools unless it runs with a tool parser.
    assert json.loads(variables["DEFAULT_MODEL_METADATA"]) == {"capabilities": {"builtin_tools": False}}
    assert variables["ENABLE_PERSISTENT_CONFIG"] == "false"  # the spec wins over the page's database


def test_the_pod_is_restricted_and_keeps_its_data_on_the_claim():
    objects = page_objects({"chatPage": ADMIN})
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(objects)["securityContext"]
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"]: mount["name"] for mount in container(objects)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes[mounts[DATA_DIR]]["persistentVolumeClaim"] == {"claimName": "shared-chat"}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    probes = container(objects)
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes["startupProbe"]["failureThreshold"] * probes["startupProbe"]["periodSeconds"] >= 300


def test_image_size_and_resources_follow_the_spec_else_the_operators_defaults():
    default = page_objects({"chatPage": ADMIN}, config=RenderConfig(chat_page_image="registry.local/webui:1"))
    assert container(default)["image"] == "registry.local/webui:1"
    assert container(default)["resources"] == {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}
    custom = page_objects({"chatPage": {**ADMIN, "image": "mine:2", "imagePullPolicy": "Never",
                                        "storage": {"size": "10Gi", "storageClassName": "fast"},
                                        "resources": {"cpu": "1", "memory": "2Gi"}}})
    assert container(custom)["image"] == "mine:2" and container(custom)["imagePullPolicy"] == "Never"
    assert custom["PersistentVolumeClaim"]["spec"]["storageClassName"] == "fast"
    assert custom["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert container(custom)["resources"]["limits"] == {"memory": "2Gi"}


def test_a_changed_chat_model_set_restarts_the_page():
    before = page_objects({"chatPage": ADMIN})
    after = page_objects({"chatPage": ADMIN}, routes=ROUTES[:2])
    assert env(before)["OPENAI_API_CONFIGS"] != env(after)["OPENAI_API_CONFIGS"]


@pytest.mark.parametrize("page", [{}, {"allowUnauthenticated": False}, {**ADMIN, "allowUnauthenticated": True}])
def test_a_page_must_say_how_people_sign_in(page):
    with pytest.raises(ValidationError, match="chatPage.adminSecretRef"):
        gateway({"chatPage": page})


def test_a_page_without_sign_in_never_holds_the_gateway_s_key():
    """Every visitor of such a page is its administrator, and Open WebUI shows an administrator the
    key of each connection (GET /openai/config)."""
    with pytest.raises(ValidationError, match="chatPage.allowUnauthenticated: true makes every visitor"):
        gateway({"chatPage": {"allowUnauthenticated": True}, "apiKeySecretRef": {"name": "gw", "key": "key"}})


def test_the_spec_parses_as_the_crd_has_it():
    parsed = LLMGateway.model_validate({"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMGateway",
                                        "metadata": {"name": "g"}, "spec": {"selector": {}, "chatPage": ADMIN}})
    assert parsed.spec.chatPage.adminSecretRef.name == "chat-admin"


def test_an_ipv6_gateway_address_is_bracketed_in_the_page_s_url():
    variables = env(page_objects({"chatPage": ADMIN}, address="fd00:10:96::a1b2:8000"))
    assert variables["OPENAI_API_BASE_URL"] == "http://[fd00:10:96::a1b2]:8000/v1"
