"""Names and labels of the children: what the renderer writes and the watches and status read."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.meta import API_VERSION, ObjectMeta
from ..names import DEPLOYMENT_LABEL, HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, ROLE_LABEL


def content_hash(obj: dict[str, Any]) -> str:
    """Hash of an object as rendered, without its own hash annotation."""
    annotations = dict(obj["metadata"].get("annotations") or {})
    annotations.pop(HASH_ANNOTATION, None)
    canonical = {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()[:16]


def finished(objects: list[dict[str, Any]], owner_kind: str, owner: ObjectMeta) -> list[dict[str, Any]]:
    """The last step of rendering every kind: each child gets its owner reference (when the owner
    exists in a cluster, so has a uid; the garbage collector deletes children with their owner)
    and the hash annotation the operator compares to skip writes."""
    for obj in objects:
        if owner.uid:
            obj["metadata"]["ownerReferences"] = [{"apiVersion": API_VERSION, "kind": owner_kind, "name": owner.name,
                                                   "uid": owner.uid, "controller": True, "blockOwnerDeletion": True}]
        obj["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = content_hash(obj)
    return objects


def child_name(owner: str, role: str) -> str:
    return f"{owner}-{role}"


def upstream_stat_name(owner: str, role: str) -> str:
    """What a gateway's Envoy calls a role's upstream in its statistics (`envoy_cluster_name`):
    stable whatever the gateway's route order, and read back by the role's ScaledObject to wake it
    from zero. Names hold no "." (Envoy's tag extraction would cut the name there) nor "_"."""
    return f"{owner}_{role}"


def cache_claim_name(owner: str) -> str:
    return f"{owner}-cache"


def network_policy_name(owner: str) -> str:
    return f"{owner}-ingress"


def selector_labels(owner: str, role: str) -> dict[str, str]:
    """The labels that select a role's pods; immutable in a Deployment, so kept minimal."""
    return {DEPLOYMENT_LABEL: owner, ROLE_LABEL: role}


def labels(owner: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": {"cache": "model-cache", "network-policy": "llm-operator"}.get(component, "vllm"),
        "app.kubernetes.io/instance": owner,
        "app.kubernetes.io/component": component,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "llm-operator",
        DEPLOYMENT_LABEL: owner,
        ROLE_LABEL: component,
    }


def app_labels(app: str, instance: str, component: str) -> dict[str, str]:
    """The app.kubernetes.io labels of an object that is not a role's (gateway, chat page)."""
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "llm-operator",
    }


def object_meta(name: str, namespace: str | None, object_labels: dict[str, str]) -> dict[str, object]:
    """metadata of a child; the namespace is left out when rendering offline without one."""
    meta: dict[str, object] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = object_labels
    return meta


def references(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every object of its namespace that `obj` uses: its pod template's claims,
    ConfigMaps and service account, a RoleBinding's service accounts and Role. What refers to an
    object another owner holds is not applied: it would mount that claim, run as that account,
    bind to it."""
    found: set[tuple[str, str]] = set()
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    for volume in pod.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            found.add(("PersistentVolumeClaim", claim))
        if (volume.get("configMap") or {}).get("name"):
            found.add(("ConfigMap", volume["configMap"]["name"]))
    if pod.get("serviceAccountName"):
        found.add(("ServiceAccount", pod["serviceAccountName"]))
    if obj.get("kind") == "RoleBinding":
        found |= {("ServiceAccount", subject["name"]) for subject in obj.get("subjects") or []
                  if subject.get("kind") == "ServiceAccount"}
        role = obj.get("roleRef") or {}
        if role.get("kind") == "Role":
            found.add(("Role", role["name"]))
    return found
