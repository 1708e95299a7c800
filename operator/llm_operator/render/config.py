"""Operator-wide settings the renderer needs, and the defaults it applies to a spec.

Defaults live here and only here: the API models keep unset fields as None so the user's object is
never rewritten, and every rendered value that was not in the spec comes from one function below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from llm_runtime.layout import ModelSource, parse_source
from llm_runtime.versions import RUNTIME_IMAGE

from ..api.models import ModelSpec, RoleSpec

CONTAINER_PORT = 8000
CACHE_MOUNT_PATH = "/models"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_SERVICE_PORT = 8000
DEFAULT_STARTUP_TIMEOUT_SECONDS = 1800
SHM_GI_PER_GPU = 2
STARTUP_PROBE_PERIOD_SECONDS = 10


@dataclass(frozen=True)
class RenderConfig:
    """How this operator installation renders every LLMDeployment (set by `llm-operator run` flags)."""

    image: str = RUNTIME_IMAGE
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    # Mirrors for the hubs, handed to the download init container (MODELSCOPE_ENDPOINT / HF_ENDPOINT).
    hub_endpoints: dict[str, str] = field(default_factory=dict)


def served_name(model: ModelSpec) -> str:
    """`--served-model-name`: the spec's, else the source's last segment (`Qwen2.5-7B-Instruct`)."""
    if model.servedName:
        return model.servedName
    source = parse_source(model.source)
    return (source.path if source.scheme == "pvc" else source.repo).rstrip("/").rsplit("/", 1)[-1]


def parallelism(role: RoleSpec) -> tuple[int, int]:
    """(tensor, pipeline) parallel sizes. The CRD guarantees tensor x pipeline == gpus."""
    gpus = role.gpus or 1
    pipeline = role.pipelineParallelSize or 1
    tensor = role.tensorParallelSize or gpus // pipeline
    return tensor, pipeline


def shm_size(role: RoleSpec) -> str:
    """/dev/shm size: the spec's, else 2Gi per GPU (NCCL buffers for tensor parallelism live there)."""
    return role.shmSize or f"{SHM_GI_PER_GPU * (role.gpus or 1)}Gi"


def startup_failure_threshold(role: RoleSpec) -> int:
    """Startup probe failures allowed: vLLM answers /health only once the weights are loaded."""
    timeout = role.startupTimeoutSeconds or DEFAULT_STARTUP_TIMEOUT_SECONDS
    return math.ceil(timeout / STARTUP_PROBE_PERIOD_SECONDS)


def model_source(model: ModelSpec) -> ModelSource:
    return parse_source(model.source)
