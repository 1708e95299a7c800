"""A role worked out once: every decision the builders need, made in one place.

The builders in `pod.py` only read a `RolePlan`; none of them looks at the spec's defaults, parses
a source or computes a path again. This is the shape of CloudNativePG's `pkg/specs`: decide
first, then assemble objects from the decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_runtime.layout import ModelSource, model_key, model_path

from ..api.llmdeployment import LLMDeployment, LLMDeploymentSpec, RoleSpec
from . import loader
from .config import CACHE_MOUNT_PATH, RenderConfig, image, on_cpu, parallelism, served_name
from .meta import child_name, labels, selector_labels
from .storage import cache_volume, keeps_compiled_files


@dataclass(frozen=True)
class RolePlan:
    """One role of one LLMDeployment, with the operator's defaults applied."""

    role_name: str  # llm | embedding | rerank
    role: RoleSpec
    spec: LLMDeploymentSpec
    owner: str
    namespace: str | None
    name: str  # of the Deployment and the Service
    labels: dict[str, str]
    selector: dict[str, str]
    replicas: int | None  # None: an autoscaler owns the field
    image: str
    gpu_resource: str | None  # None on CPU
    source: ModelSource
    model_path: str  # what `vllm serve` is given
    served_name: str
    tensor_parallel: int
    pipeline_parallel: int
    tokenizer_path: str | None
    loaders: tuple[loader.Loader, ...]
    cache_volume: dict[str, Any]
    compile_key: str | None  # the model key of the compile cache (llm_runtime.compile_cache); None: no cache


def plan_role(llmd: LLMDeployment, role_name: str, role: RoleSpec, config: RenderConfig) -> RolePlan:
    owner = llmd.metadata.name
    model = role.model
    tensor, pipeline = parallelism(role)
    compile_key = model_key(model.parsed_source, model.revision) if keeps_compiled_files(llmd, model.parsed_source) else None
    return RolePlan(
        role_name=role_name,
        role=role,
        spec=llmd.spec,
        owner=owner,
        namespace=llmd.metadata.namespace,
        name=child_name(owner, role_name),
        labels=labels(owner, role_name),
        selector=selector_labels(owner, role_name),
        replicas=None if role.autoscaling else (1 if role.replicas is None else role.replicas),
        image=image(role, llmd.spec.image, config),
        gpu_resource=None if on_cpu(role) else (role.gpuResourceName or config.gpu_resource),
        source=model.parsed_source,
        model_path=model_path(CACHE_MOUNT_PATH, model.parsed_source, model.revision, model.file),
        served_name=served_name(model),
        tensor_parallel=tensor,
        pipeline_parallel=pipeline,
        tokenizer_path=loader.tokenizer_path(model.tokenizer),
        loaders=loader.loaders(llmd.spec, model, config, compile_dir=compile_key is not None),
        cache_volume=cache_volume(llmd, model.parsed_source),
        compile_key=compile_key,
    )
