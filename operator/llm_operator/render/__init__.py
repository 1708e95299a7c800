"""Pure rendering: (LLMDeployment, RenderConfig) -> the Kubernetes objects that serve it.

No API calls, no clock, no randomness: the same input always gives the same output, which is what
lets the operator skip writes by comparing `llmops.dev/rendered-hash` annotations, and what the
golden files in tests/golden/ pin down.

How it is built: each role is worked out once into a `RolePlan` (plan.py: every decision, from
names, model path and parallelism to environment, resources and placement), and small builders
assemble plain Python data from it alone (pod.py for the Deployment, service.py for the Service and
NetworkPolicy, storage.py for the cache claim, autoscaling.py for KEDA's ScaledObject); an LLMBatch's
Job (batch.py) is planned the same way. Every kind's objects end in `meta.finished`, which adds the
owner reference and the hash. There are no templates:
Kubernetes objects are data, and the earlier Jinja2-to-YAML renderer had to parse its own text back,
which cost 97 % of render time and broke on characters YAML cannot carry (U+007F, C1 controls,
U+FFFE) or silently changes (U+0085). Jinja2 stays for output that really is text; the renderer
has none.
"""

from __future__ import annotations

from typing import Any

from ..api.llmdeployment import KIND, LLMDeployment
from .autoscaling import scaled_object, wants_scaled_object
from .config import RenderConfig
from .gateway import render_gateway
from .meta import content_hash, finished
from .plan import llmdeployment_workload, plan_role
from .pod import deployment
from .service import allowed_namespaces, network_policy, service, service_url
from .storage import cache_claim, wants_cache_claim

__all__ = ["RenderConfig", "content_hash", "render", "render_gateway", "service_url"]


def render(llmd: LLMDeployment, config: RenderConfig | None = None) -> list[dict[str, Any]]:
    """Every object the LLMDeployment needs: the cache claim first, then per role a Deployment, a
    Service and (autoscaled by KEDA) a ScaledObject, then the NetworkPolicy when asked for."""
    config = config or RenderConfig()
    objects: list[dict[str, Any]] = []
    if wants_cache_claim(llmd):
        objects.append(cache_claim(llmd))
    workload = llmdeployment_workload(llmd)
    for role_name, role in llmd.spec.roles().items():
        objects.append(deployment(plan_role(workload, role_name, role, config)))
        objects.append(service(llmd, role_name))
        if wants_scaled_object(role):
            objects.append(scaled_object(llmd, role_name, role, config.prometheus_url))
    if allowed_namespaces(llmd):
        objects.append(network_policy(llmd))
    return finished(objects, KIND, llmd.metadata)
