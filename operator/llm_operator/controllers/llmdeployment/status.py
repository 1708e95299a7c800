"""Pure: what the operator observed -> the LLMDeployment's status.

No API calls and no clock: `compute_status` takes everything as arguments (objects as the API
server returns them, as dicts), so every case is a table-driven unit test.

Phases, most severe first:
- Failed: the API server refused a child. Retried on every change of the spec or a child, and
  every FAILED_RETRY_SECONDS (controllers/shared.py), since a permission or an operator upgrade may fix it.
- Degraded: something needs the user: not enough GPUs, a download failed (gated model, missing
  revision, full volume), vLLM crash-loops, a Secret is missing, the cache volume is not bound,
  a quota refuses the pods, an object of a child's name exists that the operator did not make.
- Pending / Downloading / Starting: on the way; no problem detected.
- Ready: every role has all its replicas ready on the current spec.
- Idle: as Ready, with a role its autoscaler scaled to zero; a request through an LLMGateway wakes
  it. Not a problem: the Ready condition is True.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llm_runtime.contract import COMPILE_CACHE_PATTERN, CompileResult

from ...api.llmdeployment import LLMDeployment, RoleSpec
from ...names import ENGINE_CONTAINER, LOADER_CONTAINERS, ROLE_LABEL
from ...render import service_url
from ...render.autoscaling import wants_scaled_object
from ...render.config import served_name
from ...render.service import allowed_namespaces
from ..shared import (
    DEGRADED,
    PROGRESSING,
    READY,
    Problem,
    container_statuses,
    last_log_line,
    missing_secret,
    short_message,
    stalled_status,
)


@dataclass
class Observed:
    """What the operator read from the cluster for one LLMDeployment."""

    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role
    pods: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by role
    claims: list[dict[str, Any]] = field(default_factory=list)  # PVCs the pods mount that the operator made
    apply_error: str | None = None  # the API server refused a rendered object
    name_conflicts: list[str] = field(default_factory=list)  # objects in the way that the operator did not make
    unserved: list[dict[str, Any]] = field(default_factory=list)  # rendered, but of a kind the cluster lacks (KEDA's)
    compile_cache: dict[str, dict[str, Any]] = field(default_factory=dict)  # by role: the newest start read


def _failed_termination(container_status: dict[str, Any]) -> dict[str, Any] | None:
    """The failed run that explains a container's *current* state: it has exited with an error now,
    or it waits to be restarted after one. A container that is running again or has succeeded has
    recovered, whatever its lastState says."""
    state = container_status.get("state") or {}
    terminated = state.get("terminated")
    if terminated:
        return terminated if terminated.get("exitCode", 0) != 0 else None
    if "waiting" in state:
        last = (container_status.get("lastState") or {}).get("terminated")
        if last and last.get("exitCode", 0) != 0:
            return last
    return None


def _pod_problem(role: str, pod: dict[str, Any], gpu_resource: str) -> Problem | None:
    """The first thing wrong with one pod, in the order a user would fix them."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            message = condition.get("message", "")
            if "PersistentVolumeClaim" in message:
                return Problem("CacheVolumeNotBound", short_message(
                    f"Pods of role {role} wait for their volume: {message} Check that the StorageClass exists "
                    "and can provision the access mode, or set spec.cache.existingClaim."))
            reason = "InsufficientGPU" if f"Insufficient {gpu_resource}" in message else "Unschedulable"
            return Problem(reason, short_message(
                f"Pods of role {role} cannot be scheduled: {message} Free or add GPU nodes, or lower "
                f"spec.{role}.gpus or spec.{role}.replicas."))
    for status in container_statuses(pod, "initContainerStatuses"):
        terminated = _failed_termination(status)
        if status.get("name") in LOADER_CONTAINERS and terminated:
            detail = (terminated.get("message") or terminated.get("reason") or "").strip()
            return Problem("DownloadFailed", short_message(
                f"Model download for role {role} failed (exit code {terminated.get('exitCode')}): {detail}"))
    for status in container_statuses(pod, "initContainerStatuses") + container_statuses(pod, "containerStatuses"):
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
            return Problem("ImagePullFailed", short_message(
                f"Image of role {role} cannot be pulled: {waiting.get('message', waiting['reason'])}"))
    missing = missing_secret(pod)
    if missing:
        return Problem("SecretMissing", short_message(
            f"Pods of role {role} cannot start: {missing}. Create it in the "
            f"namespace {pod['metadata'].get('namespace', '')}, or fix the reference in the spec."))
    for status in container_statuses(pod, "containerStatuses"):
        waiting = (status.get("state") or {}).get("waiting") or {}
        terminated = _failed_termination(status)
        if status.get("name") == ENGINE_CONTAINER and terminated and (
                waiting.get("reason") == "CrashLoopBackOff" or status.get("restartCount", 0) > 0):
            detail = last_log_line((terminated or {}).get("message") or "") or (terminated or {}).get("reason", "")
            code = (terminated or {}).get("exitCode", "?")
            return Problem("EngineCrashLoop", short_message(
                f"vLLM of role {role} keeps exiting (exit code {code}, {status.get('restartCount', 0)} restarts): {detail}"))
    return None


