"""kopf wiring: the process (startup, login, cleanup) and thin handlers that turn changes into
reconcile requests, for every kind in the table of llm_operator.controllers.

The operator's own watch caches (k8s/cache.py) follow the operator's kinds, their children and
their pods; every change they see queues the one object it concerns (a child or pod by the labels
its kind's row names), and reconciles read those caches instead of the API server. kopf itself
watches nothing: its create/update/resume handlers would keep progress and diff-base annotations
on every object and patch them on every start (a restart writing to every LLMDeployment), and its
watch events carry no cache to read from. Level-based reconcile needs nothing stored: the same
reconcile runs for an object's own changes, for any change of a child it owns, and for a periodic
resync. A change of one kind may concern objects of another (an LLMDeployment's, the LLMGateways
of its namespace, which route to its models and report their readiness): its row says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ..api.llmbatch import BATCH_KIND
from ..api.llmgateway import GATEWAY_KIND
from ..api.meta import GROUP, VERSION
from ..controllers import BY_KIND, CONTROLLERS, Controller, ObjectKey, owner_of
from ..k8s import CHILD_KINDS, KEDA_GROUP_VERSION, SCALED_OBJECT, Kube, describe, load_config
from ..k8s.cache import CachedKube, wait_synced
from ..metrics import RECONCILE_SECONDS, RECONCILES, PhaseGauge
from ..names import DEPLOYMENT_LABEL, MANAGED_BY, MANAGED_BY_LABEL
from ..render import RenderConfig
from .leader import LeaderElector
from .queue import WorkQueue

log = logging.getLogger("llm_operator")

# Changes of children and pods are reconciled this long after the first of a burst (see
# WorkQueue.add_soon); changes of the LLMDeployment itself at once. A second is nothing next to a
# model's start-up, and at 1,000 resources it halves the status writes.
CHILD_CHANGE_DELAY = 1.0


@dataclass
class OperatorContext:
    """What the handlers share, made by `llm-operator run` and handed to kopf as its `memo` (kopf
    gives each handler a shallow copy: the objects here are shared, never replaced after startup).
    `cache`, `queue` and `elector` are made by `startup`, before any watch or handler runs."""

    kube: Kube  # the API client; from startup on, `cache`, which answers every call of a Kube
    config: RenderConfig
    kubeconfig: str | None  # --kubeconfig; None: in-cluster, then KUBECONFIG
    lease_namespace: str
    namespaces: tuple[str, ...] = ()  # watched namespaces; empty: all
    lease_name: str = "llm-operator"
    lease_seconds: int = 15
    workers: int = 8
    resync_seconds: float = 300.0
    watch_stall_seconds: float = 90.0  # a watch silent this long is reopened (k8s/cache.py Reflector)
    crd_wait_seconds: float = 60.0
    cache: CachedKube = field(init=False)
    queue: WorkQueue[ObjectKey] = field(init=False)
    elector: LeaderElector = field(init=False)
    phases: PhaseGauge = field(default_factory=PhaseGauge)  # "namespace/name" -> last phase
    seen: dict[ObjectKey, tuple[Any, ...]] = field(default_factory=dict)  # what reconcile reads of it (_changed)
    memos: dict[str, Any] = field(default_factory=lambda: {c.kind: c.new_memo() for c in CONTROLLERS})
    served: set[str] = field(default_factory=set)  # the kinds whose CRD was installed when the operator started


def _reconcile_one(memo: OperatorContext, key: ObjectKey) -> None:
    """One reconcile, on a work queue thread."""
    # A follower queues work but does not do it; on election it does all of it (see leader.py).
    while not memo.elector.leading.wait(1.0):
        if memo.queue.stopped:
            return
    controller = BY_KIND[key.kind]
    started = time.monotonic()
    try:
        result = controller.reconcile(memo.kube, memo.config, key.namespace, key.name, memo.memos[key.kind])
    except ApiException as error:
        RECONCILES.labels(result="error").inc()
        raise RuntimeError(describe(error)) from None  # the queue logs it and retries with backoff
    except Exception:
        RECONCILES.labels(result="error").inc()
        raise
    finally:
        RECONCILE_SECONDS.observe(time.monotonic() - started)
    RECONCILES.labels(result="written" if result.writes else "unchanged").inc()
    if controller.counted:
        memo.phases.set(f"{key.namespace}/{key.name}", result.phase)
    if result.writes:
        # Its status may have changed, and the watch event of the operator's own write is skipped
        # (k8s/cache.py): the objects that report on it look again.
        _queue_woken(memo, controller, key.namespace)
    if result.requeue_after:
        memo.queue.add_after(key, result.requeue_after)


async def _resync_forever(memo: OperatorContext) -> None:
    """Level-based safety net: reconcile every known object now and then, events or not."""
    while True:
        await asyncio.sleep(memo.resync_seconds)
        for key in list(memo.seen):
            memo.queue.add(key)


async def _wait_for_the_crd(memo: OperatorContext) -> None:
    """Without the CRD the LLMDeployment cache cannot list anything. Wait a little (a Helm install
    applies CRD and Deployment together), then stop with a message, so Kubernetes restarts the pod
    and the condition shows in its status."""
    deadline = time.monotonic() + memo.crd_wait_seconds
    required = next(controller for controller in CONTROLLERS if controller.required)
    while not await asyncio.to_thread(memo.kube.served, required.plural):
        if time.monotonic() > deadline:
            raise kopf.PermanentError(
                f"The {required.plural}.{GROUP}/{VERSION} API is not served: install the CRD "
                "(`kubectl apply --server-side -f crds/` or the chart with crds.enabled=true)")
        log.info("Waiting for the %s.%s CRD to be served", required.plural, GROUP)
        await asyncio.sleep(2)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: OperatorContext, **_: Any) -> None:
    settings.posting.enabled = False  # the operator posts its own Events, on transitions only
    # No watching of CRDs and namespaces by kopf: the operator needs no cluster-scoped permission at
    # all in listed-namespaces mode, and the resources it serves are fixed.
    settings.scanning.disabled = True
    await _wait_for_the_crd(memo)
    for controller in CONTROLLERS:
        if controller.required or await asyncio.to_thread(memo.kube.served, controller.plural):
            memo.served.add(controller.kind)
        else:
            log.warning("The %s.%s API is not served: %ss are not reconciled until the operator restarts "
                        "with that CRD installed", controller.plural, GROUP, controller.kind)
    if await asyncio.to_thread(memo.kube.served, "scaledobjects", KEDA_GROUP_VERSION):
        memo.kube.child_kinds = (*CHILD_KINDS, SCALED_OBJECT)
    else:
        log.info("Found no %s API (KEDA is not installed): roles autoscaled by KEDA are reported Degraded "
                 "until the operator restarts with KEDA installed", KEDA_GROUP_VERSION)
    memo.queue = WorkQueue[ObjectKey](lambda key: _reconcile_one(memo, key), workers=memo.workers)
    # Reconciles read from watch caches; the reflectors' threads queue every change themselves.
    memo.cache = CachedKube(memo.kube, memo.namespaces, partial(_changed, memo),
                            managed_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}", owner_label=DEPLOYMENT_LABEL,
                            gateways=GATEWAY_KIND in memo.served, batches=BATCH_KIND in memo.served,
                            watch_stall_seconds=memo.watch_stall_seconds)
    memo.kube = memo.cache  # type: ignore[assignment]  # a Kube by delegation (CachedKube.__getattr__)
    memo.cache.start()
    if not await asyncio.to_thread(wait_synced, memo.cache.reflectors, 60):
        log.warning("Started before every watch cache was filled: reconciles read the API server until they are")

    def queue_everything_seen() -> None:
        for key in list(memo.seen):
            memo.queue.add(key)

    memo.elector = LeaderElector(memo.kube, memo.lease_namespace, memo.lease_name, memo.lease_seconds,
                                 on_elected=queue_everything_seen)
    memo.queue.start()
    memo.elector.start()
    asyncio.create_task(_resync_forever(memo), name="resync")
    log.info("Started llm-operator: %d workers, resync every %.0fs, Lease %s/%s", memo.workers,
             memo.resync_seconds, memo.lease_namespace, memo.lease_name)


@kopf.on.login()
def login(memo: OperatorContext, settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in exactly as the operator's own client does (`load_config`: an explicit
    --kubeconfig first), not through kopf's default, which reads KUBECONFIG as it was when the
    `kubernetes` package was first imported."""
    configuration = load_config(memo.kubeconfig).configuration
    header = (configuration.get_api_key_with_prefix("BearerToken")
              or configuration.get_api_key_with_prefix("authorization") or "")
    scheme, _space, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        username=configuration.username or None, password=configuration.password or None,
        scheme=scheme or None, token=token or None,
        certificate_path=configuration.cert_file, private_key_path=configuration.key_file,
        trust_env=settings.networking.trust_env)


