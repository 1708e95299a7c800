"""One idempotent reconcile of one LLMDeployment: the same code for create, update, resume,
resync and any change to a child. It reads the world, renders what should exist, writes only the
difference, and reports what it saw in status."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from ...api import InvalidSpec, parse_llmdeployment
from ...api.llmdeployment import KIND
from ...k8s import FIELD_MANAGER, ApplyRejected, Kube, now
from ...names import ENGINE_CONTAINER, ROLE_LABEL
from ...render import RenderConfig, render
from ...render.autoscaling import prometheus_namespace
from ..shared import (
    CONFLICT_RETRY_SECONDS,
    FAILED_RETRY_SECONDS,
    Result,
    Written,
    invalid_spec_status,
    keep_expanded_claim,
    needs_apply,
    transitions,
    write_status,
)
from .status import (
    Observed,
    compile_cache_entry,
    compile_cache_event,
    compute_status,
    render_failed_status,
    roles_keeping_compiled_files,
    unread_starts,
)

log = logging.getLogger("llm_operator.reconcile")

REPLICAS_HANDOFF_MANAGER = "llm-operator-replicas-handoff"
# An engine logs its compile cache line within this much of its log's start (vLLM's start-up lines
# come first); and once ready without the line, it is looked for again this soon.
LOG_HEAD_BYTES = 1 << 20
START_LINE_RETRY_SECONDS = 5.0


def replicas_handoff(desired: dict[str, Any], live: dict[str, Any] | None) -> dict[str, Any] | None:
    """The apply that passes `spec.replicas` of a Deployment to an autoscaler, or None.

    When a role switches to `autoscaling`, the operator stops applying `replicas`. If it was the
    field's only owner, server-side apply would then reset the field to its default (1 pod). So
    first a second field manager applies the current value, and the field stays as it is until the
    autoscaler changes it (Kubernetes' documented way of handing a field to an HPA)."""
    if desired["kind"] != "Deployment" or "replicas" in desired["spec"] or live is None:
        return None
    owned = any(entry.get("manager") == FIELD_MANAGER and entry.get("operation") == "Apply"
                and "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {})
                for entry in live["metadata"].get("managedFields") or [])
    if not owned or "replicas" not in (live.get("spec") or {}):
        return None
    return {"apiVersion": desired["apiVersion"], "kind": "Deployment",
            "metadata": {"name": desired["metadata"]["name"], "namespace": desired["metadata"]["namespace"]},
            "spec": {"replicas": live["spec"]["replicas"]}}


# Kinds whose metadata.generation the API server raises on every change of the spec and never on a
# change of status. Other kinds (a Service has no generation) are fingerprinted by resourceVersion.
_GENERATION_KINDS = frozenset({"Deployment", "ScaledObject"})


def child_fingerprint(desired: dict[str, Any], live: dict[str, Any]) -> tuple[Any, ...]:
    """What stays the same while a child keeps matching a render it matched once: its incarnation,
    its spec (generation, or resourceVersion for kinds without one) and the values of the labels,
    annotations and owner references the render sets. A Deployment's status updates, and the
    revision annotation its controller adds, leave it unchanged."""
    metadata, rendered = live["metadata"], desired["metadata"]
    version = metadata.get("generation") if live.get("kind") in _GENERATION_KINDS else metadata.get("resourceVersion")
    labels, annotations = metadata.get("labels") or {}, metadata.get("annotations") or {}
    return (metadata.get("uid"), version, [labels.get(key) for key in rendered.get("labels") or ()],
            [annotations.get(key) for key in rendered.get("annotations") or ()], metadata.get("ownerReferences"))


class RenderMemo:
    """The last parse and render of each LLMDeployment, reused while their inputs are unchanged,
    and the fingerprints of the children that matched that render.

    Parse and render are pure functions of the resource's uid, generation (which the API server
    raises on every change of the spec), labels and annotations, given the process's one
    RenderConfig. At 1,000 resources, parsing and rendering again on every pod event was a fifth of
    the operator's CPU, and comparing each Deployment with its render again on every status change
    a tenth of what was left. What it hands out must not be changed (reconcile copies an object
    before adjusting it)."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[tuple[Any, ...], Any, list[dict[str, Any]]]] = {}
        self._matched: dict[tuple[str, str], dict[tuple[str, str], tuple[Any, ...]]] = {}

    @staticmethod
    def _inputs(raw: dict[str, Any]) -> tuple[Any, ...]:
        metadata = raw["metadata"]
        return (metadata.get("uid"), metadata.get("generation"),
                json.dumps([metadata.get("labels"), metadata.get("annotations")], sort_keys=True))

    def get(self, raw: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]] | None:
        entry = self._entries.get((raw["metadata"]["namespace"], raw["metadata"]["name"]))
        return entry[1:] if entry and entry[0] == self._inputs(raw) else None

    def put(self, raw: dict[str, Any], llmd: Any, desired: list[dict[str, Any]]) -> None:
        owner = (raw["metadata"]["namespace"], raw["metadata"]["name"])
        self._entries[owner] = (self._inputs(raw), llmd, desired)
        self._matched[owner] = {}  # a new render: every child is compared again

    def forget(self, namespace: str, name: str) -> None:
        self._entries.pop((namespace, name), None)
        self._matched.pop((namespace, name), None)

    def needs_apply(self, namespace: str, owner: str, desired: dict[str, Any], live: dict[str, Any] | None) -> bool:
        """`needs_apply`, answered from memory for a child unchanged since it matched this render."""
        if live is None:
            return True
        matched = self._matched.setdefault((namespace, owner), {})
        key, fingerprint = (desired["kind"], desired["metadata"]["name"]), child_fingerprint(desired, live)
        if matched.get(key) == fingerprint:
            return False
        if needs_apply(desired, live):
            matched.pop(key, None)
            return True
        matched[key] = fingerprint
        return False


def reconcile(kube: Kube, config: RenderConfig, namespace: str, name: str, renders: RenderMemo | None = None) -> Result:
    """The phases in order; each returns early once it decides the outcome."""
    raw = kube.get_llmdeployment(namespace, name)
    # Gone or going: the garbage collector deletes the children by their owner references.
    if raw is None or raw["metadata"].get("deletionTimestamp"):
        if renders:
            renders.forget(namespace, name)
        return Result(None, 0)
    # Parse and render (remembered while the inputs are the same); a failure is reported in status.
    rendered = _parse_and_render(kube, config, raw, renders)
    if isinstance(rendered, Result):
        return rendered
    llmd, desired = rendered
    # Write what differs, then delete what the spec no longer has.
    written = _write_children(kube, namespace, name, raw["metadata"].get("uid"), desired, renders)
    _delete_unwanted(kube, namespace, name, desired, written)
    # Observe what the children and their pods say, and report it in status.
    observed = Observed(apply_error=written.apply_error, name_conflicts=written.held.conflicts, unserved=written.unserved)
    _observe(kube, namespace, name, written.live, observed)
    observed.compile_cache, events, line_pending = read_engine_starts(
        kube, raw, roles_keeping_compiled_files(desired), observed.pods) if kube.reads_pod_logs else ({}, 0, False)
    result = write_status(kube, raw, compute_status(llmd, observed, config.gpu_resource,
                                                    prometheus_namespace(config.prometheus_url)),
                          written.writes + events, KIND, transitions)
    # Look again later for what no watch reports: a refused object may be accepted after an
    # operator upgrade or a permission grant, and a conflicting object is not labelled as ours.
    if written.apply_error:
        return Result(result.phase, result.writes, FAILED_RETRY_SECONDS)
    if written.held.conflicts:
        return Result(result.phase, result.writes, CONFLICT_RETRY_SECONDS)
    return Result(result.phase, result.writes, START_LINE_RETRY_SECONDS if line_pending else None)


def _parse_and_render(kube: Kube, config: RenderConfig, raw: dict[str, Any],
                      renders: RenderMemo | None) -> tuple[Any, list[dict[str, Any]]] | Result:
    """The LLMDeployment and its children as they should be, or the Result of reporting why not."""
    remembered = renders.get(raw) if renders else None
    if remembered:
        return remembered
    try:
        llmd = parse_llmdeployment(raw)
    except InvalidSpec as error:
        return write_status(kube, raw, invalid_spec_status(raw["metadata"].get("generation"), error.errors), 0, KIND,
                            transitions)
    try:
        desired = render(llmd, config)
    except Exception as error:  # any renderer defect must reach status, not loop unseen
        log.exception("Failed to render LLMDeployment %s/%s", raw["metadata"]["namespace"], raw["metadata"]["name"])
        result = write_status(kube, raw, render_failed_status(raw["metadata"].get("generation"), error), 0, KIND,
                              transitions)
        return Result(result.phase, result.writes, FAILED_RETRY_SECONDS)
    if renders:
        renders.put(raw, llmd, desired)
    return llmd, desired


def _write_children(kube: Kube, namespace: str, name: str, uid: str, desired: list[dict[str, Any]],
                    renders: RenderMemo | None) -> Written:
    """Apply each child that differs from its render, in render order; stop at the first refusal."""
    written = Written({(c["kind"], c["metadata"]["name"]): c for c in kube.list_children(namespace, name, uid)})
    live, held, applied = written.live, written.held, []
    for obj in desired:
        key = (obj["kind"], obj["metadata"]["name"])
        if obj["kind"] not in kube.child_kinds:  # an add-on's kind (KEDA's) this cluster lacks: said in status
            written.unserved.append(obj)
            continue
        if held.uses_held(obj):
            continue
        if key not in live:
            existing = kube.get_child(obj["kind"], namespace, key[1])
            if held.in_conflict(obj, existing, uid):
                continue
            if existing:
                live[key] = existing
        obj = keep_expanded_claim(obj, live.get(key))
        if not (renders.needs_apply(namespace, name, obj, live.get(key)) if renders else needs_apply(obj, live.get(key))):
            continue
        try:
            handoff = replicas_handoff(obj, live.get(key))
            if handoff:
                kube.apply(handoff, field_manager=REPLICAS_HANDOFF_MANAGER)
                written.writes += 1
                log.info("Handed replicas of Deployment %s/%s to its autoscaler", namespace, key[1])
            # Status is judged from the object as stored by this apply, not as read before it.
            live[key] = kube.apply(obj)
        except ApplyRejected as error:
            written.apply_error = str(error)
            break
        written.writes += 1
        applied.append(f"{obj['kind']} {key[1]}")
    if applied:  # one line per reconcile, not per child: at scale each log line costs as much as a read
        log.info("Applied %s for LLMDeployment %s/%s", ", ".join(applied), namespace, name)
    return written


def _delete_unwanted(kube: Kube, namespace: str, name: str, desired: list[dict[str, Any]], written: Written) -> None:
    """Delete the children the render no longer has; not after a refused apply, which leaves the
    render half written."""
    if written.apply_error is not None:
        return
    wanted = {(o["kind"], o["metadata"]["name"]) for o in desired if o["kind"] in kube.child_kinds}
    for key in [key for key in written.live if key not in wanted]:
        kube.delete(key[0], namespace, key[1])
        del written.live[key]
        written.writes += 1
        log.info("Deleted %s %s/%s of LLMDeployment %s: no longer in the spec", key[0], namespace, key[1], name)


def _observe(kube: Kube, namespace: str, name: str, live: dict[tuple[str, str], dict[str, Any]],
             observed: Observed) -> None:
    """The Deployments and claims among the children, and the pods of each role."""
    for child in live.values():
        role = child["metadata"].get("labels", {}).get(ROLE_LABEL)
        if child["kind"] == "Deployment":
            observed.deployments[role] = child
        elif child["kind"] == "PersistentVolumeClaim":
            observed.claims.append(child)
    for pod in kube.list_pods(namespace, name):
        observed.pods.setdefault(pod["metadata"].get("labels", {}).get(ROLE_LABEL), []).append(pod)


def _seconds_since(stamp: str | None, now: str) -> float:
    if not stamp:
        return 0.0
    api_time = "%Y-%m-%dT%H:%M:%SZ"  # the API server's format
    return (datetime.strptime(now, api_time) - datetime.strptime(stamp, api_time)).total_seconds()


def read_engine_starts(kube: Kube, raw: dict[str, Any], roles: list[str],
                       pods: dict[str, list[dict[str, Any]]]) -> tuple[dict[str, dict[str, Any]], int, bool]:
    """By role, the newest engine start that status tells of: what status says already, or a start
    since, read once from the head of its engine's log (one Event per start read). Returns them, the
    Events posted, and whether a ready engine has not logged its line yet (look again soon)."""
    recorded = (raw.get("status") or {}).get("roles") or {}
    namespace, stamp = raw["metadata"]["namespace"], now()
    newest: dict[str, dict[str, Any]] = {}
    events, pending = 0, False
    for role in roles:
        latest = (recorded.get(role) or {}).get("compileCache")
        for pod, started in unread_starts(pods.get(role, []), latest):
            name = pod["metadata"]["name"]
            ready_since = next((c.get("lastTransitionTime") for c in (pod.get("status") or {}).get("conditions") or []
                                if c.get("type") == "Ready"), started)
            entry = compile_cache_entry(name, started, kube.read_log_head(namespace, name, ENGINE_CONTAINER, LOG_HEAD_BYTES),
                                        _seconds_since(ready_since, stamp))
            if entry is None:
                pending = True
                break
            event = compile_cache_event(entry)
            if event:
                kube.post_event(raw, *event)
                events += 1
            latest = entry
        if latest:
            newest[role] = latest
    return newest, events, pending
