"""A role's Deployment, built from its `RolePlan` by small pure builders.

Each builder returns plain Python data, in the key order the golden files show, so nothing is ever
parsed back from text: whatever characters a user's string holds reach the API server unchanged.
"""

from __future__ import annotations

from typing import Any

from llm_runtime.layout import COMPILE_DIR

from ..names import ENGINE_CONTAINER
from . import vllm
from .config import (
    CACHE_MOUNT_PATH,
    COMPILE_MOUNT_PATH,
    CONTAINER_PORT,
    STARTUP_PROBE_PERIOD_SECONDS,
    cpu_kv_cache_gib,
    shm_size,
    startup_failure_threshold,
)
from .loader import Loader
from .meta import object_meta
from .plan import RolePlan
from .storage import CACHE_VOLUME

# The fixed parts are functions, not module constants: every object gets its own copy, so no two
# places in the output share a dict (a YAML dump would write them as anchors, and a caller that
# edits one object would edit another).


def container_security() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "privileged": False, "capabilities": {"drop": ["ALL"]}}


def pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def placement(scheduling: Any) -> dict[str, Any]:
    """The pod spec fields of a `Scheduling` (nodeSelector, tolerations, ...), those that are set."""
    fields = scheduling.model_dump(exclude_none=True, by_alias=True) if scheduling else {}
    return {field: fields[field] for field in
            ("nodeSelector", "tolerations", "affinity", "priorityClassName", "runtimeClassName") if fields.get(field)}


def loader_resources() -> dict[str, Any]:
    # Downloading waits on the network and the disk: a small CPU request leaves room for vLLM.
    return {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "8Gi"}}


def strategy() -> dict[str, Any]:
    # GPUs are scarce: a surge pod would wait for the GPUs its predecessor holds, so replace in place.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def _health_probe(period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def _with_pull_policy(container: dict[str, Any], plan: RolePlan) -> dict[str, Any]:
    if plan.spec.imagePullPolicy:
        container["imagePullPolicy"] = plan.spec.imagePullPolicy
    return container