# ------------------------------------------------------------------ engine starts and the compile cache
#
# An engine run by `llm-runtime serve` logs one line saying whether it reused compiled files
# (llm_runtime.contract.COMPILE_CACHE_LINE) right after it answers /health. The operator reads it
# once per start, from the head of the log, when the engine container is ready.

COMPILE_LOG_GRACE_SECONDS = 120  # ready this long without the line: its log will not say (rotated, another image)
_COMPILE_EVENTS = {
    str(CompileResult.REUSED): ("Normal", "CompiledFilesReused"),
    str(CompileResult.COMPILED): ("Normal", "CompiledFilesStored"),
    str(CompileResult.NOT_STORED): ("Warning", "CompiledFilesNotStored"),
    str(CompileResult.NOTHING_COMPILED): ("Normal", "NothingCompiled"),
}


def _engine_status(pod: dict[str, Any]) -> dict[str, Any]:
    return next((s for s in container_statuses(pod, "containerStatuses") if s.get("name") == ENGINE_CONTAINER), {})


def roles_keeping_compiled_files(desired: list[dict[str, Any]]) -> list[str]:
    """The roles whose rendered engine runs under `llm-runtime serve`, which logs what it did with
    the compile cache. (The operator's pod cache keeps no pod specs: the render tells.)"""
    roles = []
    for obj in desired:
        if obj["kind"] != "Deployment":
            continue
        containers = obj["spec"]["template"]["spec"]["containers"]
        if any(c["name"] == ENGINE_CONTAINER and c.get("command") == ["llm-runtime", "serve"] for c in containers):
            roles.append(obj["metadata"]["labels"][ROLE_LABEL])
    return roles


def unread_starts(pods: list[dict[str, Any]], recorded: dict[str, Any] | None) -> list[tuple[dict[str, Any], str]]:
    """(pod, engine start time) of every ready engine that started after the start status records,
    oldest first. Times are RFC 3339 in UTC, so they sort as strings."""
    after = (recorded or {}).get("startedAt") or ""
    starts = []
    for pod in pods:
        engine = _engine_status(pod)
        started = ((engine.get("state") or {}).get("running") or {}).get("startedAt")
        if engine.get("ready") and started and started > after and not pod["metadata"].get("deletionTimestamp"):
            starts.append((pod, started))
    return sorted(starts, key=lambda start: start[1])


def compile_cache_entry(pod_name: str, started: str, log: str, ready_seconds: float) -> dict[str, Any] | None:
    """What status says of one start, from the head of its engine's log; None while the line may
    still come (the kubelet can see the engine ready a moment before `llm-runtime serve` does)."""
    found = COMPILE_CACHE_PATTERN.findall(log)
    if found:
        result, message = found[-1]
    elif log.strip() and ready_seconds < COMPILE_LOG_GRACE_SECONDS:
        return None
    else:
        result, message = "Unknown", "the engine's log does not say (its start is no longer in the log the kubelet keeps)"
    return {"pod": pod_name, "startedAt": started, "result": result, "message": short_message(message)}


