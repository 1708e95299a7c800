"""One idempotent reconcile of one LLMGateway, as controllers/llmdeployment does for LLMDeployments: read the
gateway and the LLMDeployments it selects, render its objects, write only the difference, report.

Its Deployment and Service are read from the watch caches; its ConfigMap, ServiceAccount, Role and
RoleBinding are not watched. Those are read once per process (the first reconcile, so a restart
writes nothing when nothing changed) and afterwards only when their render changes: the memo keeps
the hash each was last seen or written with.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from ...api import InvalidSpec, LLMDeployment, parse_llmdeployment
from ...api.llmgateway import GATEWAY_KIND, LLMGateway
from ...api.validation import parse
from ...k8s import ApplyRejected, Kube
from ...names import CHAT_PAGE_LABEL, GATEWAY_LABEL, HASH_ANNOTATION
from ...render import RenderConfig, render_gateway
from ...render.gateway.chat_page import chat_page_name
from ...render.gateway.meta import gateway_name
from ...render.gateway.routes import GatewayRoute, routes_of, selects
from ...render.meta import child_name
from ..shared import (
    FAILED_RETRY_SECONDS,
    Problem,
    Result,
    Written,
    invalid_spec_status,
    keep_expanded_claim,
    needs_apply,
    transitions,
    write_status,
)
from .status import compute_gateway_status, secret_problems, waiting_for_volumes

log = logging.getLogger("llm_operator.reconcile")

# Watched by the operator's caches: compared with the live object on every reconcile.
_CACHED_KINDS = frozenset({"Deployment", "Service"})
# A pod waiting for its volumes changes nothing while the kubelet retries the mount: look again.
VOLUME_WAIT_RETRY_SECONDS = 15.0


class GatewayMemo:
    """(namespace, gateway) -> {(kind, name): the rendered hash the live object was seen with}."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], dict[tuple[str, str], str]] = {}

    def matches(self, namespace: str, gateway: str, desired: dict[str, Any]) -> bool:
        key = (desired["kind"], desired["metadata"]["name"])
        return self._seen.get((namespace, gateway), {}).get(key) == desired["metadata"]["annotations"][HASH_ANNOTATION]

    def remember(self, namespace: str, gateway: str, desired: dict[str, Any]) -> None:
        key = (desired["kind"], desired["metadata"]["name"])
        self._seen.setdefault((namespace, gateway), {})[key] = desired["metadata"]["annotations"][HASH_ANNOTATION]

    def forget(self, namespace: str, gateway: str) -> None:
        self._seen.pop((namespace, gateway), None)


def _selected(kube: Kube, gateway: LLMGateway, namespace: str) -> tuple[dict[str, dict[str, Any]], list[LLMDeployment]]:
    """The selected LLMDeployments as read (by name) and parsed; ones that do not parse are left
    out here (their own status says why)."""
    raws, parsed = {}, []
    for raw in kube.list_llmdeployments(namespace):
        metadata = raw["metadata"]
        if metadata.get("deletionTimestamp") or not selects(gateway, metadata.get("labels")):
            continue
        try:
            parsed.append(parse_llmdeployment(raw))
        except InvalidSpec:
            continue
        raws[metadata["name"]] = raw
    return raws, parsed


def _service_address(kube: Kube, namespace: str, name: str) -> str | None:
    """A Service's "clusterIP:port", once it has one."""
    spec = (kube.get_child("Service", namespace, name) or {}).get("spec") or {}
    ip, ports = spec.get("clusterIP"), spec.get("ports") or []
    return f"{ip}:{ports[0]['port']}" if ip and ip != "None" and ports else None


def _with_service_addresses(kube: Kube, namespace: str, routes: list[GatewayRoute]) -> list[GatewayRoute]:
    """Each route with its role Service's "clusterIP:port", where the Service has one yet."""
    return [dataclasses.replace(route, service=_service_address(kube, namespace, child_name(route.llmdeployment, route.role)))
            for route in routes]


def _missing_secrets(kube: Kube, namespace: str, gateway: LLMGateway) -> tuple[list[Problem], bool]:
    """What the gateway's and its chat page's pods say of missing Secrets (status.secret_problems),
    and whether a pod still waits for its volumes without a word on why yet. The Events of a pod
    are read only while it waits for its volumes."""
    name = gateway.metadata.name
    pods = {"gateway": kube.list_labelled_pods(namespace, GATEWAY_LABEL, name),
            "chat page": kube.list_labelled_pods(namespace, CHAT_PAGE_LABEL, name) if gateway.spec.chatPage else []}
    waiting = [pod["metadata"]["name"] for owned in pods.values() for pod in owned if waiting_for_volumes(pod)]
    problems = secret_problems(gateway, pods, {pod: kube.list_pod_events(namespace, pod) for pod in waiting})
    return problems, bool(waiting) and not problems


