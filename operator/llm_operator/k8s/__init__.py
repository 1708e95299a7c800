"""The only code that talks to the Kubernetes API server.

Everything here is a thin, synchronous layer over the official `kubernetes` client's configuration
(kubeconfig, in-cluster ServiceAccount, credentials), sending requests by API path on kept-alive
connections (k8s/transport.py) and returning plain dicts exactly as the API server sent them, so
the pure modules (render, status) see the same shapes as `kubectl get -o json`. Every write is
counted in metrics. k8s/cache.py keeps watch caches of what these calls would read.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ..api.llmbatch import BATCH_KIND, BATCH_PLURAL
from ..api.llmdeployment import KIND, PLURAL
from ..api.llmgateway import GATEWAY_KIND, GATEWAY_PLURAL
from ..api.meta import API_VERSION, GROUP, VERSION
from ..metrics import API_WRITES
from ..names import DEPLOYMENT_LABEL
from .transport import Response, Transport

FIELD_MANAGER = "llm-operator"
# Client-side limit of one write (connect, read), longer than the API server's own 60 s request
# timeout: a client that gave up first would leave the server finishing a request nobody waits for.
REQUEST_TIMEOUT = (10, 90)
# Lease calls fail fast instead: a leader whose renewal hangs must stop leading before its Lease
# (15 s) can expire and a follower take over (see handlers/leader.py).
LEASE_REQUEST_TIMEOUT = (3, 5)
# A log read that only informs status gives up soon rather than hold a reconcile.
LOG_HEAD_TIMEOUT = (3, 10)
APPLY = "application/apply-patch+yaml"
CHILD_KINDS = ("Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy")
# Children whose API comes from an add-on: watched, listed and applied only where the API server
# serves them (looked up when the operator starts; see Kube.child_kinds).
SCALED_OBJECT = "ScaledObject"
KEDA_GROUP_VERSION = "keda.sh/v1alpha1"
# What an LLMGateway has besides a Deployment and a Service (render/gateway/).
GATEWAY_CHILD_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service")


class ApplyRejected(Exception):
    """The API server refused an object: retrying the same object will not help (but a changed spec,
    a deleted old object, a granted permission or an operator upgrade may, so it is retried slowly)."""


def _unfixable_by_retry(error: ApiException) -> bool:
    """Invalid (422), bad request (400), forbidden by RBAC or an admission plugin (403), and the 500
    that server-side apply answers for an object that does not fit the type's schema."""
    return error.status in (400, 403, 422) or (
        error.status == 500 and "failed to create typed patch object" in _reason(error))


