"""Pure: what the operator observed -> an LLMGateway's status.

Phases, most severe first:
- Failed: the API server refused one of the gateway's objects (or the spec cannot be served).
- Degraded: the gateway's or its chat page's pods cannot start without a Secret that is not there,
  or not every model behind it can answer: a selected LLMDeployment is Degraded or Failed, two of
  them serve the same name, the selector matches nothing, or an object of a child's name exists
  that the operator did not make.
- Pending: the gateway's own pods are not all ready yet, or a selected LLMDeployment is still on its
  way to Ready (downloading, starting): waiting, not broken, so GitOps tools see it progressing.
- Ready: the gateway's pods and every model behind it are ready.
"""

from __future__ import annotations

from typing import Any

from ...api.llmgateway import LLMGateway
from ...render.gateway.chat_page import chat_page_url
from ...render.gateway.routes import GatewayRoute, chat_models
from ...render.gateway.service import gateway_url
from ..shared import DEGRADED, PROGRESSING, READY, Problem, missing_secret, short_message


def waiting_for_volumes(pod: dict[str, Any]) -> bool:
    """Scheduled, and its containers still wait to be created: how a pod looks whose volume cannot
    be mounted (a missing Secret), which the kubelet says only in the pod's Events."""
    status = pod.get("status") or {}
    if pod["metadata"].get("deletionTimestamp") or status.get("phase") != "Pending":
        return False
    conditions = status.get("conditions") or []
    scheduled = any(c.get("type") == "PodScheduled" and c.get("status") == "True" for c in conditions)
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    creating = ("ContainerCreating", "PodInitializing")
    return scheduled and all(((s.get("state") or {}).get("waiting") or {}).get("reason") in creating for s in statuses)


