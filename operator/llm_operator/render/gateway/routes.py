"""Which models an LLMGateway fronts: the routes over the LLMDeployments it selects, and why a
selected model is left out (a served name two roles share, a guarded model behind a gateway
without a key). The operator and `llm-operator render` both route this way."""

from __future__ import annotations

from dataclasses import dataclass

from ...api.llmdeployment import LLMDeployment
from ...api.llmgateway import LLMGateway
from ...api.meta import SecretKeySelector
from ..autoscaling import scales_to_zero
from ..config import served_name

CHAT_ROLE = "llm"  # the role whose models a chat page lists


@dataclass(frozen=True)
class GatewayRoute:
    """One served model behind the gateway: a role of a selected LLMDeployment, and the address
    ("clusterIP:port") of that role's Service once it has one."""

    served_name: str
    llmdeployment: str
    role: str
    upstream_key: SecretKeySelector | None
    service: str | None = None
    wakes: bool = False  # the role may be scaled to zero: hold its requests while it wakes


def selects(gateway: LLMGateway, labels: dict[str, str] | None) -> bool:
    """Whether the gateway's selector matches an LLMDeployment's labels (empty selects all)."""
    wanted = gateway.spec.selector.matchLabels or {}
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


def guarded_models(gateway: LLMGateway, llmds: list[LLMDeployment]) -> tuple[list[LLMDeployment], list[str]]:
    """The selected LLMDeployments this gateway may route to, and why each other one may not. A
    gateway without apiKeySecretRef answers anyone who reaches it: fronting a model with an API key
    would hand that key to them, and one with service.allowedNamespaces would let in every namespace
    its NetworkPolicy keeps out."""
    if gateway.spec.apiKeySecretRef is not None:
        return llmds, []
    allowed, refused = [], []
    for llmd in llmds:
        guards = [guard for guard, present in (
            ("an API key (apiKeySecretRef)", llmd.spec.apiKeySecretRef is not None),
            ("service.allowedNamespaces", bool(llmd.spec.service and llmd.spec.service.allowedNamespaces))) if present]
        if guards:
            refused.append(f"LLMDeployment {llmd.metadata.name} has {' and '.join(guards)}, and this gateway has no "
                           "key: it is not routed, or the gateway would open it to anyone. Set spec.apiKeySecretRef "
                           "on the gateway, or stop selecting it.")
        else:
            allowed.append(llmd)
    return allowed, refused


def gateway_routes(llmds: list[LLMDeployment]) -> tuple[list[GatewayRoute], list[str]]:
    """The routes of the selected LLMDeployments, by served name, and what keeps a model out: a name
    served by two roles is routed to neither (which one a client meant cannot be known)."""
    by_name: dict[str, list[GatewayRoute]] = {}
    for llmd in sorted(llmds, key=lambda item: item.metadata.name):
        for role_name, role in llmd.spec.roles().items():
            name = served_name(role.model)
            by_name.setdefault(name, []).append(GatewayRoute(
                name, llmd.metadata.name, role_name, llmd.spec.apiKeySecretRef, wakes=scales_to_zero(role)))
    routes, problems = [], []
    for name in sorted(by_name):
        candidates = by_name[name]
        if len(candidates) == 1:
            routes.append(candidates[0])
        else:
            where = ", ".join(f"{route.llmdeployment} ({route.role})" for route in candidates)
            problems.append(f"model {name!r} is served by {where}: give each a distinct model.servedName")
    return routes, problems


def routes_of(gateway: LLMGateway, selected: list[LLMDeployment]) -> tuple[list[GatewayRoute], list[str], list[str]]:
    """The gateway's routes over the LLMDeployments it selects (`selects`), the served names that
    clash (routed to neither: gateway_routes), and why the models it may not front are left out
    (guarded_models). The operator and `llm-operator render` both route this way."""
    guarded, unguarded = guarded_models(gateway, selected)
    routes, clashes = gateway_routes(guarded)
    return routes, clashes, unguarded


def chat_models(routes: list[GatewayRoute]) -> list[str]:
    """The served names of the gateway's chat models (its `llm` roles), sorted: what its chat page lists."""
    return sorted(route.served_name for route in routes if route.role == CHAT_ROLE)