def compile_cache_event(entry: dict[str, Any]) -> tuple[str, str, str] | None:
    """The Event that tells of one start: (type, reason, message); None when nothing is known."""
    kind = _COMPILE_EVENTS.get(entry["result"])
    return (*kind, f"Pod {entry['pod']}: {entry['message']}") if kind else None


def _pod_stage(pod: dict[str, Any]) -> str:
    """Pending (not scheduled or not started), Downloading (init running) or Starting (engine loading)."""
    status = pod.get("status") or {}
    if not status.get("startTime") and not container_statuses(pod, "initContainerStatuses"):
        return "Pending"
    init = container_statuses(pod, "initContainerStatuses")
    if init and not all((s.get("state") or {}).get("terminated", {}).get("exitCode") == 0 for s in init):
        return "Downloading"
    return "Starting"


def _claim_problem(claims: list[dict[str, Any]]) -> Problem | None:
    for claim in claims:
        if (claim.get("status") or {}).get("phase") == "Lost":
            name = claim["metadata"]["name"]
            return Problem("CacheVolumeLost", f"PersistentVolumeClaim {name} lost its volume: recreate it.")
    return None


def _role_ready(deployment: dict[str, Any] | None, wanted: int) -> tuple[bool, int]:
    """Ready only when the Deployment controller has seen the applied template (observedGeneration)
    and every wanted pod runs it and is ready, with no pod of an older template left."""
    if deployment is None:
        return False, 0
    status = deployment.get("status") or {}
    ready = status.get("readyReplicas", 0)
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    updated = status.get("updatedReplicas", 0) >= wanted
    settled = status.get("replicas", 0) == wanted  # no old pods left from a rollout
    return current and updated and settled and ready >= wanted, ready


def _scaling_up(role: RoleSpec, deployment: dict[str, Any] | None, ready_count: int, wanted: int) -> bool:
    """An autoscaled role that serves at least its floor (minReplicas, and at least one) on the
    current template while more of its pods wait: an autoscaler asking for more than the cluster
    fits yet, or pods still starting, is no fault of a model that serves."""
    if role.autoscaling is None or deployment is None:
        return False
    status = deployment.get("status") or {}
    current = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 0)
    no_old_pods = status.get("updatedReplicas", 0) >= status.get("replicas", 0)
    floor = max(role.autoscaling.minReplicas or 1, 1)
    return current and no_old_pods and floor <= ready_count < wanted


def _deployment_problem(role: str, deployment: dict[str, Any] | None, rolling: bool) -> Problem | None:
    """What the Deployment controller itself reports: pods it could not create (a ResourceQuota,
    a LimitRange, an admission denial) or a rollout past its deadline. The deadline counts only
    when no pod is downloading or loading, which may rightly take longer than any deadline."""
    conditions = {c.get("type"): c for c in ((deployment or {}).get("status") or {}).get("conditions") or []}
    failure = conditions.get("ReplicaFailure")
    if failure and failure.get("status") == "True":
        return Problem("ReplicaFailure", short_message(
            f"Pods of role {role} cannot be created: {failure.get('message', failure.get('reason', ''))}"))
    progressing = conditions.get("Progressing")
    if progressing and progressing.get("reason") == "ProgressDeadlineExceeded" and not rolling:
        return Problem("ProgressDeadlineExceeded", short_message(
            f"The rollout of role {role} made no progress: {progressing.get('message', '')}"))
    return None


def wanted_replicas(role: RoleSpec, deployment: dict[str, Any] | None) -> int:
    """Pods the role should have: its `replicas`, or with autoscaling what the autoscaler set."""
    if role.autoscaling is not None:
        return ((deployment or {}).get("spec") or {}).get("replicas", 1)
    return 1 if role.replicas is None else role.replicas


