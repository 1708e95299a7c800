"""The LLMDeployment kind (llmops.dev/v1alpha1): roles of vLLM pods (workload.py) behind
Services, how they scale, and the weights cache they share.

Field names are the API's camelCase names. Optional fields default to None and stay None: defaults
are applied by the renderer (see `llm_operator.render.config`), never written into the user's
object, so GitOps tools see exactly what they applied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .meta import Condition, ObjectMeta, SecretKeySelector, SecretReference, service_name_rules
from .rules import Rule, SpecModel, is_set
from .types import DnsLabel, ObjectName, Quantity
from .workload import (
    COMPILE_CACHE_DESCRIPTION,
    CompileCacheStatus,
    EngineSpec,
    GenerativeEngineSpec,
    ModelSpec,
    PoolingEngineSpec,
    WorkerSpec,
)

KIND = "LLMDeployment"


PLURAL = "llmdeployments"


SINGULAR = "llmdeployment"


SHORT_NAMES = ["llmd"]


ROLES = ("llm", "embedding", "rerank")


# The longest child name is "<name>-embedding"; a Service name is a DNS-1035 label (<= 63).
MAX_NAME_LENGTH = 63 - len("-embedding")


# A decimal number for KEDA's threshold. The CEL rules below check the pattern again before
# double(): the API server evaluates them even on a value that fails the pattern.
TARGET_PATTERN = r"^[0-9]{1,6}([.][0-9]{1,6})?$"  # [.], not \., so the CEL string needs no escape


_CEL_TARGET = f"has(self.target) && self.target.matches('{TARGET_PATTERN}')"


def _target(scaling: Any) -> float | None:
    """The target as a number, or None when it is absent or not a number (the pattern reports that)."""
    return float(scaling.target) if scaling.target and re.fullmatch(TARGET_PATTERN, scaling.target) else None


class Autoscaling(SpecModel):
    """Who sets the number of pods instead of `replicas`, and on what signal."""

    provider: Literal["KEDA", "External"] | None = Field(
        None,
        description=(
            "`KEDA` (default): the operator renders a KEDA ScaledObject `<name>-<role>` that scales the role's "
            "Deployment on one of its pods' vLLM metrics, read from Prometheus; KEDA must be installed. "
            "`External`: an autoscaler you run (an HPA on any metrics adapter, or your own ScaledObject) sets the "
            "Deployment's replicas. Either way the operator never writes them, and hands the field over without "
            "resetting it when a role switches from `replicas`. See docs/autoscaling.md."
        ),
    )
    minReplicas: int | None = Field(None, ge=0, le=1000, description="KEDA: fewest pods. Default 1.")
    maxReplicas: int | None = Field(None, ge=1, le=1000, description="KEDA: most pods. Required with KEDA.")
    metric: Literal["RequestsWaiting", "RequestsRunning", "KVCacheUsage"] | None = Field(
        None,
        description=(
            "KEDA: what adds pods. `RequestsWaiting` (default, `vllm:num_requests_waiting`): requests queued "
            "per pod. `RequestsRunning` (`vllm:num_requests_running`): requests being generated per pod. "
            "`KVCacheUsage` (`vllm:kv_cache_usage_perc`): KV-cache usage per pod, 0 to 1."
        ),
    )
    target: str | None = Field(
        None,
        pattern=TARGET_PATTERN,
        description=(
            "KEDA: the metric's per-pod average above which pods are added, a decimal number. "
            "Default 4 (RequestsWaiting), 16 (RequestsRunning), 0.8 (KVCacheUsage)."
        ),
    )
    scaleDownDelaySeconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description=(
            "KEDA: how long the metric must stay low before pods are removed. Default 300: a vLLM pod is "
            "useful only once its model is loaded, so removing one early costs a cold start later."
        ),
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.provider) || self.provider != 'External' || (!has(self.minReplicas) && !has(self.maxReplicas)"
            " && !has(self.metric) && !has(self.target) && !has(self.scaleDownDelaySeconds))",
            "with provider External your own autoscaler holds the settings: remove minReplicas, maxReplicas, "
            "metric, target and scaleDownDelaySeconds, or use provider KEDA",
            lambda a: a.provider != "External" or all(
                v is None for v in (a.minReplicas, a.maxReplicas, a.metric, a.target, a.scaleDownDelaySeconds)),
            ".provider",
        ),
        Rule(
            "(has(self.provider) && self.provider == 'External') || has(self.maxReplicas)",
            "autoscaling.maxReplicas is required with provider KEDA (the default): the most pods the role may have",
            lambda a: a.provider == "External" or a.maxReplicas is not None,
            ".maxReplicas",
        ),
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must not exceed maxReplicas",
            lambda a: a.minReplicas is None or a.maxReplicas is None or a.minReplicas <= a.maxReplicas,
            ".minReplicas",
        ),
        Rule(
            f"!({_CEL_TARGET}) || double(self.target) > 0.0",
            "autoscaling.target must be above 0",
            lambda a: (target := _target(a)) is None or target > 0,
            ".target",
        ),
        Rule(
            f"!({_CEL_TARGET}) || !has(self.metric) || self.metric != 'KVCacheUsage' || double(self.target) <= 1.0",
            "autoscaling.target of metric KVCacheUsage is a fraction of the KV cache, at most 1 (0.8 is 80 %)",
            lambda a: (target := _target(a)) is None or a.metric != "KVCacheUsage" or target <= 1,
            ".target",
        ),
    )


class RoleSpec(WorkerSpec):
    """One served model: a Deployment of vLLM pods and a Service."""

    replicas: int | None = Field(None, ge=0, le=1000, description="Number of pods. Default 1. 0 keeps the objects but frees the GPUs.")
    autoscaling: Autoscaling | None = Field(
        None, description="Leave the number of pods to an autoscaler. Excludes `replicas`.")
    startupTimeoutSeconds: int | None = Field(
        None,
        ge=60,
        le=86400,
        description="How long vLLM may take to load the model before the pod is restarted. Default 1800 (30 minutes).",
    )
    if TYPE_CHECKING:  # each kind of role declares them, with its own engine settings
        model: ModelSpec
        engine: EngineSpec | None

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.replicas) || !has(self.autoscaling)",
            "replicas and autoscaling exclude each other: with autoscaling the autoscaler sets the number of pods",
            lambda r: r.replicas is None or r.autoscaling is None,
            ".autoscaling",
        ),
    ) + WorkerSpec.RULES


class LLMRoleSpec(RoleSpec):
    """The chat/completions model (OpenAI-compatible `/v1/chat/completions`)."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: GenerativeEngineSpec | None = Field(None, description="vLLM engine settings.")


