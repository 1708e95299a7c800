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
from ..k8s import Kube, describe, load_config
from ..metrics import RECONCILE_SECONDS, RECONCILES, publish_phases
from ..reconcile import reconcile
from ..names import DEPLOYMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from ..render import RenderConfig
from .leader import LeaderElector
from .queue import WorkQueue

log = logging.getLogger("llm_operator")

MANAGED_LABELS = {MANAGED_BY_LABEL: MANAGED_BY}
CHILD_RESOURCES = (("apps", "v1", "deployments"), ("", "v1", "services"),
                   ("", "v1", "persistentvolumeclaims"), ("networking.k8s.io", "v1", "networkpolicies"),
                   ("", "v1", "pods"))


@dataclass
class OperatorContext:
    """What the handlers share, made by `llm-operator run` and handed to kopf as its `memo` (kopf
    gives each handler a shallow copy: the objects here are shared, never replaced after startup)."""

    kube: Kube
    config: RenderConfig
    kubeconfig: str | None  # --kubeconfig; None: in-cluster, then KUBECONFIG
    lease_namespace: str
    lease_name: str = "llm-operator"
    lease_seconds: int = 15
    workers: int = 4
    resync_seconds: float = 300.0
    crd_wait_seconds: float = 60.0
    queue: WorkQueue | None = None
    elector: LeaderElector | None = None
    phases: dict = field(default_factory=dict)  # "namespace/name" -> last phase
    seen: dict = field(default_factory=dict)  # "namespace/name" -> what reconcile reads of it (see below)


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


async def _reconcile_one(memo: OperatorContext, key: str) -> None:
    # A follower queues work but does not do it; on election it does all of it (see leader.py).
    await memo.elector.leading.wait()
    namespace, name = key.split("/", 1)
    started = time.monotonic()
    try:
        result = await asyncio.to_thread(reconcile, memo.kube, memo.config, namespace, name)
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
        memo.phases.pop(key, None)
    else:
        memo.phases[key] = result.phase
    publish_phases(memo.phases)
    if result.requeue_after:
        memo.queue.add_after(key, result.requeue_after)


async def _resync_forever(memo: OperatorContext) -> None:
    """Level-based safety net: reconcile every known object now and then, events or not."""
    while True:
        await asyncio.sleep(memo.resync_seconds)
        for key in list(memo.seen):
            memo.queue.add(key)


async def _wait_for_the_crd(memo: OperatorContext) -> None:
    """kopf only discovers resources at start (scanning is off, see below): without the CRD it would
    watch nothing, forever. Wait a little (a Helm install applies CRD and Deployment together), then
    stop with a message, so Kubernetes restarts the pod and the condition shows in its status."""
    deadline = time.monotonic() + memo.crd_wait_seconds
    while not await asyncio.to_thread(memo.kube.llmdeployments_served):
        if time.monotonic() > deadline:
            raise kopf.PermanentError(
                f"The {PLURAL}.{GROUP}/{VERSION} API is not served: install the CRD "
                "(`kubectl apply --server-side -f crds/` or the chart with crds.enabled=true)")
        log.info("Waiting for the %s.%s CRD to be served", PLURAL, GROUP)
        await asyncio.sleep(2)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: OperatorContext, **_) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.enabled = False  # the operator posts its own Events, on transitions only
    # Without timeouts a watch can hang silently on a half-open connection.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    for _, _, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[plural] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    # No watching of CRDs and namespaces: the operator needs no cluster-scoped permission at all
    # in listed-namespaces mode, and the resources it serves are fixed.
    settings.scanning.disabled = True
    await _wait_for_the_crd(memo)
    memo.queue = WorkQueue(lambda key: _reconcile_one(memo, key), workers=memo.workers)
    memo.elector = LeaderElector(memo.kube, memo.lease_namespace, memo.lease_name, memo.lease_seconds,
                                 on_elected=lambda: [memo.queue.add(key) for key in list(memo.seen)])
    memo.queue.start()
    memo.elector.start()
    asyncio.create_task(_resync_forever(memo), name="resync")
    log.info("Started llm-operator: %d workers, resync every %.0fs, Lease %s/%s", memo.workers,
             memo.resync_seconds, memo.lease_namespace, memo.lease_name)


@kopf.on.login()
def login(memo: OperatorContext, settings: kopf.OperatorSettings, **_) -> kopf.ConnectionInfo:
    """kopf's watches log in exactly as the operator's own client does (`load_config`: an explicit
    --kubeconfig first), not through kopf's default, which reads KUBECONFIG as it was when the
    `kubernetes` package was first imported."""
    configuration = load_config(memo.kubeconfig).configuration
    header = (configuration.get_api_key_with_prefix("BearerToken")
              or configuration.get_api_key_with_prefix("authorization") or "")
    scheme, _, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        username=configuration.username or None, password=configuration.password or None,
        scheme=scheme or None, token=token or None,
        certificate_path=configuration.cert_file, private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env)


@kopf.on.cleanup()
async def shutdown(memo: OperatorContext, **_) -> None:
    if memo.queue:
        await memo.queue.stop()
    if memo.elector:
        await memo.elector.stop()


def _inputs(body) -> tuple:
    """What a reconcile reads of the resource itself: everything but its status."""
    metadata = body.get("metadata") or {}
    return (metadata.get("uid"), metadata.get("generation"), metadata.get("deletionTimestamp"),
            dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {}))


@kopf.on.event(GROUP, VERSION, PLURAL)
async def llmdeployment_changed(event, namespace, name, body, memo: OperatorContext, **_) -> None:
    key = _key(namespace, name)
    if event["type"] == "DELETED":
        memo.seen.pop(key, None)
        memo.phases.pop(key, None)
        publish_phases(memo.phases)
        return
    # A change of status only is an operator's own write (this one's or a peer's): reconciling on it
    # would retry a refused object right after reporting it, and double every reconcile's reads.
    inputs = _inputs(body)
    if memo.seen.get(key) == inputs:
        return
    memo.seen[key] = inputs
    memo.queue.add(key)


async def child_changed(namespace, labels, memo: OperatorContext, **_) -> None:
    owner = labels.get(DEPLOYMENT_LABEL)
    if owner:
        memo.queue.add(_key(namespace, owner))


for _group, _version, _plural in CHILD_RESOURCES:
    kopf.on.event(_group, _version, _plural, labels=MANAGED_LABELS, id=f"child-{_plural}")(child_changed)
