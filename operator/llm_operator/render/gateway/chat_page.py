"""An LLMGateway's chat page: Open WebUI, pointed at the gateway's own endpoint with the gateway's key.

Three objects, all named `<gateway>-chat`: a PersistentVolumeClaim for the page's data (its SQLite
database, uploads and the key that signs its sessions), a Deployment of one pod, and a Service.

- One pod, replaced with Recreate: the SQLite file on a ReadWriteOnce claim has one writer.
- It lists exactly the gateway's chat models (routes of `llm` roles): Open WebUI takes a fixed model
  list per connection (OPENAI_API_CONFIGS), so embedding and rerank models never show.
- Offline: no update check, no telemetry, no model downloads. No embedding model is loaded into
  the page's own pod (RAG_EMBEDDING_ENGINE=openai): the image carries no torch to run one.
- Built-in tools are not offered to models (`builtin_tools: false`): a request with tools needs vLLM
  to run with a tool parser, which a plain LLMDeployment does not.
- Keys only by reference: the gateway's key and the admin's password come from their Secrets as
  environment variables the kubelet fills in; they are never in the pod spec.

- It reaches the gateway at the gateway Service's cluster IP, not its DNS name: it works in a cluster
  without cluster DNS too, and the IP stays as long as the Service does.

Pure: the gateway's address and its chat models come in from render_gateway (`__init__.py`).
"""

from __future__ import annotations

import json
from typing import Any

from ...api.llmgateway import ChatPageSpec, LLMGateway
from ...names import CHAT_PAGE_LABEL
from ..config import placement
from ..meta import app_labels, object_meta
from ..pod import container_security, pod_security

CHAT_PAGE_PORT = 8080
DATA_DIR = "/data"
DEFAULT_STORAGE = "1Gi"
DEFAULT_CPU = "250m"
DEFAULT_MEMORY = "1Gi"
# A first start creates the database (about 60 migrations) before it listens: about 15 s on two
# cores, more on a slow disk. The startup probe allows 5 minutes before the kubelet restarts it.
STARTUP_SECONDS = 300

# Open WebUI's settings that do not depend on the gateway. ENABLE_PERSISTENT_CONFIG=false makes these
# win over what its database holds, so a changed spec is what the page does after its restart.
_FIXED_ENV = {
    "DATA_DIR": DATA_DIR,
    "STATIC_DIR": f"{DATA_DIR}/static",
    "ENABLE_PERSISTENT_CONFIG": "false",
    "ENABLE_OLLAMA_API": "false",
    "ENABLE_OPENAI_API": "true",
    "DEFAULT_MODEL_METADATA": json.dumps({"capabilities": {"builtin_tools": False}}),
    "BYPASS_MODEL_ACCESS_CONTROL": "true",  # every signed-in user sees the gateway's chat models
    "ENABLE_SIGNUP": "false",
    "ENABLE_EVALUATION_ARENA_MODELS": "false",
    # Each of these would send an extra request to the chat model per message.
    "ENABLE_TITLE_GENERATION": "false",
    "ENABLE_TAGS_GENERATION": "false",
    "ENABLE_FOLLOW_UP_GENERATION": "false",
    "ENABLE_AUTOCOMPLETE_GENERATION": "false",
    "RAG_EMBEDDING_ENGINE": "openai",
    # Nothing leaves the cluster: no update check, no telemetry, no hub downloads.
    "OFFLINE_MODE": "true",
    "HF_HUB_OFFLINE": "1",
    "ENABLE_VERSION_UPDATE_CHECK": "false",
    "SCARF_NO_ANALYTICS": "true",
    "DO_NOT_TRACK": "true",
    "ANONYMIZED_TELEMETRY": "false",
}


def chat_page_name(gateway: str) -> str:
    return f"{gateway}-chat"


def chat_page_labels(gateway: str) -> dict[str, str]:
    # Not the gateway's label: the gateway's Service selects its pods by that one.
    return {**app_labels("open-webui", gateway, "chat-page"), CHAT_PAGE_LABEL: gateway}


def chat_page_url(gateway: LLMGateway) -> str:
    name = chat_page_name(gateway.metadata.name)
    return f"http://{name}.{gateway.metadata.namespace or 'default'}.svc:{CHAT_PAGE_PORT}"


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(gateway: LLMGateway, page: ChatPageSpec, endpoint: str, models: list[str]) -> list[dict[str, Any]]:
    # With no chat model the connection is off: an empty model list would make Open WebUI ask the
    # gateway, which lists embedding and rerank models too.
    connection = {"enable": bool(models), "model_ids": models}
    env = [{"name": name, "value": value} for name, value in _FIXED_ENV.items()]
    env += [{"name": "OPENAI_API_BASE_URL", "value": endpoint},
            {"name": "OPENAI_API_CONFIGS", "value": json.dumps({"0": connection}, sort_keys=True)}]
    key = gateway.spec.apiKeySecretRef
    if key:
        env.append(_secret_env("OPENAI_API_KEY", key.name, key.key))
    if page.adminSecretRef:
        env += [{"name": "WEBUI_AUTH", "value": "true"},
                _secret_env("WEBUI_ADMIN_EMAIL", page.adminSecretRef.name, "email"),
                _secret_env("WEBUI_ADMIN_PASSWORD", page.adminSecretRef.name, "password")]
    else:
        env.append({"name": "WEBUI_AUTH", "value": "false"})
    return env


