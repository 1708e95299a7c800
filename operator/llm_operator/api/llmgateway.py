"""The LLMGateway API (llmops.dev/v1alpha1): one OpenAI endpoint for the models of the LLMDeployments
it selects in its namespace, routed on the request's `model` field.

Like every kind's, optional fields stay None and the renderer applies defaults (render/gateway/).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .meta import Condition, ObjectMeta, SecretKeySelector, SecretReference, service_name_rules
from .rules import Rule, SpecModel
from .types import Quantity
from .workload import Resources, Scheduling

GATEWAY_KIND = "LLMGateway"
GATEWAY_PLURAL = "llmgateways"
GATEWAY_SINGULAR = "llmgateway"
GATEWAY_SHORT_NAMES = ["llmgw"]

# Children are named "<name>-gateway"; a Service name is a DNS-1035 label (<= 63).
MAX_GATEWAY_NAME_LENGTH = 63 - len("-gateway")

# What users ask for, and vLLM router's policy that does it (`vllm-router --policy`).
ROUTING_POLICIES = {
    "PrefixAware": "cache_aware",  # requests that share a prefix go to the replica that has it cached
    "RoundRobin": "round_robin",
    "LeastLoaded": "power_of_two",  # the less busy of two replicas picked at random
}


class LabelSelector(SpecModel):
    """Selects LLMDeployments by their labels. Empty: every LLMDeployment in the namespace."""

    matchLabels: dict[str, str] | None = Field(
        None, max_length=32, description="LLMDeployments whose labels include all of these.")


class GatewayServiceSpec(SpecModel):
    """How the gateway's Service is exposed."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = Field(
        None, description="Service type. Default ClusterIP. NodePort and LoadBalancer need apiKeySecretRef (or allowUnauthenticated).")
    port: int | None = Field(None, ge=1, le=65535, description="Service port. Default 8000.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the Service (load balancer settings).")
    allowUnauthenticated: bool | None = Field(
        None,
        description=(
            "Allow a NodePort or LoadBalancer Service without apiKeySecretRef: anyone who reaches a node or the load "
            "balancer can then use every model behind the gateway. Only for endpoints meant to be open."
        ),
    )


class ChatPageStorage(SpecModel):
    """The claim that keeps the chat page's data: its users, chats and settings (one SQLite file)."""

    size: Quantity | None = Field(None, description="Size of the PersistentVolumeClaim `<name>-chat`. Default 1Gi.")
    storageClassName: str | None = Field(None, max_length=253, description="StorageClass of the claim. Default: the cluster's default class.")


class ChatPageSpec(SpecModel):
    """A chat page in the browser (Open WebUI) for the gateway's chat models: it sends every request
    through the gateway, with the gateway's key. docs/chat-page.md."""

    adminSecretRef: SecretReference | None = Field(
        None,
        description=(
            "Secret with keys `email` and `password`: the administrator account the page creates at its first start. "
            "People sign in with it, and the administrator adds accounts; nobody can sign up."
        ),
    )
    allowUnauthenticated: bool | None = Field(
        None,
        description=(
            "Run the page without sign-in, for a gateway without apiKeySecretRef only: every visitor is the page's "
            "administrator. Only on a fresh page (Open WebUI refuses to drop sign-in once accounts exist)."
        ),
    )
    storage: ChatPageStorage | None = Field(None, description="The claim for the page's data. It is kept when chatPage is removed.")
    resources: Resources | None = Field(None, description="CPU and memory of the page's container. Default: 250m CPU, 1Gi memory.")
    image: str | None = Field(
        None, min_length=1, max_length=512, description="Chat page image. Default: the Open WebUI image this operator version pins.")
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="Pull policy of the chat page image.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.adminSecretRef) != (has(self.allowUnauthenticated) && self.allowUnauthenticated)",
            "set exactly one of chatPage.adminSecretRef (sign-in with an administrator account) and "
            "chatPage.allowUnauthenticated: true (no sign-in: whoever reaches the page uses the gateway's key)",
            lambda c: (c.adminSecretRef is not None) != (c.allowUnauthenticated is True),
        ),
    )


