"""The kinds the operator reconciles, one row each; the kopf wiring (handlers/) loops over the table.

Each kind's controller is a package of its own (`reconcile.py`: read, render, write the difference,
report; `status.py`: pure, what was observed -> status) over `shared.py`. A fourth kind adds its
package and a row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..api.llmbatch import BATCH_KIND, BATCH_PLURAL
from ..api.llmdeployment import KIND, PLURAL
from ..api.llmgateway import GATEWAY_KIND, GATEWAY_PLURAL
from ..k8s import Kube
from ..names import BATCH_LABEL, CHAT_PAGE_LABEL, DEPLOYMENT_LABEL, GATEWAY_LABEL
from ..render import RenderConfig
from .llmbatch.reconcile import reconcile_batch
from .llmdeployment.reconcile import RenderMemo, reconcile
from .llmgateway.reconcile import GatewayMemo, reconcile_gateway
from .shared import Result


class ObjectKey(NamedTuple):
    """What the work queue holds: one object of one kind."""

    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Controller:
    kind: str
    plural: str  # of its CRD, to ask whether the API server serves it
    # One reconcile: (kube, config, namespace, name, the memo `new_memo` made for this process).
    reconcile: Callable[[Kube, RenderConfig, str, str, Any], Result]
    new_memo: Callable[[], Any]
    # Labels that carry an object's name on its children and pods: a change of one queues it.
    labels: tuple[str, ...]
    # Kinds whose objects in the same namespace are queued when one of this kind changes or its status
    # is written (an LLMGateway routes to the LLMDeployments of its namespace and reports their readiness).
    wakes: tuple[str, ...] = ()
    # Reconciled once more when deleted (the reconcile then forgets what its memo kept of it).
    reconcile_deleted: bool = False
    # The operator waits for this CRD; without another kind's CRD it runs without that kind.
    required: bool = False
    # Its phase is counted in the operator's by-phase gauge.
    counted: bool = False


CONTROLLERS = (
    # First: a child labelled for an LLMDeployment is the LLMDeployment's, whatever else it carries.
    Controller(KIND, PLURAL, reconcile, RenderMemo, (DEPLOYMENT_LABEL,), wakes=(GATEWAY_KIND,), required=True,
               counted=True),
    # Its chat page's objects and pods are the gateway's too.
    Controller(GATEWAY_KIND, GATEWAY_PLURAL, reconcile_gateway, GatewayMemo, (GATEWAY_LABEL, CHAT_PAGE_LABEL),
               reconcile_deleted=True),
    Controller(BATCH_KIND, BATCH_PLURAL, lambda kube, config, namespace, name, _memo:
               reconcile_batch(kube, config, namespace, name), lambda: None, (BATCH_LABEL,)),
)
BY_KIND = {controller.kind: controller for controller in CONTROLLERS}


def owner_of(labels: dict[str, str], namespace: str) -> ObjectKey | None:
    """The object a child or pod with these labels belongs to, if any."""
    for controller in CONTROLLERS:
        name = next((labels[label] for label in controller.labels if labels.get(label)), None)
        if name:
            return ObjectKey(controller.kind, namespace, name)
    return None