def loader_container(plan: RolePlan, loader: Loader) -> dict[str, Any]:
    container = _with_pull_policy({"name": loader.name, "image": plan.image}, plan)
    container["command"] = ["llm-runtime", "download"]
    container["args"] = loader.args
    if loader.env:
        container["env"] = loader.env
    container.update({
        "resources": loader_resources(),
        "securityContext": container_security(),
        # A failed download's last log lines become the termination message, which status quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT_PATH, "readOnly": loader.read_only},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    })
    return container


def compile_cache_args(plan: RolePlan) -> list[str]:
    """The options of `llm-runtime serve` and `llm-runtime batch` that keep compiled files on the volume."""
    if plan.compile_key is None:
        return []
    return [f"--compile-cache={COMPILE_MOUNT_PATH}", f"--model-key={plan.compile_key}",
            f"--device={'CPU' if plan.gpu_resource is None else 'GPU'}"]


def engine_mounts(plan: RolePlan) -> list[dict[str, Any]]:
    """The engine reads the weights and never writes them; with a compile cache it may write the
    volume's compile directory, and nothing else of it."""
    mounts = [{"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT_PATH, "readOnly": True}]
    if plan.compile_key is not None:
        mounts.append({"name": CACHE_VOLUME, "mountPath": COMPILE_MOUNT_PATH, "subPath": COMPILE_DIR})
    return mounts + [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}]


def engine_env(plan: RolePlan) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        # Weights are local: never let vLLM or transformers reach a hub from the serving pod.
        {"name": "HF_HUB_OFFLINE", "value": "1"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        {"name": "DO_NOT_TRACK", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if plan.gpu_resource is None:
        env.append({"name": "VLLM_CPU_KVCACHE_SPACE", "value": str(cpu_kv_cache_gib(plan.role))})
        # vLLM's "auto" binding pins its OpenMP threads to the first cores it is allowed: every vLLM pod
        # on a node (each replica, and the RAG stack's three roles) then computes on the same core while
        # the others idle. Without the static CPU manager a container may use every core, so leave the
        # placement to the kernel. engine.env may set it back (with exclusive cpusets, "auto" is right).
        env.append({"name": "VLLM_CPU_OMP_THREADS_BIND", "value": "nobind"})
        # vLLM's CPU build (0.32) saves torch.compile's AOT artifact and then cannot load it ("'function'
        # object has no attribute 'finalize_loading'"): every start would trace and compile again after
        # a failed load. Without AOT, Inductor's own cache, which the compile cache keeps, serves restarts.
        env.append({"name": "VLLM_USE_AOT_COMPILE", "value": "0"})
    key_ref = plan.spec.apiKeySecretRef
    if key_ref:
        env.append({"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": key_ref.name, "key": key_ref.key}}})
    user_env = [e.model_dump(exclude_none=True) for e in (plan.role.engine.env if plan.role.engine else None) or ()]
    # A user's variable replaces the operator's default of that name (a name twice is refused by the API server).
    overridden = {e["name"] for e in user_env}
    return [e for e in env if e["name"] not in overridden] + user_env


def engine_resources(plan: RolePlan) -> dict[str, Any]:
    """CPU request (no limit: throttling hurts latency), memory request = limit, GPUs as both."""
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    resources = plan.role.resources
    if resources and resources.cpu:
        requests["cpu"] = resources.cpu
    if resources and resources.memory:
        requests["memory"] = limits["memory"] = resources.memory
    if plan.gpu_resource:
        requests[plan.gpu_resource] = limits[plan.gpu_resource] = str(plan.role.gpus or 1)
    return {"requests": requests, "limits": limits}


def engine_command(plan: RolePlan) -> dict[str, list[str]]:
    """`vllm serve`, run by `llm-runtime serve` when compiled files are kept on the volume."""
    if plan.compile_key is None:
        return {"command": ["vllm", "serve"], "args": vllm.serve_args(plan)}
    return {"command": ["llm-runtime", "serve"], "args": [*compile_cache_args(plan), "--", *vllm.serve_args(plan)]}


def engine_container(plan: RolePlan) -> dict[str, Any]:
    container = _with_pull_policy({"name": ENGINE_CONTAINER, "image": plan.image}, plan)
    container.update({
        **engine_command(plan),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": engine_env(plan),
        "resources": engine_resources(plan),
        "securityContext": container_security(),
        # On a crash the last log lines become the termination message, which status quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # vLLM listens only once the weights are loaded: a long startup budget, then tight checks.
        "startupProbe": _health_probe(STARTUP_PROBE_PERIOD_SECONDS, STARTUP_PROBE_PERIOD_SECONDS,
                                      startup_failure_threshold(plan.role)),
        "readinessProbe": _health_probe(5, 5, 3),
        "livenessProbe": _health_probe(15, 10, 4),
        "volumeMounts": engine_mounts(plan),
    })
    return container


def volumes(plan: RolePlan) -> list[dict[str, Any]]:
    return [
        plan.cache_volume,
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(plan.role)}},
        {"name": "tmp", "emptyDir": {}},
    ]


def tolerations(plan: RolePlan) -> list[dict[str, Any]]:
    scheduling = plan.role.scheduling
    extra = [t.model_dump(exclude_none=True) for t in (scheduling.tolerations or ())] if scheduling else []
    if plan.gpu_resource is None:
        return extra
    # GPU nodes carry the taint `<gpu resource>:NoSchedule` by convention (NVIDIA GPU operator, GKE, EKS).
    gpu = {"key": plan.gpu_resource, "operator": "Exists", "effect": "NoSchedule"}
    return [gpu] + [t for t in extra if t != gpu]


def pod_spec(plan: RolePlan) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Service links would inject *_PORT variables; vLLM reads VLLM_PORT and friends.
        "enableServiceLinks": False,
        "securityContext": pod_security(),
    }
    scheduling = plan.role.scheduling
    # by_alias: the core Affinity model names its fields in snake_case, with the API's names as aliases.
    placement = scheduling.model_dump(exclude_none=True, by_alias=True) if scheduling else {}
    if placement.get("nodeSelector"):
        spec["nodeSelector"] = placement["nodeSelector"]
    pod_tolerations = tolerations(plan)
    if pod_tolerations:
        spec["tolerations"] = pod_tolerations
    for field in ("affinity", "priorityClassName", "runtimeClassName"):
        if placement.get(field):
            spec[field] = placement[field]
    spec["initContainers"] = [loader_container(plan, loader) for loader in plan.loaders]
    spec["containers"] = [engine_container(plan)]
    spec["volumes"] = volumes(plan)
    return spec


def deployment(plan: RolePlan) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if plan.replicas is not None:
        spec["replicas"] = plan.replicas
    spec.update({
        "revisionHistoryLimit": 3,
        "selector": {"matchLabels": dict(plan.selector)},
        "strategy": strategy(),
        "template": {"metadata": {"labels": dict(plan.labels)}, "spec": pod_spec(plan)},
    })
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(plan.name, plan.namespace, dict(plan.labels)),
        "spec": spec,
    }