class LLMGatewaySpec(SpecModel):
    """Which models to serve behind one endpoint, and how to pick a replica."""

    selector: LabelSelector = Field(description="The LLMDeployments of this namespace whose roles the gateway serves.")
    policy: Literal["PrefixAware", "RoundRobin", "LeastLoaded"] | None = Field(
        None,
        description=(
            "How a request picks one of a model's ready replicas. PrefixAware (default): requests sharing a prompt "
            "prefix go to the replica that served it, so vLLM's prefix cache answers them sooner. RoundRobin: in turn. "
            "LeastLoaded: the less busy of two replicas."
        ),
    )
    apiKeySecretRef: SecretKeySelector | None = Field(
        None,
        description=(
            "Secret key holding the key clients must send (`Authorization: Bearer <key>`). Clients never see the "
            "LLMDeployments' own keys: the gateway sends each model's key upstream itself."
        ),
    )
    replicas: int | None = Field(None, ge=0, le=100, description="Gateway pods. Default 1.")
    image: str | None = Field(
        None, min_length=1, max_length=512, description="Gateway image (vLLM router and Envoy). Default: the image this operator version pins.")
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="Pull policy of the gateway image.")
    service: GatewayServiceSpec | None = Field(None, description="Service settings.")
    scheduling: Scheduling | None = Field(None, description="Where the gateway pods may run (no GPU needed).")
    chatPage: ChatPageSpec | None = Field(
        None, description="Also run a chat page in the browser (Open WebUI) for the gateway's chat models. Off when absent.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.service) || !has(self.service.type) || self.service.type == 'ClusterIP'"
            " || has(self.apiKeySecretRef) || (has(self.service.allowUnauthenticated) && self.service.allowUnauthenticated)",
            "a NodePort or LoadBalancer Service puts every model behind the gateway on the network: set apiKeySecretRef, "
            "or service.allowUnauthenticated: true if the endpoint is meant to be open",
            lambda s: s.service is None or s.service.type in (None, "ClusterIP") or s.apiKeySecretRef is not None
            or s.service.allowUnauthenticated is True,
            ".service.type",
        ),
        Rule(
            "!has(self.apiKeySecretRef) || !has(self.chatPage) || !has(self.chatPage.allowUnauthenticated)"
            " || !self.chatPage.allowUnauthenticated",
            "chatPage.allowUnauthenticated: true makes every visitor the page's administrator, who can read the key "
            "it calls the gateway with (Open WebUI's GET /openai/config): on a gateway with apiKeySecretRef, sign "
            "people in with chatPage.adminSecretRef instead",
            lambda s: s.apiKeySecretRef is None or s.chatPage is None or s.chatPage.allowUnauthenticated is not True,
            ".chatPage.allowUnauthenticated",
        ),
    )


class GatewayModelStatus(BaseModel):
    """One model the gateway routes to."""

    model_config = ConfigDict(extra="forbid")

    llmDeployment: str = Field(description="The LLMDeployment that serves it.")
    role: str = Field(description="Its role: llm, embedding or rerank.")
    readyReplicas: int = Field(description="Replicas ready to serve, as the LLMDeployment's status reports them.")


class ChatPageStatus(BaseModel):
    """Where the chat page is and whether it is up."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="In-cluster address of the page (`kubectl port-forward service/<name>-chat` to open it).")
    ready: bool = Field(description="Whether the page's pod is ready.")
    models: list[str] = Field(description="The chat models it lists: the gateway's models served by an `llm` role.")


class LLMGatewayStatus(BaseModel):
    """What the operator observed. Written only by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(None, description="The metadata.generation last reconciled.")
    phase: Literal["Pending", "Ready", "Degraded", "Failed"] | None = Field(None, description="Pending, Ready, Degraded or Failed.")
    url: str | None = Field(None, description="In-cluster OpenAI-compatible base URL.")
    models: dict[str, GatewayModelStatus] | None = Field(None, description="Per served model name: where it comes from and its ready replicas.")
    chatPage: ChatPageStatus | None = Field(None, description="The chat page, when spec.chatPage is set.")
    conditions: list[Condition] | None = Field(None, description="Ready, Progressing and Degraded.")


class LLMGateway(SpecModel):
    """An LLMGateway as read from a file or the API server."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: Literal["llmops.dev/v1alpha1"]
    kind: Literal["LLMGateway"]
    metadata: ObjectMeta
    spec: LLMGatewaySpec
    status: dict[str, Any] | None = None  # written by the operator; never read back as input

    RULES: ClassVar[tuple[Rule, ...]] = service_name_rules(MAX_GATEWAY_NAME_LENGTH, "its Service is named <name>-gateway")