def compute_status(llmd: LLMDeployment, observed: Observed, gpu_resource: str,
                   prometheus_namespace: str | None = None) -> dict[str, Any]:
    """The status to write, without timestamps (see `with_transition_times`). `prometheus_namespace`:
    where the Prometheus that KEDA asks runs, when the operator knows it."""
    generation = llmd.metadata.generation
    roles_status: dict[str, Any] = {}
    problems: list[Problem] = []
    stages: list[str] = []
    scaling: list[str] = []  # autoscaled roles serving while more of their pods wait
    ready_roles = 0
    role_specs = llmd.spec.roles()
    for role, spec in role_specs.items():
        deployment = observed.deployments.get(role)
        wanted = wanted_replicas(spec, deployment)
        ready, ready_count = _role_ready(deployment, wanted)
        ready_roles += ready
        roles_status[role] = {
            "replicas": wanted,
            "readyReplicas": ready_count,
            "url": service_url(llmd, role),
            "servedName": served_name(spec.model),
        }
        if role in observed.compile_cache:
            roles_status[role]["compileCache"] = observed.compile_cache[role]
        if ready:
            continue
        pods = [p for p in observed.pods.get(role, []) if not p["metadata"].get("deletionTimestamp")]
        role_gpu = spec.gpuResourceName or gpu_resource
        if _scaling_up(spec, deployment, ready_count, wanted):
            ready_roles += 1
            why = next((p.message for p in (_pod_problem(role, pod, role_gpu) for pod in pods) if p),
                       "their pods are starting.")
            scaling.append(f"Role {role}: the autoscaler wants {wanted} replicas; {ready_count} serve, "
                           f"{wanted - ready_count} wait: {why}")
            continue
        pod_stages = [_pod_stage(pod) for pod in pods]
        problems += [p for p in (_pod_problem(role, pod, role_gpu) for pod in pods) if p]
        deployment_problem = _deployment_problem(role, deployment, rolling=bool(
            {"Downloading", "Starting"} & set(pod_stages)))
        if deployment_problem:
            problems.append(deployment_problem)
        stages += pod_stages or ["Pending"]

    if observed.apply_error:
        problems.insert(0, Problem("ApplyFailed", short_message(observed.apply_error)))
    if observed.name_conflicts:  # one problem naming every object in the way
        problems.insert(0, Problem("NameConflict", short_message(" ".join(observed.name_conflicts))))
    if observed.unserved:
        problems.insert(0, _autoscaler_missing(observed.unserved))
    claim_problem = _claim_problem(observed.claims)
    if claim_problem:
        problems.append(claim_problem)
    metrics_problem = _metrics_blocked(llmd, prometheus_namespace)
    if metrics_problem:
        problems.append(metrics_problem)

    total = len(role_specs)
    idle = sorted(role for role, spec in role_specs.items()
                  if spec.autoscaling is not None and roles_status[role]["replicas"] == 0)
    # Only KEDA's ScaledObject carries the gateway's demand trigger; another autoscaler wakes a role itself.
    woken_by_gateway = [role for role in idle if wants_scaled_object(role_specs[role])]
    if observed.apply_error:
        phase = "Failed"
    elif problems:
        phase = "Degraded"
    elif ready_roles == total:
        phase = "Idle" if idle else "Ready"
    else:
        # The least advanced pod tells where the deployment as a whole is.
        phase = next(stage for stage in ("Pending", "Downloading", "Starting") if stage in stages) \
            if stages else "Starting"

    return {
        "observedGeneration": generation,
        "phase": phase,
        "rolesReady": f"{ready_roles}/{total}",
        "conditions": _conditions(phase, problems, ready_roles, total, generation, idle, woken_by_gateway, scaling),
        "roles": roles_status,
    }


def _metrics_blocked(llmd: LLMDeployment, prometheus_namespace: str | None) -> Problem | None:
    """Roles autoscaled by KEDA whose NetworkPolicy keeps Prometheus out: it cannot scrape their
    /metrics (the serving port; a NetworkPolicy cannot tell paths apart), so they never scale."""
    allowed = allowed_namespaces(llmd)
    scaled = sorted(role for role, spec in llmd.spec.roles().items() if wants_scaled_object(spec))
    if not (scaled and allowed and prometheus_namespace) or prometheus_namespace in allowed:
        return None
    return Problem("MetricsBlocked", short_message(
        f"Roles {', '.join(scaled)} are autoscaled from Prometheus, which runs in namespace {prometheus_namespace}, "
        f"but service.allowedNamespaces ({', '.join(allowed)}) keeps it from scraping their pods: their autoscaler "
        f"reads nothing and never scales them. Add {prometheus_namespace} to service.allowedNamespaces (the API "
        "key still guards the model's APIs)."))


