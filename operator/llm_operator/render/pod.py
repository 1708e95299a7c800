"""A role's Deployment, built from its `RolePlan` by small pure builders.

Each builder returns plain Python data, in the key order the golden files show, so nothing is ever
parsed back from text: whatever characters a user's string holds reach the API server unchanged.
"""

from __future__ import annotations

from typing import Any

from llm_runtime.layout import COMPILE_DIR

from ..names import ENGINE_CONTAINER
from . import vllm
from .config import CACHE_MOUNT_PATH, COMPILE_MOUNT_PATH, CONTAINER_PORT, STARTUP_PROBE_PERIOD_SECONDS
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


def loader_resources() -> dict[str, Any]:
    # Downloading waits on the network and the disk: a small CPU request leaves room for vLLM.
    return {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "8Gi"}}


def strategy() -> dict[str, Any]:
    # GPUs are scarce: a surge pod would wait for the GPUs its predecessor holds, so replace in place.
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def _health_probe(period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def image_fields(plan: RolePlan) -> dict[str, Any]:
    """A container's image and, when the spec sets one, its pull policy."""
    fields = {"image": plan.image}
    if plan.image_pull_policy:
        fields["imagePullPolicy"] = plan.image_pull_policy
    return fields


def loader_container(plan: RolePlan, loader: Loader) -> dict[str, Any]:
    container = {"name": loader.name, **image_fields(plan)}
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


def engine_command(plan: RolePlan) -> dict[str, list[str]]:
    """`vllm serve`, run by `llm-runtime serve` when compiled files are kept on the volume."""
    if plan.compile_key is None:
        return {"command": ["vllm", "serve"], "args": vllm.serve_args(plan)}
    return {"command": ["llm-runtime", "serve"], "args": [*compile_cache_args(plan), "--", *vllm.serve_args(plan)]}


def engine_container(plan: RolePlan) -> dict[str, Any]:
    container = {"name": ENGINE_CONTAINER, **image_fields(plan)}
    container.update({
        **engine_command(plan),
        "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        "env": plan.env,
        "resources": plan.resources,
        "securityContext": container_security(),
        # On a crash the last log lines become the termination message, which status quotes.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # vLLM listens only once the weights are loaded: a long startup budget, then tight checks.
        "startupProbe": _health_probe(STARTUP_PROBE_PERIOD_SECONDS, STARTUP_PROBE_PERIOD_SECONDS,
                                      plan.startup_failure_threshold),
        "readinessProbe": _health_probe(5, 5, 3),
        "livenessProbe": _health_probe(15, 10, 4),
        "volumeMounts": engine_mounts(plan),
    })
    return container


def volumes(plan: RolePlan) -> list[dict[str, Any]]:
    return [
        plan.cache_volume,
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": plan.shm_size}},
        {"name": "tmp", "emptyDir": {}},
    ]


def pod_spec(plan: RolePlan) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        # Service links would inject *_PORT variables; vLLM reads VLLM_PORT and friends.
        "enableServiceLinks": False,
        "securityContext": pod_security(),
        **plan.placement,
    }
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
