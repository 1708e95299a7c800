"""kopf wiring: thin handlers that turn watch events into reconcile requests.

Why watch events and not kopf's create/update/resume handlers: those keep progress and diff-base
annotations on the object and patch them on every start, so a restart would write to every
LLMDeployment. Event handlers store nothing; level-based reconcile needs nothing stored. The same
`reconcile()` runs for the resource's own events, for any event of a child it owns (mapped back by
the `llmops.dev/deployment` label) and for a periodic resync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import kopf
from kubernetes.client.rest import ApiException

from ..api.models import GROUP, PLURAL, VERSION
from ..k8s import Kube, describe
from ..metrics import RECONCILE_SECONDS, RECONCILES, publish_phases
from ..reconcile import reconcile
from ..render import DEPLOYMENT_LABEL, MANAGED_BY, RenderConfig
from .queue import WorkQueue

log = logging.getLogger("llm_operator")

MANAGED_LABELS = {"app.kubernetes.io/managed-by": MANAGED_BY}
CHILD_RESOURCES = (("apps", "v1", "deployments"), ("", "v1", "services"),
                   ("", "v1", "persistentvolumeclaims"), ("", "v1", "pods"))


@dataclass
class OperatorContext:
    """What the handlers share, set once by `llm-operator run` before kopf starts."""

    kube: Kube
    config: RenderConfig
    workers: int = 4
    resync_seconds: float = 300.0
    crd_wait_seconds: float = 60.0
    queue: WorkQueue | None = None
    phases: dict = field(default_factory=dict)  # "namespace/name" -> last phase


context: OperatorContext | None = None


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


async def _reconcile_one(key: str) -> None:
    namespace, name = key.split("/", 1)
    started = time.monotonic()
    try:
        result = await asyncio.to_thread(reconcile, context.kube, context.config, namespace, name)
    except ApiException as error:
        RECONCILES.labels(result="error").inc()
        raise RuntimeError(describe(error)) from None  # the queue logs it and retries with backoff
    except Exception:
        RECONCILES.labels(result="error").inc()
        raise
    finally:
        RECONCILE_SECONDS.observe(time.monotonic() - started)
    RECONCILES.labels(result="written" if result.writes else "unchanged").inc()
    if result.phase is None:
        context.phases.pop(key, None)
    else:
        context.phases[key] = result.phase
    publish_phases(context.phases)
    if result.requeue_after:
        context.queue.add_after(key, result.requeue_after)


async def _resync_forever() -> None:
    """Level-based safety net: reconcile every known object now and then, events or not."""
    while True:
        await asyncio.sleep(context.resync_seconds)
        for key in list(context.phases):
            context.queue.add(key)


async def _wait_for_the_crd() -> None:
    """kopf only discovers resources at start (scanning is off, see below): without the CRD it would
    watch nothing, forever. Wait a little (a Helm install applies CRD and Deployment together), then
    stop with a message, so Kubernetes restarts the pod and the condition shows in its status."""
    deadline = time.monotonic() + context.crd_wait_seconds
    while not await asyncio.to_thread(context.kube.llmdeployments_served):
        if time.monotonic() > deadline:
            raise kopf.PermanentError(
                f"The {PLURAL}.{GROUP}/{VERSION} API is not served: install the CRD "
                "(`kubectl apply --server-side -f crds/` or the chart with crds.enabled=true)")
        log.info("Waiting for the %s.%s CRD to be served", PLURAL, GROUP)
        await asyncio.sleep(2)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.enabled = False  # the operator posts its own Events, on transitions only
    # Without timeouts a watch can hang silently on a half-open connection.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    for _, _, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[plural] = "app.kubernetes.io/managed-by=" + MANAGED_BY
    # No watching of CRDs and namespaces: the operator needs no cluster-scoped permission at all
    # in listed-namespaces mode, and the resources it serves are fixed.
    settings.scanning.disabled = True
    await _wait_for_the_crd()
    context.queue = WorkQueue(_reconcile_one, workers=context.workers)
    context.queue.start()
    asyncio.create_task(_resync_forever(), name="resync")
    log.info("Started llm-operator: %d workers, resync every %.0fs", context.workers, context.resync_seconds)


@kopf.on.cleanup()
async def shutdown(**_) -> None:
    if context.queue:
        await context.queue.stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def llmdeployment_changed(event, namespace, name, **_) -> None:
    if event["type"] == "DELETED":
        context.phases.pop(_key(namespace, name), None)
        publish_phases(context.phases)
        return
    context.queue.add(_key(namespace, name))


async def child_changed(namespace, labels, **_) -> None:
    owner = labels.get(DEPLOYMENT_LABEL)
    if owner:
        context.queue.add(_key(namespace, owner))


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=MANAGED_LABELS, id=f"child-{_plural}")(child_changed)
