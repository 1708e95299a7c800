"""Pure rendering: (LLMDeployment, RenderConfig) -> the Kubernetes objects that serve it.

No API calls, no clock, no randomness: the same input always gives the same output, which is what
lets the operator skip writes by comparing `llmops.dev/rendered-hash` annotations, and what the
golden files in tests/golden/ pin down.

How it is built: each role is worked out once into a `RolePlan` (plan.py: names, model path,
parallelism, image, loaders, volumes), and small builders assemble plain Python data from it
(pod.py for the Deployment, service.py for the Service and NetworkPolicy, storage.py for the cache claim,
autoscaling.py for KEDA's ScaledObject). There are no templates:
Kubernetes objects are data, and the earlier Jinja2-to-YAML renderer had to parse its own text back,
which cost 97 % of render time and broke on characters YAML cannot carry (U+007F, C1 controls,
U+FFFE) or silently changes (U+0085). Jinja2 stays for output that really is text; the renderer
has none.
"""

from __future__ import annotations

from typing import Any

from ..api.llmdeployment import KIND, LLMDeployment
from ..api.meta import API_VERSION
from ..names import HASH_ANNOTATION
from .autoscaling import scaled_object, wants_scaled_object
from .config import RenderConfig
from .gateway import render_gateway
from .meta import content_hash
from .plan import plan_role
from .pod import deployment
from .service import allowed_namespaces, network_policy, service, service_url
from .storage import cache_claim, wants_cache_claim

__all__ = ["RenderConfig", "content_hash", "render", "render_gateway", "service_url"]


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


def render(llmd: LLMDeployment, config: RenderConfig | None = None) -> list[dict[str, Any]]:
    """Every object the LLMDeployment needs: the cache claim first, then per role a Deployment, a
    Service and (autoscaled by KEDA) a ScaledObject, then the NetworkPolicy when asked for."""
    config = config or RenderConfig()
    objects: list[dict[str, Any]] = []
    if wants_cache_claim(llmd):
        objects.append(cache_claim(llmd))
    for role_name, role in llmd.spec.roles().items():
        objects.append(deployment(plan_role(llmd, role_name, role, config)))
        objects.append(service(llmd, role_name))
        if wants_scaled_object(role):
            objects.append(scaled_object(llmd, role_name, role, config.prometheus_url))
    if allowed_namespaces(llmd):
        objects.append(network_policy(llmd))
    return [_finish(obj, llmd) for obj in objects]