def _resources(page: ChatPageSpec) -> dict[str, Any]:
    resources = page.resources
    memory = (resources.memory if resources else None) or DEFAULT_MEMORY
    return {"requests": {"cpu": (resources.cpu if resources else None) or DEFAULT_CPU, "memory": memory},
            "limits": {"memory": memory}}


def _container(gateway: LLMGateway, page: ChatPageSpec, endpoint: str, models: list[str], image: str) -> dict[str, Any]:
    http = {"port": "http"}
    container = {
        "name": "open-webui",
        "image": image,
        "command": ["open-webui", "serve", "--host", "0.0.0.0", "--port", str(CHAT_PAGE_PORT)],
        # Open WebUI keeps the key that signs its sessions in its working directory: on the claim,
        # so sessions survive a restart.
        "workingDir": DATA_DIR,
        "env": _env(gateway, page, endpoint, models),
        "ports": [{"name": "http", "containerPort": CHAT_PAGE_PORT, "protocol": "TCP"}],
        "startupProbe": {"httpGet": {"path": "/health", **http}, "periodSeconds": 5, "timeoutSeconds": 5,
                         "failureThreshold": STARTUP_SECONDS // 5},
        "readinessProbe": {"httpGet": {"path": "/ready", **http}, "periodSeconds": 5, "timeoutSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health", **http}, "periodSeconds": 10, "timeoutSeconds": 5,
                          "failureThreshold": 6},
        "resources": _resources(page),
        "securityContext": {**container_security(), "readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "data", "mountPath": DATA_DIR}, {"name": "tmp", "mountPath": "/tmp"}],
    }
    if page.imagePullPolicy:
        container["imagePullPolicy"] = page.imagePullPolicy
    return container


def chat_page_claim(gateway: LLMGateway, page: ChatPageSpec) -> dict[str, Any]:
    name = gateway.metadata.name
    storage = page.storage
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"]}
    if storage and storage.storageClassName:
        spec["storageClassName"] = storage.storageClassName
    spec["resources"] = {"requests": {"storage": (storage.size if storage else None) or DEFAULT_STORAGE}}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": object_meta(chat_page_name(name), gateway.metadata.namespace, chat_page_labels(name)),
            "spec": spec}


def chat_page_deployment(gateway: LLMGateway, page: ChatPageSpec, endpoint: str, models: list[str],
                         image: str) -> dict[str, Any]:
    name = gateway.metadata.name
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,  # it never talks to the API server
        "enableServiceLinks": False,
        "securityContext": pod_security(),
    }
    pod.update(placement(gateway.spec.scheduling))  # beside the gateway's pods
    pod["containers"] = [_container(gateway, page, endpoint, models, image)]
    pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": chat_page_name(name)}},
                      {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": object_meta(chat_page_name(name), gateway.metadata.namespace, chat_page_labels(name)),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {CHAT_PAGE_LABEL: name}},
            # One writer of the SQLite file on a ReadWriteOnce claim: the old pod stops first.
            "strategy": {"type": "Recreate"},
            "template": {"metadata": {"labels": chat_page_labels(name)}, "spec": pod},
        },
    }


def chat_page_service(gateway: LLMGateway) -> dict[str, Any]:
    name = gateway.metadata.name
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": object_meta(chat_page_name(name), gateway.metadata.namespace, chat_page_labels(name)),
            "spec": {"type": "ClusterIP", "selector": {CHAT_PAGE_LABEL: name},
                     "ports": [{"name": "http", "port": CHAT_PAGE_PORT, "targetPort": "http", "protocol": "TCP"}]}}


def render_chat_page(gateway: LLMGateway, endpoint: str | None, models: list[str], image: str) -> list[dict[str, Any]]:
    """The page's claim, Service and Deployment for the gateway at `endpoint` (its OpenAI base URL)
    and its chat models (`models`, served names); none without spec.chatPage. Without an endpoint
    yet (the gateway's Service has no address), no Deployment: it would only restart once it has."""
    page = gateway.spec.chatPage
    if page is None:
        return []
    objects = [chat_page_claim(gateway, page), chat_page_service(gateway)]
    if endpoint:
        objects.append(chat_page_deployment(gateway, page, endpoint, models, page.image or image))
    return objects
