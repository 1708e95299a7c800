"""Operator-wide settings the renderer needs, and the defaults it applies to a spec.

Defaults live here and only here: the API models keep unset fields as None so the user's object is
never rewritten, and every rendered value that was not in the spec comes from one function below.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from llm_runtime.versions import CHAT_PAGE_IMAGE, GATEWAY_IMAGE, RUNTIME_CPU_IMAGE, RUNTIME_IMAGE

from ..api.workload import ModelSpec, Scheduling, WorkerSpec

CONTAINER_PORT = 8000
CACHE_MOUNT_PATH = "/models"
# Where the engine mounts, writable, the compile directory of the weights volume (and nothing else of it).
COMPILE_MOUNT_PATH = "/compile-cache"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_SERVICE_PORT = 8000
DEFAULT_STARTUP_TIMEOUT_SECONDS = 1800
SHM_GI_PER_GPU = 2
CPU_SHM_SIZE = "1Gi"  # vLLM's CPU workers exchange little through /dev/shm; it counts against memory
DEFAULT_CPU_KV_CACHE_GIB = 1
# A start that reuses the weights and compiled files takes seconds: a long period would add up to
# itself to every such start. Before vLLM listens a probe is refused at once, so probing often is cheap.
STARTUP_PROBE_PERIOD_SECONDS = 2


@dataclass(frozen=True)
class RenderConfig:
    """How this operator installation renders every LLMDeployment (set by `llm-operator run` flags)."""

    image: str = RUNTIME_IMAGE
    cpu_image: str = RUNTIME_CPU_IMAGE  # roles with device CPU
    gateway_image: str = GATEWAY_IMAGE  # LLMGateways
    chat_page_image: str = CHAT_PAGE_IMAGE  # LLMGateways' chatPage
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    # Mirrors for the hubs, handed to the download init container (MODELSCOPE_ENDPOINT / HF_ENDPOINT).
    hub_endpoints: dict[str, str] = field(default_factory=dict)
    # Where KEDA's ScaledObjects read the vLLM metrics (roles with autoscaling provider KEDA).
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"


def served_name(model: ModelSpec) -> str:
    """`--served-model-name`: the spec's, else the source's last segment (`Qwen2.5-7B-Instruct`)."""
    if model.servedName:
        return model.servedName
    source = model.parsed_source
    return (source.path if source.scheme == "pvc" else source.repo).rstrip("/").rsplit("/", 1)[-1]


def parallelism(role: WorkerSpec) -> tuple[int, int]:
    """(tensor, pipeline) parallel sizes. The CRD guarantees tensor x pipeline == gpus."""
    gpus = role.gpus or 1
    pipeline = role.pipelineParallelSize or 1
    tensor = role.tensorParallelSize or gpus // pipeline
    return tensor, pipeline


def on_cpu(role: WorkerSpec) -> bool:
    return role.device == "CPU"


def shm_size(role: WorkerSpec) -> str:
    """/dev/shm size: the spec's, else 2Gi per GPU (NCCL buffers for tensor parallelism live there)."""
    if role.shmSize:
        return role.shmSize
    return CPU_SHM_SIZE if on_cpu(role) else f"{SHM_GI_PER_GPU * (role.gpus or 1)}Gi"


def image(role: WorkerSpec, spec_image: str | None, config: RenderConfig) -> str:
    """spec.image when set (for every role), else the operator's GPU or CPU runtime image."""
    return spec_image or (config.cpu_image if on_cpu(role) else config.image)


_BINARY_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 10**-3}


def quantity_bytes(quantity: str) -> float:
    """A Kubernetes quantity as a number (`1Gi` -> 1073741824, `1.5G` -> 1.5e9, `1e9` -> 1e9).

    Assumes the value already passed the CRD's quantity pattern."""
    match = re.fullmatch(r"([+-]?[0-9.]+)([eE][+-]?[0-9.]+|[KMGTPE]i|[kMGTPEm]?)", quantity)
    if not match:
        raise ValueError(f"{quantity!r} is not a Kubernetes quantity")
    number, suffix = match.groups()
    if suffix[:1] in ("e", "E"):
        return float(number + suffix)
    return float(number) * (_BINARY_SUFFIX.get(suffix) or _DECIMAL_SUFFIX[suffix])


def cpu_kv_cache_gib(role: WorkerSpec) -> int:
    """VLLM_CPU_KVCACHE_SPACE takes whole GiB: round kvCacheSize up, and never below 1."""
    if not role.kvCacheSize:
        return DEFAULT_CPU_KV_CACHE_GIB
    return max(1, math.ceil(quantity_bytes(role.kvCacheSize) / 2**30))


def startup_failure_threshold(startup_timeout_seconds: int | None) -> int:
    """Startup probe failures allowed: vLLM answers /health only once the weights are loaded."""
    timeout = startup_timeout_seconds or DEFAULT_STARTUP_TIMEOUT_SECONDS
    return math.ceil(timeout / STARTUP_PROBE_PERIOD_SECONDS)


def placement(scheduling: Scheduling | None, gpu_resource: str | None = None) -> dict[str, Any]:
    """The pod spec fields of a `Scheduling` that are set (nodeSelector, tolerations, affinity,
    priorityClassName, runtimeClassName, in that order). Pods that request `gpu_resource` also
    tolerate the taint `<gpu resource>:NoSchedule` that GPU nodes carry by convention (NVIDIA GPU
    operator, GKE, EKS)."""
    # by_alias: the core Affinity model names its fields in snake_case, with the API's names as aliases.
    fields = scheduling.model_dump(exclude_none=True, by_alias=True) if scheduling else {}
    if gpu_resource:
        gpu = {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
        fields["tolerations"] = [gpu] + [t for t in fields.get("tolerations") or () if t != gpu]
    return {field: fields[field] for field in
            ("nodeSelector", "tolerations", "affinity", "priorityClassName", "runtimeClassName") if fields.get(field)}

