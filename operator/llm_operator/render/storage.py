"""The weights cache: which volume a role's pods mount, and the claim the operator creates for it."""

from __future__ import annotations

from typing import Any

from llm_runtime.layout import ModelSource

from ..api.llmdeployment import LLMDeployment
from .meta import cache_claim_name, labels, object_meta

CACHE_VOLUME = "model-cache"


def weights_claim(llmd: LLMDeployment) -> str | None:
    """The claim an LLMDeployment downloads weights into: an existing one, else the one the operator
    makes (`cache.size`), else None (each pod downloads into its own emptyDir)."""
    cache = llmd.spec.cache
    if cache and cache.existingClaim:
        return cache.existingClaim
    return cache_claim_name(llmd.metadata.name) if cache and cache.size else None


def cache_volume(source: ModelSource, claim: str | None) -> dict[str, Any]:
    """A pvc:// model's own claim (read-only), else the weights claim, else a per-pod emptyDir."""
    if source.scheme == "pvc":
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": source.repo, "readOnly": True}}
    if claim:
        return {"name": CACHE_VOLUME, "persistentVolumeClaim": {"claimName": claim}}
    return {"name": CACHE_VOLUME, "emptyDir": {}}


def keeps_compiled_files(source: ModelSource, claim: str | None, compile_cache: bool) -> bool:
    """The compile cache is on the weights volume when there is one to share (a claim, not a pod's
    emptyDir), the model is downloaded into it (a pvc:// model's claim is mounted read-only), and
    the spec does not turn it off."""
    return bool(source.is_hub and claim and compile_cache)


def wants_cache_claim(llmd: LLMDeployment) -> bool:
    """A new claim is made only when asked for and some role downloads from a hub into it."""
    cache = llmd.spec.cache
    return bool(cache and cache.size and any(r.model.parsed_source.is_hub for r in llmd.spec.roles().values()))


def cache_claim(llmd: LLMDeployment) -> dict[str, Any]:
    """The shared weights cache: every pod of every role of one LLMDeployment mounts it."""
    cache = llmd.spec.cache
    assert cache is not None, "rendered only when wants_cache_claim"
    owner = llmd.metadata.name
    spec: dict[str, Any] = {"accessModes": [cache.accessMode or "ReadWriteMany"]}
    if cache.storageClassName:
        spec["storageClassName"] = cache.storageClassName
    spec["resources"] = {"requests": {"storage": cache.size}}
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": object_meta(cache_claim_name(owner), llmd.metadata.namespace, labels(owner, "cache")),
        "spec": spec,
    }
