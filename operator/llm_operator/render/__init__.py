"""Pure rendering: (LLMDeployment, RenderConfig) -> the Kubernetes objects that serve it.

No API calls, no clock, no randomness: the same input always gives byte-identical output, which is
what lets the operator skip writes by comparing `llmops.dev/rendered-hash` annotations, and what the
golden files in tests/golden/ pin down.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jinja2
import yaml

from llm_runtime.layout import model_path

from ..api.models import API_VERSION, KIND, LLMDeployment, RoleSpec
from ..names import (
    DEPLOYMENT_LABEL,
    ENGINE_CONTAINER,
    HASH_ANNOTATION,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLE_LABEL,
    TOKENIZER_CONTAINER,
)
from . import loader, vllm
from .config import (  # noqa: F401  (RenderConfig is part of this package's API)
    CACHE_MOUNT_PATH,
    CONTAINER_PORT,
    DEFAULT_SERVICE_PORT,
    STARTUP_PROBE_PERIOD_SECONDS,
    RenderConfig,
    cpu_kv_cache_gib,
    image,
    model_source,
    on_cpu,
    served_name,
    shm_size,
    startup_failure_threshold,
)


CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "capabilities": {"drop": ["ALL"]},
}

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("llm_operator.render", "templates"),
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
)
_templates.filters["j"] = lambda value: json.dumps(value, ensure_ascii=False)


def child_name(owner: str, role: str) -> str:
    return f"{owner}-{role}"


def cache_claim_name(owner: str) -> str:
    return f"{owner}-cache"


def selector_labels(owner: str, role: str) -> dict[str, str]:
    """The labels that select a role's pods; immutable in a Deployment, so kept minimal."""
    return {DEPLOYMENT_LABEL: owner, ROLE_LABEL: role}


def labels(owner: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "vllm" if component != "cache" else "model-cache",
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/component": component,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "llm-operator",
        DEPLOYMENT_LABEL: owner,
        ROLE_LABEL: component,
    }