def _autoscaler_missing(unserved: list[dict[str, Any]]) -> Problem:
    """The roles autoscaled by KEDA in a cluster without KEDA: they keep the pods they have."""
    roles = ", ".join(sorted(obj["metadata"]["labels"][ROLE_LABEL] for obj in unserved))
    return Problem("AutoscalerNotInstalled", short_message(
        f"Roles {roles} have autoscaling by KEDA, but this cluster does not serve KEDA's ScaledObject API "
        "(keda.sh/v1alpha1), so nothing scales them: they keep their current pods. Install KEDA "
        "(https://keda.sh/docs/deploy/) and restart the operator, or set autoscaling.provider: External "
        "and run your own autoscaler (docs/autoscaling.md)."))


def _idle_message(idle: list[str], woken_by_gateway: list[str]) -> str:
    external = [role for role in idle if role not in woken_by_gateway]
    parts = []
    if woken_by_gateway:
        parts.append(f"Roles {', '.join(woken_by_gateway)} are scaled to zero by their autoscaler; a request through "
                     "an LLMGateway wakes them.")
    if external:
        parts.append(f"Roles {', '.join(external)} are at zero replicas, set by your own autoscaler (provider "
                     "External): nothing here wakes them, and requests to them fail until it adds a pod.")
    return " ".join(parts + ["The others are ready to serve."])


def _conditions(phase: str, problems: list[Problem], ready: int, total: int, generation: int | None,
                idle: Sequence[str] = (), woken_by_gateway: Sequence[str] = (),
                scaling: Sequence[str] = ()) -> list[dict[str, Any]]:
    first = problems[0] if problems else None
    if phase == "Ready":
        ready_condition = ("True", "Ready", f"All {total} roles are ready to serve.")
    elif phase == "Idle":
        ready_condition = ("True", "Idle", _idle_message(list(idle), list(woken_by_gateway)))
    elif first:
        more = f" ({len(problems) - 1} more problems)" if len(problems) > 1 else ""
        ready_condition = ("False", first.reason, first.message + more)
    else:
        ready_condition = ("False", phase, f"{ready}/{total} roles ready; {_phase_message(phase)}")
    progressing = phase in ("Pending", "Downloading", "Starting")
    settled = phase in ("Ready", "Idle")
    conditions = [
        (READY, *ready_condition),
        (PROGRESSING, "True" if progressing else "False", phase if progressing else (
            "Ready" if settled else "Stalled"),
         _phase_message(phase) if progressing else ("Rollout complete." if settled else
                                                   "Waiting for the problem in the Degraded condition to be fixed.")),
        (DEGRADED, "True" if first else "False", first.reason if first else "AsExpected",
         first.message if first else "No problem detected."),
    ]
    if settled and scaling:  # serving, and growing: as a Deployment says while it scales up
        conditions[1] = (PROGRESSING, "True", "ScalingUp", short_message(" ".join(scaling)))
    return [
        {"type": kind, "status": status, "reason": reason, "message": message, "observedGeneration": generation}
        for kind, status, reason, message in conditions
    ]


def _phase_message(phase: str) -> str:
    return {
        "Pending": "waiting for pods to be scheduled.",
        "Downloading": "model weights are being downloaded.",
        "Starting": "vLLM is loading the model.",
        "Ready": "serving.",
        "Idle": "scaled to zero until a request comes.",
        "Degraded": "see the Degraded condition.",
        "Failed": "see the Degraded condition.",
    }[phase]


def render_failed_status(generation: int | None, error: Exception) -> dict[str, Any]:
    """Status when the renderer itself failed on a spec that validated: a defect of the operator,
    reported rather than retried in silence (the previous status could still say Ready)."""
    return stalled_status(
        generation, "RenderFailed",
        f"The operator could not render this spec ({type(error).__name__}: {error}); the children were left as they "
        "are. Report this as an llm-operator bug, with the spec.",
        "Retried after an operator upgrade or a change of the spec.")