def _remove_chat_page(kube: Kube, namespace: str, name: str) -> list[str]:
    """Deletes the chat page's Deployment and Service, if this gateway made them, once spec.chatPage
    is gone. Its claim stays: it holds the page's users and chats (deleted with the gateway)."""
    deleted = []
    for kind in ("Deployment", "Service"):
        live = kube.get_child(kind, namespace, chat_page_name(name))
        if live and (live["metadata"].get("labels") or {}).get(CHAT_PAGE_LABEL) == name:
            kube.delete(kind, namespace, chat_page_name(name))
            deleted.append(f"{kind} {chat_page_name(name)}")
    if deleted:
        log.info("Deleted %s of LLMGateway %s/%s: chatPage is no longer in the spec", ", ".join(deleted), namespace, name)
    return deleted


def reconcile_gateway(kube: Kube, config: RenderConfig, namespace: str, name: str, memo: GatewayMemo) -> Result:
    """The phases in order; each returns early once it decides the outcome."""
    raw = kube.get_llmgateway(namespace, name)
    # Gone or going: the garbage collector deletes the children by their owner references.
    if raw is None or raw["metadata"].get("deletionTimestamp"):
        memo.forget(namespace, name)
        return Result(None, 0)
    # Parse; a spec the operator cannot read is reported in status.
    try:
        gateway = parse(LLMGateway, raw)
    except InvalidSpec as error:
        return write_status(kube, raw, invalid_spec_status(raw["metadata"].get("generation"), error.errors), 0,
                            GATEWAY_KIND, transitions)
    # Route the selected LLMDeployments, and render.
    llmds, selected = _selected(kube, gateway, namespace)
    routes, route_problems, unguarded = routes_of(gateway, selected)
    routes = _with_service_addresses(kube, namespace, routes)
    # The chat page reaches the gateway by its Service's address, which needs no cluster DNS.
    own_address = _service_address(kube, namespace, gateway_name(name)) if gateway.spec.chatPage else None
    desired = render_gateway(gateway, routes, config, own_address)
    # Write what differs, then remove a chat page the spec no longer has.
    written = _write_children(kube, namespace, name, raw["metadata"].get("uid"), desired, memo)
    if gateway.spec.chatPage is None and written.apply_error is None:
        written.writes += len(_remove_chat_page(kube, namespace, name))
    # Observe the pods' Secrets, and report.
    missing_secrets, mounting = _missing_secrets(kube, namespace, gateway)
    status = compute_gateway_status(gateway, routes, route_problems, llmds,
                                    written.live.get(("Deployment", gateway_name(name))), written.apply_error,
                                    written.held.conflicts, written.live.get(("Deployment", chat_page_name(name))),
                                    unguarded, missing_secrets)
    if status["phase"] != "Ready":
        memo.forget(namespace, name)  # something may be missing that no watch reports: read all again next time
    result = write_status(kube, raw, status, written.writes, GATEWAY_KIND, transitions)
    if written.apply_error:
        return Result(result.phase, result.writes, FAILED_RETRY_SECONDS)
    return Result(result.phase, result.writes, VOLUME_WAIT_RETRY_SECONDS if mounting else None)


def _write_children(kube: Kube, namespace: str, name: str, uid: str, desired: list[dict[str, Any]],
                    memo: GatewayMemo) -> Written:
    """Apply each child that differs from its render, in render order; stop at the first refusal.
    `live` holds the Deployments (the gateway's and the chat page's), which status reads."""
    written, applied = Written({}), []
    for obj in desired:
        kind, child = obj["kind"], obj["metadata"]["name"]
        if written.held.uses_held(obj):
            continue
        if kind not in _CACHED_KINDS and memo.matches(namespace, name, obj):
            continue
        live = kube.get_child(kind, namespace, child)
        if written.held.in_conflict(obj, live, uid):
            continue
        obj = keep_expanded_claim(obj, live)
        if needs_apply(obj, live):
            try:
                live = kube.apply(obj)
            except ApplyRejected as error:
                written.apply_error = str(error)
                break
            written.writes += 1
            applied.append(f"{kind} {child}")
        memo.remember(namespace, name, obj)
        if kind == "Deployment" and live is not None:
            written.live[(kind, child)] = live
    if applied:
        log.info("Applied %s for LLMGateway %s/%s", ", ".join(applied), namespace, name)
    return written
