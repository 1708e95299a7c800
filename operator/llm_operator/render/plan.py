"""A role worked out once: every decision the builders need, made in one place.

The builders in `pod.py` and `batch.py` only read a `RolePlan`; none of them looks at the spec,
applies a default, parses a source or computes a path again. This is the shape of CloudNativePG's
`pkg/specs` and KubeAI's pod plan: decide first, then assemble objects from the decisions.

A plan is made from what every kind that runs vLLM pods has: a `Workload` (whose pods they are,
the image, the hub credentials, the weights claim, the API key) and a worker (a role of an
LLMDeployment, or an LLMBatch's spec: device, GPUs, model, engine settings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_runtime.layout import ModelSource, model_key, model_path

from ..api.llmbatch import LLMBatchSpec
from ..api.llmdeployment import LLMDeployment, RoleSpec
from ..api.meta import SecretKeySelector
from ..api.workload import EngineSpec
from . import loader
from .config import (
    CACHE_MOUNT_PATH,
    RenderConfig,
    cpu_kv_cache_gib,
    image,
    on_cpu,
    parallelism,
    placement,
    served_name,
    shm_size,
    startup_failure_threshold,
)
from .meta import child_name, labels, selector_labels
from .storage import cache_volume, keeps_compiled_files, weights_claim


@dataclass(frozen=True)
class Workload:
    """What the pods of one resource share, whatever its kind."""

    owner: str
    namespace: str | None
    image: str | None  # spec.image: every pod's image when set
    image_pull_policy: str | None
    credentials_secret: str | None  # the Secret with the hub tokens
    weights_claim: str | None  # the claim weights are downloaded into; None: each pod's own emptyDir
    compile_cache: bool  # spec.cache.compileCache is not False
    api_key: SecretKeySelector | None  # the engine's VLLM_API_KEY


def llmdeployment_workload(llmd: LLMDeployment) -> Workload:
    spec = llmd.spec
    return Workload(
        owner=llmd.metadata.name,
        namespace=llmd.metadata.namespace,
        image=spec.image,
        image_pull_policy=spec.imagePullPolicy,
        credentials_secret=spec.credentialsSecretRef.name if spec.credentialsSecretRef else None,
        weights_claim=weights_claim(llmd),
        compile_cache=spec.cache is None or spec.cache.compileCache is not False,
        api_key=spec.apiKeySecretRef,
    )


@dataclass(frozen=True)
class RolePlan:
    """One role of one LLMDeployment (or the one worker of an LLMBatch), with the operator's
    defaults applied."""

    role_name: str  # llm | embedding | rerank
    owner: str
    namespace: str | None
    name: str  # of the Deployment and the Service
    labels: dict[str, str]
    selector: dict[str, str]
    replicas: int | None  # None: an autoscaler owns the field (or a Job, which has none)
    image: str
    image_pull_policy: str | None
    gpu_resource: str | None  # None on CPU
    source: ModelSource
    model_path: str  # what `vllm serve` is given
    served_name: str
    tensor_parallel: int
    pipeline_parallel: int
    tokenizer_path: str | None
    engine: EngineSpec | None  # the spec's engine settings, which become `vllm` flags
    env: list[dict[str, Any]]  # the engine container's
    resources: dict[str, Any]  # the engine container's
    shm_size: str
    startup_failure_threshold: int
    placement: dict[str, Any]  # nodeSelector, tolerations, affinity, priorityClassName, runtimeClassName
    loaders: tuple[loader.Loader, ...]
    cache_volume: dict[str, Any]
    compile_key: str | None  # the model key of the compile cache (llm_runtime.compile_cache); None: no cache


def engine_env(worker: RoleSpec | LLMBatchSpec, api_key: SecretKeySelector | None) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        # Weights are local: never let vLLM or transformers reach a hub from the serving pod.
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if on_cpu(worker):
        env.append({"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(cpu_kv_cache_gib(worker))})
        # vLLM's "auto" binding pins its OpenMP threads to the first cores it is allowed: every vLLM pod
        # on a node (each replica, and the RAG stack's three roles) then computes on the same core while
        # the others idle. Without the static CPU manager a container may use every core, so leave the
        # placement to the kernel. engine.env may set it back (with exclusive cpusets, "auto" is right).
        env.append({"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"})
        # vLLM's CPU build (0.32) saves torch.compile's AOT artifact and then cannot load it ("'function'
        # object has no attribute 'finalize_loading'"): every start would trace and compile again after
        # a failed load. Without AOT, Inductor's own cache, which the compile cache keeps, serves restarts.
        env.append({"name": "VLLM_USE_AOT_COMPILE", "value": "0"})
    if api_key:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": api_key.name, "key": api_key.key}}})
    user_env = [e.model_dump(exclude_none=True) for e in (worker.engine.env if worker.engine else None) or ()]
    # A user's variable replaces the operator's default of that name (a name twice is refused by the API server).
    overridden = {e["name"] for e in user_env}
    return [e for e in env if e["name"] not in overridden] + user_env


def engine_resources(worker: RoleSpec | LLMBatchSpec, gpu_resource: str | None) -> dict[str, Any]:
    """CPU request (no limit: throttling hurts latency), memory request = limit, GPUs as both."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    resources = worker.resources
    if resources and resources.cpu:
        requests["cpu"] = resources.cpu
    if resources and resources.memory:
        requests["memory"] = limits["memory"] = resources.memory
    if gpu_resource:
        requests[gpu_resource] = limits[gpu_resource] = str(worker.gpus or 1)
    return {"requests": requests, "limits": limits}


def plan_role(workload: Workload, role_name: str, worker: RoleSpec | LLMBatchSpec, config: RenderConfig) -> RolePlan:
    model = worker.model
    tensor, pipeline = parallelism(worker)
    gpu_resource = None if on_cpu(worker) else (worker.gpuResourceName or config.gpu_resource)
    # Replicas and the startup probe are a served role's; a batch's Job has neither.
    serving = worker if isinstance(worker, RoleSpec) else None
    replicas = None if serving is None or serving.autoscaling else (1 if serving.replicas is None else serving.replicas)
    keeps_compiled = keeps_compiled_files(model.parsed_source, workload.weights_claim, workload.compile_cache)
    compile_key = model_key(model.parsed_source, model.revision) if keeps_compiled else None
    return RolePlan(
        role_name=role_name,
        owner=workload.owner,
        namespace=workload.namespace,
        name=child_name(workload.owner, role_name),
        labels=labels(workload.owner, role_name),
        selector=selector_labels(workload.owner, role_name),
        replicas=replicas,
        image=image(worker, workload.image, config),
        image_pull_policy=workload.image_pull_policy,
        gpu_resource=gpu_resource,
        source=model.parsed_source,
        model_path=model_path(CACHE_MOUNT_PATH, model.parsed_source, model.revision, model.file),
        served_name=served_name(model),
        tensor_parallel=tensor,
        pipeline_parallel=pipeline,
        tokenizer_path=loader.tokenizer_path(model.tokenizer),
        engine=worker.engine,
        env=engine_env(worker, workload.api_key),
        resources=engine_resources(worker, gpu_resource),
        shm_size=shm_size(worker),
        startup_failure_threshold=startup_failure_threshold(serving.startupTimeoutSeconds if serving else None),
        placement=placement(worker.scheduling, gpu_resource),
        loaders=loader.loaders(workload.credentials_secret, model, config, compile_dir=compile_key is not None),
        cache_volume=cache_volume(model.parsed_source, workload.weights_claim),
        compile_key=compile_key,
    )
