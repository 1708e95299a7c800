"""One idempotent reconcile of one LLMDeployment: the same code for create, update, resume,
resync and any change to a child. It reads the world, renders what should exist, writes only the
difference, and reports what it saw in status."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .api import InvalidSpec, parse_llmdeployment
from .api.models import LLMDeployment
from .k8s import ApplyRejected, Kube, now
from .render import HASH_ANNOTATION, ROLE_LABEL, RenderConfig, render
from .status import Observed, compute_status, invalid_spec_status, same_status, transitions, with_transition_times

log = logging.getLogger("llm_operator.reconcile")

SECRET_POLL_SECONDS = 10.0


@dataclass(frozen=True)
class Result:
    phase: str | None  # None when the object is gone
    writes: int
    requeue_after: float | None = None  # look again even without an event (things we do not watch)


def is_subset(desired: Any, live: Any) -> bool:
    """True when every field the operator sets has the same value in the live object.

    The API server adds defaults (so live has more) and drops false/empty values of non-pointer
    fields (so a desired `readOnly: false` may be absent): both count as unchanged."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return not desired
        return all(is_subset(value, live.get(key)) if key in live else value in (False, 0, "", [], {}, None)
                   for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(desired) == len(live) and all(
            is_subset(d, l) for d, l in zip(desired, live))
    return desired == live or str(desired) == str(live)


def needs_apply(desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
    """Write only when the rendered object changed or someone changed what the operator set (drift)."""
    if live is None:
        return True
    if (live["metadata"].get("annotations") or {}).get(HASH_ANNOTATION) != desired["metadata"]["annotations"][HASH_ANNOTATION]:
        return True
    return not is_subset(desired, live)


def referenced_secrets(llmd: LLMDeployment) -> list[tuple[str, str]]:
    """(secret name, spec field) pairs the pods need."""
    refs = []
    if llmd.spec.apiKeySecretRef:
        refs.append((llmd.spec.apiKeySecretRef.name, "spec.apiKeySecretRef"))
    for role, spec in llmd.spec.roles().items():
        for index, env in enumerate((spec.engine.env if spec.engine else None) or ()):
            if env.valueFrom:
                refs.append((env.valueFrom.secretKeyRef.name, f"spec.{role}.engine.env[{index}]"))
    # credentialsSecretRef keys are optional (public models need no token): a missing Secret is not an error.
    return refs


def reconcile(kube: Kube, config: RenderConfig, namespace: str, name: str) -> Result:
    raw = kube.get_llmdeployment(namespace, name)
    if raw is None or raw["metadata"].get("deletionTimestamp"):
        return Result(None, 0)  # owner references make the garbage collector delete the children
    old_status = raw.get("status")
    try:
        llmd = parse_llmdeployment(raw)
    except InvalidSpec as error:
        return _write_status(kube, raw, invalid_spec_status(raw["metadata"].get("generation"), error.errors), 0)

    if old_status and old_status.get("phase") == "Failed" and \
            old_status.get("observedGeneration") == llmd.metadata.generation:
        # The API server refused this generation's objects; retrying cannot help until the spec changes.
        return Result("Failed", 0)

    desired = render(llmd, config)
    live = {(c["kind"], c["metadata"]["name"]): c for c in kube.list_children(namespace, name, llmd.metadata.uid)}
    writes, apply_error = 0, None
    for obj in desired:
        key = (obj["kind"], obj["metadata"]["name"])
        if needs_apply(obj, live.get(key)):
            try:
                kube.apply(obj)
            except ApplyRejected as error:
                apply_error = str(error)
                break
            writes += 1
            log.info("Applied %s %s/%s for LLMDeployment %s", obj["kind"], namespace, key[1], name)
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired}
    for key, child in live.items():
        if key not in wanted and apply_error is None:
            kube.delete(key[0], namespace, key[1])
            writes += 1
            log.info("Deleted %s %s/%s of LLMDeployment %s: no longer in the spec", key[0], namespace, key[1], name)

    observed = Observed(apply_error=apply_error)
    for child in live.values():
        role = child["metadata"].get("labels", {}).get(ROLE_LABEL)
        if child["kind"] == "Deployment":
            observed.deployments[role] = child
        elif child["kind"] == "PersistentVolumeClaim":
            observed.claims.append(child)
    for pod in kube.list_pods(namespace, name):
        observed.pods.setdefault(pod["metadata"].get("labels", {}).get(ROLE_LABEL), []).append(pod)
    observed.missing_secrets = [f"Secret {secret} ({field})" for secret, field in referenced_secrets(llmd)
                                if not kube.secret_exists(namespace, secret)]
    result = _write_status(kube, raw, compute_status(llmd, observed, config.gpu_resource), writes)
    # Secrets are not watched (the operator may not list them): poll while one is missing.
    return Result(result.phase, result.writes, SECRET_POLL_SECONDS if observed.missing_secrets else None)


def _write_status(kube: Kube, raw: dict[str, Any], status: dict[str, Any], writes: int) -> Result:
    old = raw.get("status")
    if same_status(old, status):
        return Result(status["phase"], writes)
    namespace, name = raw["metadata"]["namespace"], raw["metadata"]["name"]
    kube.apply_status(namespace, name, with_transition_times(status, old, now()))
    writes += 1
    for event_type, reason, message in transitions(old, status):
        kube.post_event(raw, event_type, reason, message)
        writes += 1
    log.info("Updated status of LLMDeployment %s/%s: phase %s", namespace, name, status["phase"])
    return Result(status["phase"], writes)