class PoolingRoleSpec(RoleSpec):
    """An embedding (`/v1/embeddings`) or rerank (`/v1/rerank`, `/v1/score`) model, run with `--runner pooling`."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: PoolingEngineSpec | None = Field(None, description="vLLM engine settings.")


class CacheSpec(SpecModel):
    """The volume that holds downloaded weights, shared by all pods and roles of this resource.

    Without it each pod downloads into its own emptyDir, and every restart downloads again."""

    size: Quantity | None = Field(None, description="Create a PersistentVolumeClaim `<name>-cache` of this size.")
    storageClassName: str | None = Field(None, max_length=253, description="StorageClass of the new claim. Default: the cluster's default class.")
    accessMode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] | None = Field(
        None,
        description="Access mode of the new claim. Default ReadWriteMany, so pods on different nodes share it.",
    )
    existingClaim: ObjectName | None = Field(None, description="Use this existing PersistentVolumeClaim instead of creating one.")
    compileCache: bool | None = Field(None, description=COMPILE_CACHE_DESCRIPTION)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.size) != has(self.existingClaim)",
            "set exactly one of cache.size (a new claim) and cache.existingClaim",
            lambda c: is_set(c.size) != is_set(c.existingClaim),
        ),
        Rule(
            "!has(self.existingClaim) || (!has(self.storageClassName) && !has(self.accessMode))",
            "storageClassName and accessMode describe a new claim: they cannot be set with existingClaim",
            lambda c: not is_set(c.existingClaim) or not (is_set(c.storageClassName) or is_set(c.accessMode)),
        ),
    )


class ServiceSpec(SpecModel):
    """How the role Services are exposed."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = Field(
        None,
        description="Service type. Default ClusterIP. NodePort and LoadBalancer need apiKeySecretRef (or allowUnauthenticated).")
    port: int | None = Field(None, ge=1, le=65535, description="Service port. Default 8000.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the Services (load balancer settings).")
    allowUnauthenticated: bool | None = Field(
        None,
        description=(
            "Allow a NodePort or LoadBalancer Service without apiKeySecretRef: anyone who reaches a node or the load "
            "balancer can then use the model. Only for endpoints meant to be open (a private network you trust)."
        ),
    )
    allowedNamespaces: list[DnsLabel] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description=(
            "Let in only pods of these namespaces, with a NetworkPolicy `<name>-ingress` over every role's pods "
            "(serving port only). "
            "List this resource's own namespace too if clients run beside it. Needs a network plugin that enforces "
            "NetworkPolicy. Default: no NetworkPolicy."
        ),
    )