@kopf.on.cleanup()
async def shutdown(memo: OperatorContext, **_: Any) -> None:
    # Each is there unless startup failed before making it.
    if hasattr(memo, "cache"):
        memo.cache.stop()
    if hasattr(memo, "queue"):
        await asyncio.to_thread(memo.queue.stop)
    if hasattr(memo, "elector"):
        await memo.elector.stop()


def _inputs(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a reconcile reads of the resource itself: everything but its status."""
    metadata = body.get("metadata") or {}
    return (metadata.get("uid"), metadata.get("generation"), metadata.get("deletionTimestamp"),
            dict(metadata.get("labels") or {}), dict(metadata.get("annotations") or {}))


def _queue_woken(memo: OperatorContext, controller: Controller, namespace: str) -> None:
    """Queue every object of a namespace whose kind a change of `controller`'s kind concerns."""
    for kind in controller.wakes:
        if kind in memo.served:
            for obj in memo.cache.stores[kind].in_namespace(namespace):
                memo.queue.add_soon(ObjectKey(kind, namespace, obj["metadata"]["name"]), CHILD_CHANGE_DELAY)


def _changed(memo: OperatorContext, kind: str, event_type: str, obj: dict[str, Any]) -> None:
    """A change a reflector saw, on the reflector's thread: queue the object it concerns."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    controller = BY_KIND.get(kind)
    if controller is None:  # a child or a pod (one that cannot start for a missing Secret says so only there)
        owner = owner_of(metadata.get("labels") or {}, namespace)
        if owner:
            memo.queue.add_soon(owner, CHILD_CHANGE_DELAY)
        return
    _queue_woken(memo, controller, namespace)  # any change, status included (a peer's write, a user's edit)
    key = ObjectKey(kind, namespace, metadata["name"])
    if event_type == "DELETED":
        memo.seen.pop(key, None)
        if controller.counted:
            memo.phases.set(f"{namespace}/{key.name}", None)
        if controller.reconcile_deleted:
            memo.queue.add(key)
        return
    # A change of status only is an operator's own write (this one's or a peer's): reconciling on it
    # would retry a refused object right after reporting it, and double every reconcile's reads.
    inputs = _inputs(obj)
    if memo.seen.get(key) == inputs:
        return
    memo.seen[key] = inputs
    memo.queue.add(key)