def _secret_not_mounted(events: list[dict[str, Any]]) -> str | None:
    """The kubelet's newest word on a Secret volume it cannot mount ('MountVolume.SetUp failed for
    volume "gateway-key" : secret "gw-key" not found')."""
    failed = [e for e in events if e.get("reason") == "FailedMount" and "secret" in (e.get("message") or "").lower()]
    newest = max(failed, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", default=None)
    return newest["message"] if newest else None


def secret_problems(gateway: LLMGateway, pods: dict[str, list[dict[str, Any]]],
                    events: dict[str, list[dict[str, Any]]]) -> list[Problem]:
    """The Secrets the gateway's or its chat page's pods cannot start without. `pods`: by what
    they run ("gateway", "chat page"); `events`: by pod name, for the pods waiting_for_volumes."""
    fields = {"gateway": "spec.apiKeySecretRef",
              "chat page": "spec.apiKeySecretRef or spec.chatPage.adminSecretRef"}
    problems = []
    for what, owned in pods.items():
        for pod in owned:
            name = pod["metadata"]["name"]
            missing = missing_secret(pod) or _secret_not_mounted(events.get(name) or [])
            if missing:
                problems.append(Problem("SecretMissing", short_message(
                    f"The {what}'s pod {name} cannot start: {missing}. Create it in the namespace "
                    f"{gateway.metadata.namespace}, or fix {fields[what]}.")))
                break  # one pod says it for all of them
    return problems


def _gateway_ready(deployment: dict[str, Any] | None, generation_seen: bool) -> bool:
    if deployment is None or not generation_seen:
        return False
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = spec.get("replicas", 1)
    return (status.get("updatedReplicas", 0) >= wanted and status.get("readyReplicas", 0) >= wanted
            and status.get("replicas", 0) == wanted)


def _deployment_problem(name: str, routes: list[GatewayRoute], llmd: dict[str, Any] | None) -> Problem | None:
    """A selected LLMDeployment that is not Ready, with what that means for its models."""
    status = (llmd or {}).get("status") or {}
    if status.get("phase") in ("Ready", "Idle"):  # an idle model is woken by the gateway itself
        return None
    roles = status.get("roles") or {}
    counts = []
    for route in routes:
        role = roles.get(route.role) or {}
        counts.append(f"{route.served_name} {role.get('readyReplicas') or 0}/{role.get('replicas') or '?'} replicas ready")
    degraded = next((c for c in status.get("conditions") or [] if c.get("type") == "Degraded"
                     and c.get("status") == "True"), None)
    why = f" {degraded.get('reason')}: {degraded.get('message')}" if degraded else " See its status."
    return Problem("LLMDeploymentNotReady", short_message(
        f"LLMDeployment {name} is {status.get('phase') or 'not reconciled yet'} ({', '.join(counts)}): a model "
        f"with none ready cannot answer.{why}"))


def compute_gateway_status(gateway: LLMGateway, routes: list[GatewayRoute], route_problems: list[str],
                           llmds: dict[str, dict[str, Any]], deployment: dict[str, Any] | None,
                           apply_error: str | None = None, name_conflicts: list[str] | None = None,
                           chat_deployment: dict[str, Any] | None = None,
                           unguarded: list[str] | None = None,
                           missing_secrets: list[Problem] | None = None) -> dict[str, Any]:
    """`llmds`: the selected LLMDeployments as read (by name); `deployment`: the gateway's own;
    `chat_deployment`: its chat page's, when spec.chatPage is set; `unguarded`: why selected models
    are not routed (render.gateway.routes.guarded_models); `missing_secrets`: secret_problems."""
    generation = gateway.metadata.generation
    models = {}
    for route in routes:
        roles = ((llmds.get(route.llmdeployment) or {}).get("status") or {}).get("roles") or {}
        models[route.served_name] = {"llmDeployment": route.llmdeployment, "role": route.role,
                                     "readyReplicas": (roles.get(route.role) or {}).get("readyReplicas") or 0}
    problems = [*(missing_secrets or ()), *(Problem("NameConflict", message) for message in name_conflicts or ())]
    problems += [Problem("ModelNameConflict", message) for message in route_problems]
    problems += [Problem("GatewayKeyRequired", message) for message in unguarded or ()]
    if not routes and not route_problems and not unguarded:
        problems.append(Problem("NoModels", "The selector matches no LLMDeployment in this namespace: label the "
                                            "LLMDeployments to serve, or change spec.selector."))
    by_deployment: dict[str, list[GatewayRoute]] = {}
    for route in routes:
        by_deployment.setdefault(route.llmdeployment, []).append(route)
    waiting = []
    for name, owned in by_deployment.items():
        problem = _deployment_problem(name, owned, llmds.get(name))
        if problem and ((llmds.get(name) or {}).get("status") or {}).get("phase") in ("Degraded", "Failed"):
            problems.append(problem)
        elif problem:
            waiting.append(problem)
    seen = deployment is not None and (deployment.get("status") or {}).get("observedGeneration") == \
        (deployment.get("metadata") or {}).get("generation")
    pods_ready = _gateway_ready(deployment, seen)
    chat_page = None
    if gateway.spec.chatPage is not None:
        chat_seen = chat_deployment is not None and (chat_deployment.get("status") or {}).get("observedGeneration") == \
            (chat_deployment.get("metadata") or {}).get("generation")
        chat_page = {"url": chat_page_url(gateway), "ready": _gateway_ready(chat_deployment, chat_seen),
                     "models": chat_models(routes)}
        if not chat_page["ready"]:
            waiting.append(Problem("ChatPageStarting", "Waiting for the chat page's pod to be ready."))
    if apply_error:
        phase, problems = "Failed", [Problem("ApplyFailed", f"The API server refused {apply_error}"), *problems]
    elif problems:
        phase = "Degraded"
    elif waiting or not pods_ready:
        phase = "Pending"
    else:
        phase = "Ready"
    first = problems[0] if problems else None
    reasons = problems + waiting
    if phase == "Ready":
        ready = ("True", "Ready", f"Routing to {len(routes)} models, all ready.")
    elif reasons:
        more = f" ({len(reasons) - 1} more problems)" if len(reasons) > 1 else ""
        ready = ("False", reasons[0].reason, short_message(reasons[0].message + more))
    else:
        ready = ("False", "GatewayStarting", "Waiting for the gateway's pods to be ready.")
    conditions = [
        (READY, *ready),
        (PROGRESSING, "True" if phase == "Pending" else "False", "GatewayStarting" if phase == "Pending" else (
            "Ready" if phase == "Ready" else "Stalled"), "Waiting for the gateway's pods." if phase == "Pending" else (
            "Rollout complete." if phase == "Ready" else "Waiting for the problem in the Degraded condition to be fixed.")),
        (DEGRADED, "True" if first else "False", first.reason if first else "AsExpected",
         short_message(first.message) if first else "No problem detected."),
    ]
    result: dict[str, Any] = {
        "observedGeneration": generation,
        "phase": phase,
        "url": gateway_url(gateway),
        "models": models,
        "conditions": [{"type": kind, "status": status, "reason": reason, "message": message,
                        "observedGeneration": generation} for kind, status, reason, message in conditions],
    }
    if chat_page is not None:
        result["chatPage"] = chat_page
    return result