def content_hash(obj: dict[str, Any]) -> str:
    """Hash of an object as rendered, without its own hash annotation."""
    annotations = dict(obj["metadata"].get("annotations") or {})
    annotations.pop(HASH_ANNOTATION, None)
    canonical = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def _finish(obj: dict[str, Any], llmd: LLMDeployment) -> dict[str, Any]:
    """Add the owner reference (when the owner exists in a cluster) and the hash annotation."""
    if llmd.metadata.uid:
        obj["metadata"]["ownerReferences"] = [
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": llmd.metadata.name,
                "uid": llmd.metadata.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = content_hash(obj)
    return obj


def _render_template(template: str, **context: Any) -> dict[str, Any]:
    return yaml.safe_load(_templates.get_template(template).render(**context))


def _cache_volume(llmd: LLMDeployment, role: RoleSpec) -> dict[str, Any]:
    source = model_source(role.model)
    if source.scheme == "pvc":
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": source.repo, "readOnly": True}}
    cache = llmd.spec.cache
    if cache and cache.existingClaim:
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": cache.existingClaim}}
    if cache and cache.size:
        return {"name": "model-cache", "persistentVolumeClaim": {"claimName": cache_claim_name(llmd.metadata.name)}}
    return {"name": "model-cache", "emptyDir": {}}


def _tolerations(role: RoleSpec, gpu_resource: str) -> list[dict[str, Any]]:
    extra = [t.model_dump(exclude_none=True) for t in (role.scheduling.tolerations or ())] if role.scheduling else []
    if on_cpu(role):
        return extra
    # GPU nodes carry the taint `<gpu resource>:NoSchedule` by convention (NVIDIA GPU operator, GKE, EKS).
    gpu = {"key": gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
    return [gpu] + [t for t in extra if t != gpu]


def _resources(role: RoleSpec, gpu_resource: str) -> dict[str, Any]:
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if role.resources and role.resources.cpu:
        requests["cpu"] = role.resources.cpu
    if role.resources and role.resources.memory:
        requests["memory"] = limits["memory"] = role.resources.memory
    if not on_cpu(role):
        requests[gpu_resource] = limits[gpu_resource] = str(role.gpus or 1)
    return {"requests": requests, "limits": limits}


def _vllm_env(llmd: LLMDeployment, role: RoleSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        # Weights are local: never let vLLM or transformers reach a hub from the serving pod.
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if on_cpu(role):
        env.append({"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(cpu_kv_cache_gib(role))})
    key_ref = llmd.spec.apiKeySecretRef
    if key_ref:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": key_ref.name, "key": key_ref.key}}})
    user_env = role.engine.env if role.engine else None
    return env + [e.model_dump(exclude_none=True) for e in user_env or ()]


def render_deployment(llmd: LLMDeployment, role_name: str, role: RoleSpec, config: RenderConfig) -> dict[str, Any]:
    owner = llmd.metadata.name
    gpu_resource = role.gpuResourceName or config.gpu_resource
    source = model_source(role.model)
    path = model_path(CACHE_MOUNT_PATH, source, role.model.revision, role.model.file)
    # by_alias: the core Affinity model names its fields in snake_case, with the API's names as aliases.
    scheduling = role.scheduling.model_dump(exclude_none=True, by_alias=True) if role.scheduling else {}
    loaders = [{
        "name": loader.container_name(role.model),
        "args": loader.download_args(role.model),
        "env": loader.download_env(llmd.spec, role.model.source, config),
        "read_only": source.scheme == "pvc",
    }]
    tokenizer = role.model.tokenizer
    if tokenizer:
        loaders.append({
            "name": TOKENIZER_CONTAINER,
            "args": loader.tokenizer_download_args(tokenizer),
            "env": loader.download_env(llmd.spec, tokenizer.source, config),
            # A pvc:// tokenizer on another claim than the model's is not mounted: see _cache_volume.
            "read_only": model_source(tokenizer).scheme == "pvc",
        })
    return _render_template(
        "deployment.yaml.j2",
        name=child_name(owner, role_name),
        namespace=llmd.metadata.namespace,
        labels=labels(owner, role_name),
        selector=selector_labels(owner, role_name),
        engine_container=ENGINE_CONTAINER,
        # With autoscaling the field is not applied at all, so its ownership passes to the autoscaler.
        replicas=None if role.autoscaling else (1 if role.replicas is None else role.replicas),
        scheduling=scheduling,
        tolerations=_tolerations(role, gpu_resource),
        image=image(role, llmd.spec.image, config),
        image_pull_policy=llmd.spec.imagePullPolicy,
        loaders=loaders,
        args=vllm.serve_args(role_name, role, path, served_name(role.model), loader.tokenizer_path(tokenizer)),
        container_port=CONTAINER_PORT,
        env=_vllm_env(llmd, role),
        resources=_resources(role, gpu_resource),
        container_security=CONTAINER_SECURITY,
        startup_period=STARTUP_PROBE_PERIOD_SECONDS,
        startup_failure_threshold=startup_failure_threshold(role),
        cache_mount_path=CACHE_MOUNT_PATH,
        cache_volume=_cache_volume(llmd, role),
        shm_size=shm_size(role),
    )


def service_port(llmd: LLMDeployment) -> int:
    return (llmd.spec.service.port if llmd.spec.service else None) or DEFAULT_SERVICE_PORT


def render_service(llmd: LLMDeployment, role_name: str) -> dict[str, Any]:
    owner = llmd.metadata.name
    service = llmd.spec.service
    return _render_template(
        "service.yaml.j2",
        name=child_name(owner, role_name),
        namespace=llmd.metadata.namespace,
        labels=labels(owner, role_name),
        annotations=(service.annotations if service else None) or {},
        type=(service.type if service else None) or "ClusterIP",
        selector=selector_labels(owner, role_name),
        port=service_port(llmd),
    )


def wants_cache_claim(llmd: LLMDeployment) -> bool:
    """A new claim is made only when asked for and some role downloads from a hub into it."""
    cache = llmd.spec.cache
    hub_roles = [r for r in llmd.spec.roles().values() if model_source(r.model).is_hub]
    return bool(cache and cache.size and hub_roles)


def render_cache_claim(llmd: LLMDeployment) -> dict[str, Any]:
    cache = llmd.spec.cache
    owner = llmd.metadata.name
    return _render_template(
        "pvc.yaml.j2",
        name=cache_claim_name(owner),
        namespace=llmd.metadata.namespace,
        labels=labels(owner, "cache"),
        access_mode=cache.accessMode or "ReadWriteMany",
        storage_class=cache.storageClassName,
        size=cache.size,
    )


def render(llmd: LLMDeployment, config: RenderConfig | None = None) -> list[dict[str, Any]]:
    """Every object the LLMDeployment needs: the cache claim first, then per role a Deployment and a Service."""
    config = config or RenderConfig()
    objects: list[dict[str, Any]] = []
    if wants_cache_claim(llmd):
        objects.append(render_cache_claim(llmd))
    for role_name, role in llmd.spec.roles().items():
        objects.append(render_deployment(llmd, role_name, role, config))
        objects.append(render_service(llmd, role_name))
    return [_finish(obj, llmd) for obj in objects]


def service_url(llmd: LLMDeployment, role_name: str) -> str:
    """The OpenAI-compatible base URL of a role inside the cluster (`.svc` resolves in any cluster domain)."""
    host = f"{child_name(llmd.metadata.name, role_name)}.{llmd.metadata.namespace or 'default'}.svc"
    return f"http://{host}:{service_port(llmd)}/v1"