def load_config(kubeconfig: str | None = None) -> client.ApiClient:
    """An explicit kubeconfig first; else in a pod the ServiceAccount; else KUBECONFIG or ~/.kube/config."""
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig)
        return client.ApiClient()
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Where each kind lives in the API: (API group path, resource). The operator talks to these paths
# itself rather than through the client's generated API classes, which cost 30 MiB of memory
# when imported and validate and re-serialise every argument and body on every call.
_RESOURCES = {
    KIND: (f"/apis/{GROUP}/{VERSION}", PLURAL),
    GATEWAY_KIND: (f"/apis/{GROUP}/{VERSION}", GATEWAY_PLURAL),
    BATCH_KIND: (f"/apis/{GROUP}/{VERSION}", BATCH_PLURAL),
    "Job": ("/apis/batch/v1", "jobs"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    SCALED_OBJECT: (f"/apis/{KEDA_GROUP_VERSION}", "scaledobjects"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
}
_API_VERSIONS = {"Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1", KIND: API_VERSION,
                 GATEWAY_KIND: API_VERSION, BATCH_KIND: API_VERSION, "Job": "batch/v1", "Role": "rbac.authorization.k8s.io/v1",
                 "RoleBinding": "rbac.authorization.k8s.io/v1", SCALED_OBJECT: KEDA_GROUP_VERSION}


def resource_path(kind: str, namespace: str | None = None, name: str | None = None, subresource: str = "") -> str:
    """The API path of a kind's collection (in a namespace, or in all of them) or of one object."""
    group, plural = _RESOURCES[kind]
    path = f"{group}/namespaces/{quote(namespace, safe='')}/{plural}" if namespace else f"{group}/{plural}"
    if name:
        path += "/" + quote(name, safe="")
    return path + ("/" + subresource if subresource else "")


def api_version(kind: str) -> str:
    return _API_VERSIONS.get(kind, "v1")


class Kube:
    # The kinds of child this API server serves; ScaledObject is added when KEDA is found.
    child_kinds: tuple[str, ...] = CHILD_KINDS

    def __init__(self, api_client: client.ApiClient, reads_pod_logs: bool = False):
        """`reads_pod_logs`: whether this identity may read pods/log (`llm-operator run
        --read-pod-logs`, the chart's operator.readPodLogs). Without it, nothing asks for a log:
        a batch shows its counts when it ends, and starts do not say whether they reused compiled files."""
        self.transport = Transport(api_client.configuration)
        self.reads_pod_logs = reads_pod_logs

    def request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json", timeout: Any = REQUEST_TIMEOUT) -> Response:
        """One request with the configuration's TLS and credentials (k8s/transport.py). Returns the
        response with its body unread; raises ApiException for any status but 2xx."""
        return self.transport.request(method, path, query, body, content_type, timeout)

    def lister(self, kind: str, namespace: str | None = None) -> Callable[..., Response]:
        """A LIST (and with watch=true, WATCH) of a kind, in one namespace or all: `call(**query)`."""
        path = resource_path(kind, namespace)
        return lambda timeout=REQUEST_TIMEOUT, **query: self.request("GET", path, query=query, timeout=timeout)

    # ------------------------------------------------------------ reads

    def _list(self, path: str, query: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """The items of a LIST (a kind that is not served is an error, not an empty list)."""
        items: list[dict[str, Any]] = self.request("GET", path, query, timeout=REQUEST_TIMEOUT).json()["items"]
        return items

    def _get(self, path: str, query: dict[str, Any] | None = None, timeout: Any = REQUEST_TIMEOUT) -> dict[str, Any] | None:
        """A GET's JSON, or None when the object does not exist (404)."""
        try:
            return self.request("GET", path, query, timeout=timeout).json()
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @staticmethod
    def _finish(response: Response) -> None:
        """Read a response whose body is not needed, so that its connection is kept for the next
        request. An unread response is closed when garbage-collected: the API server then sees its
        client go away before its handler returned, and logs "Post-timeout activity" for a request
        that succeeded."""
        response.data  # noqa: B018 - reading is the point

    def served(self, plural: str = PLURAL, group_version: str = f"{GROUP}/{VERSION}") -> bool:
        """Whether the API server serves a resource of an API group (its CRD is installed and established)."""
        listing = self._get(f"/apis/{group_version}")
        return any(resource.get("name") == plural for resource in (listing or {}).get("resources", []))

    def get_llmdeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(resource_path(KIND, namespace, name))

    def get_llmgateway(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(resource_path(GATEWAY_KIND, namespace, name))

    def get_llmbatch(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(resource_path(BATCH_KIND, namespace, name))

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(resource_path("Job", namespace, name))

    def read_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        """The last lines of a container's log ("" when the pod or its log is gone)."""
        try:
            response = self.request("GET", resource_path("Pod", namespace, pod, "log"),
                                    {"container": container, "tailLines": str(lines)})
        except ApiException as error:
            if error.status in (400, 404):  # not started yet, or deleted
                return ""
            raise
        return response.data.decode("utf-8", "replace")

    def read_log_head(self, namespace: str, pod: str, container: str, limit_bytes: int) -> str:
        """The first bytes of a container's current log; "" when it cannot be read, for whatever
        reason (gone, a node whose kubelet serves no logs): what is read here only informs."""
        try:
            response = self.request("GET", resource_path("Pod", namespace, pod, "log"),
                                    {"container": container, "limitBytes": str(limit_bytes)},
                                    timeout=LOG_HEAD_TIMEOUT)
            return response.data.decode("utf-8", "replace")
        except (ApiException, OSError):
            return ""

    def list_labelled_pods(self, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        """Pods of one batch (BATCH_LABEL), gateway (GATEWAY_LABEL) or chat page (CHAT_PAGE_LABEL)."""
        return self._list(resource_path("Pod", namespace), {"labelSelector": f"{label}={value}"})

    def list_pod_events(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        """The Events about one pod (the kubelet's: a volume it cannot mount says which and why)."""
        selector = f"involvedObject.kind=Pod,involvedObject.name={pod}"
        return self._list(resource_path("Event", namespace), {"fieldSelector": selector})

    def list_llmdeployments(self, namespace: str) -> list[dict[str, Any]]:
        return [{**item, "apiVersion": API_VERSION, "kind": KIND}
                for item in self._list(resource_path(KIND, namespace))]

    def list_children(self, namespace: str, owner: str, owner_uid: str) -> list[dict[str, Any]]:
        """Deployments, Services, PVCs, NetworkPolicies (and ScaledObjects where served) labelled for the
        owner and controlled by it (by uid)."""
        selector = {"labelSelector": f"{DEPLOYMENT_LABEL}={owner}"}
        children = []
        for kind in self.child_kinds:
            for item in self._list(resource_path(kind, namespace), selector):
                if any(ref.get("uid") == owner_uid and ref.get("controller")
                       for ref in item["metadata"].get("ownerReferences") or []):
                    # Items of a list carry neither apiVersion nor kind; the comparison needs both.
                    children.append({**item, "apiVersion": api_version(kind), "kind": kind})
        return children

    def list_pods(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        return self._list(resource_path("Pod", namespace), {"labelSelector": f"{DEPLOYMENT_LABEL}={owner}"})

    def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One Deployment, Service or PVC by name, whoever made it (to refuse taking over another's)."""
        return self._get(resource_path(kind, namespace, name))

    # ------------------------------------------------------------ leader election

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(resource_path("Lease", namespace, name), timeout=LEASE_REQUEST_TIMEOUT)

    def create_lease(self, namespace: str, lease: dict[str, Any]) -> bool:
        """False when another process created it first."""
        try:
            self._finish(self.request("POST", resource_path("Lease", namespace), body=lease,
                                      timeout=LEASE_REQUEST_TIMEOUT))
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    def replace_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> bool:
        """False when another process changed it since it was read (its resourceVersion is stale)."""
        try:
            self._finish(self.request("PUT", resource_path("Lease", namespace, name), body=lease,
                                      timeout=LEASE_REQUEST_TIMEOUT))
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    # ------------------------------------------------------------ writes

    def apply(self, obj: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply; force, because the operator owns these fields. Returns the object as
        stored: its generation says whether the controllers have seen this apply yet."""
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        API_WRITES.labels(kind=kind, verb="apply").inc()
        try:
            response = self.request("PATCH", resource_path(kind, namespace, name), body=obj, content_type=APPLY,
                                    query={"fieldManager": field_manager, "force": "true"})
        except ApiException as error:
            if _unfixable_by_retry(error):
                raise ApplyRejected(f"{kind} {name}: {_reason(error)}") from None
            raise
        return {**response.json(), "apiVersion": obj["apiVersion"], "kind": kind}

    def delete(self, kind: str, namespace: str, name: str) -> None:
        API_WRITES.labels(kind=kind, verb="delete").inc()
        try:
            self._finish(self.request("DELETE", resource_path(kind, namespace, name),
                                      body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}))
        except ApiException as error:
            if error.status != 404:
                raise

    def apply_status(self, namespace: str, name: str, status: dict[str, Any], kind: str = KIND) -> dict[str, Any]:
        """Server-side apply of status: fields the operator no longer sets (a removed role) go away.
        Returns the resource as stored."""
        API_WRITES.labels(kind=kind, verb="apply-status").inc()
        body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name, "namespace": namespace},
                "status": status}
        return self.request("PATCH", resource_path(kind, namespace, name, "status"), body=body,
                            content_type=APPLY, query={"fieldManager": FIELD_MANAGER, "force": "true"}).json()

    def post_event(self, llmd: dict[str, Any], event_type: str, reason: str, message: str, kind: str = KIND) -> None:
        metadata = llmd["metadata"]
        API_WRITES.labels(kind="Event", verb="create").inc()
        timestamp = now()
        self._finish(self.request("POST", resource_path("Event", metadata["namespace"]), body={
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}", "namespace": metadata["namespace"]},
            "involvedObject": {"apiVersion": API_VERSION, "kind": kind, "name": metadata["name"],
                               "namespace": metadata["namespace"], "uid": metadata["uid"],
                               "resourceVersion": metadata.get("resourceVersion")},
            "type": event_type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": timestamp,
            "lastTimestamp": timestamp,
            "count": 1,
        }))


def describe(error: ApiException) -> str:
    """One readable line for logs: HTTP status, reason and the API server's own message."""
    return f"{error.status} {error.reason}: {_reason(error)}"


def _reason(error: ApiException) -> str:
    try:
        return json.loads(error.body or "").get("message", error.reason)
    except (TypeError, ValueError):
        return str(error.reason)