class LLMDeploymentSpec(SpecModel):
    """What to serve. At least one of llm, embedding and rerank is required."""

    llm: LLMRoleSpec | None = Field(None, description="The chat/completions model.")
    embedding: PoolingRoleSpec | None = Field(None, description="The embedding model.")
    rerank: PoolingRoleSpec | None = Field(None, description="The reranker (cross-encoder) model.")
    image: str | None = Field(
        None, min_length=1, max_length=512, description="Runtime image (vLLM plus llm-runtime). Default: the image this operator version pins."
    )
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="Pull policy of the runtime image.")
    cache: CacheSpec | None = Field(None, description="Shared volume for downloaded weights. Without it each pod "
                                    "downloads into its own emptyDir on the node's disk, again on every start.")
    apiKeySecretRef: SecretKeySelector | None = Field(
        None, description="Secret key holding the API key clients must send; given to vLLM as VLLM_API_KEY, never as an argument."
    )
    credentialsSecretRef: SecretReference | None = Field(
        None,
        description="Secret with hub tokens for private or gated models: keys `MODELSCOPE_API_TOKEN` and/or `HF_TOKEN`.",
    )
    service: ServiceSpec | None = Field(None, description="Service settings for every role.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.llm) || has(self.embedding) || has(self.rerank)",
            "at least one of spec.llm, spec.embedding and spec.rerank is required",
            lambda s: any(getattr(s, role) is not None for role in ROLES),
        ),
        Rule(
            "!has(self.service) || !has(self.service.type) || self.service.type == 'ClusterIP'"
            " || has(self.apiKeySecretRef) || (has(self.service.allowUnauthenticated) && self.service.allowUnauthenticated)",
            "a NodePort or LoadBalancer Service puts the model on the network: set apiKeySecretRef, or "
            "service.allowUnauthenticated: true if the endpoint is meant to be open",
            lambda s: s.service is None or s.service.type in (None, "ClusterIP") or s.apiKeySecretRef is not None
            or s.service.allowUnauthenticated is True,
            ".service.type",
        ),
    )

    def roles(self) -> dict[str, RoleSpec]:
        """The roles that are set, in a fixed order."""
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}


class RoleStatus(BaseModel):
    """What is running for one role."""

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(None, description="Pods wanted.")
    readyReplicas: int | None = Field(None, description="Pods ready to serve.")
    url: str | None = Field(None, description="In-cluster OpenAI-compatible base URL.")
    servedName: str | None = Field(None, description="Model name to send in requests.")
    compileCache: CompileCacheStatus | None = Field(
        None, description="The newest engine start of this role with a compile cache: whether it reused compiled "
                         "files (read from its log, by an operator allowed to: the chart's operator.readPodLogs).")


class LLMDeploymentStatus(BaseModel):
    """What the operator observed. Written only by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(None, description="The metadata.generation last reconciled.")
    phase: Literal["Pending", "Downloading", "Starting", "Ready", "Idle", "Degraded", "Failed"] | None = Field(
        None, description="Summary: Pending, Downloading, Starting, Ready, Idle (a role scaled to zero by its "
                          "autoscaler), Degraded or Failed."
    )
    rolesReady: str | None = Field(None, description="Roles ready out of roles requested, for example `2/3`.")
    conditions: list[Condition] | None = Field(None, description="Ready, Progressing and Degraded.")
    roles: dict[str, RoleStatus] | None = Field(None, description="Per role: replicas, ready replicas, URL and served name.")


class LLMDeployment(SpecModel):
    """An LLMDeployment as read from a file or the API server. Its RULES sit at the CRD's root,
    where CEL can see metadata.name."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: Literal["llmops.dev/v1alpha1"]
    kind: Literal["LLMDeployment"]
    metadata: ObjectMeta
    spec: LLMDeploymentSpec
    status: dict[str, Any] | None = None  # written by the operator; never read back as input

    # Names must be DNS-1035 labels short enough for "<name>-embedding" to stay a valid Service name.
    RULES: ClassVar[tuple[Rule, ...]] = service_name_rules(MAX_NAME_LENGTH, "child Services are named <name>-embedding")
