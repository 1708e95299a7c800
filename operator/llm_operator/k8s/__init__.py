"""The only code that talks to the Kubernetes API server.

Everything here is a thin, synchronous wrapper over the official `kubernetes` client that returns
plain dicts exactly as the API server sent them (`_preload_content=False`), so the pure modules
(render, status) see the same shapes as `kubectl get -o json`. Every write is counted in metrics.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from ..api.models import API_VERSION, GROUP, KIND, PLURAL, VERSION
from ..metrics import API_WRITES
from ..names import DEPLOYMENT_LABEL

FIELD_MANAGER = "llm-operator"
# Client-side limit of one write (connect, read), longer than the API server's own 60 s request
# timeout: a client that gave up first would leave the server finishing a request nobody waits for.
REQUEST_TIMEOUT = (10, 90)
# Lease calls fail fast instead: a leader whose renewal hangs must stop leading before its Lease
# (15 s) can expire and a follower take over (see handlers/leader.py).
LEASE_REQUEST_TIMEOUT = (3, 5)
APPLY = "application/apply-patch+yaml"
# Child kinds and the snake_case names the client's methods use for them.
_SNAKE = {"Deployment": "deployment", "Service": "service", "PersistentVolumeClaim": "persistent_volume_claim",
          "NetworkPolicy": "network_policy"}


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
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    def __init__(self, api_client: client.ApiClient):
        self.core = client.CoreV1Api(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.networking = client.NetworkingV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)

    # ------------------------------------------------------------ reads

    @staticmethod
    def _json(response) -> dict[str, Any]:
        return json.loads(response.data)

    @staticmethod
    def _finish(response) -> None:
        """Read a response whose body is not needed, so that its connection goes back to the pool.
        An unread `_preload_content=False` response is closed when garbage-collected: the API server
        then sees its client go away before its handler returned, and logs "Post-timeout activity"
        for a request that succeeded."""
        response.data  # noqa: B018 - reading is the point
        response.release_conn()

    def llmdeployments_served(self) -> bool:
        """Whether the API server serves the LLMDeployment API (the CRD is installed and established)."""
        try:
            listing = self._json(self.custom.get_api_resources(GROUP, VERSION, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(resource.get("name") == PLURAL for resource in listing.get("resources", []))

    def get_llmdeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def list_children(self, namespace: str, owner: str, owner_uid: str) -> list[dict[str, Any]]:
        """Deployments, Services, PVCs and NetworkPolicies labelled for the owner and controlled by it (by uid)."""
        selector = f"{DEPLOYMENT_LABEL}={owner}"
        listings = [
            ("Deployment", self.apps.list_namespaced_deployment),
            ("Service", self.core.list_namespaced_service),
            ("PersistentVolumeClaim", self.core.list_namespaced_persistent_volume_claim),
            ("NetworkPolicy", self.networking.list_namespaced_network_policy),
        ]
        children = []
        for kind, list_call in listings:
            listing = self._json(list_call(namespace, label_selector=selector, _preload_content=False))
            for item in listing["items"]:
                if any(ref.get("uid") == owner_uid and ref.get("controller")
                       for ref in item["metadata"].get("ownerReferences") or []):
                    # Items of a list carry neither apiVersion nor kind; the comparison needs both.
                    children.append({**item, "apiVersion": listing["apiVersion"], "kind": kind})
        return children

    def list_pods(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        selector = f"{DEPLOYMENT_LABEL}={owner}"
        return self._json(self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                        _preload_content=False))["items"]

    def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One Deployment, Service or PVC by name, whoever made it (to refuse taking over another's)."""
        try:
            return self._json(getattr(self._api(kind), f"read_namespaced_{_SNAKE[kind]}")(
                name, namespace, _preload_content=False))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    # ------------------------------------------------------------ leader election

    def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._json(self.coordination.read_namespaced_lease(
                name, namespace, _preload_content=False, _request_timeout=LEASE_REQUEST_TIMEOUT))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_lease(self, namespace: str, lease: dict[str, Any]) -> bool:
        """False when another process created it first."""
        try:
            self._finish(self.coordination.create_namespaced_lease(
                namespace, lease, _preload_content=False, _request_timeout=LEASE_REQUEST_TIMEOUT))
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    def replace_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> bool:
        """False when another process changed it since it was read (its resourceVersion is stale)."""
        try:
            self._finish(self.coordination.replace_namespaced_lease(
                name, namespace, lease, _preload_content=False, _request_timeout=LEASE_REQUEST_TIMEOUT))
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    # ------------------------------------------------------------ writes

    def _api(self, kind: str):
        return {"Deployment": self.apps, "NetworkPolicy": self.networking}.get(kind, self.core)

    def apply(self, obj: dict[str, Any], field_manager: str = FIELD_MANAGER) -> dict[str, Any]:
        """Server-side apply; force, because the operator owns these fields. Returns the object as
        stored: its generation says whether the controllers have seen this apply yet."""
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]
        API_WRITES.labels(kind=kind, verb="apply").inc()
        try:
            response = getattr(self._api(kind), f"patch_namespaced_{_SNAKE[kind]}")(
                name, namespace, obj, field_manager=field_manager, force=True,
                _content_type=APPLY, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as error:
            if _unfixable_by_retry(error):
                raise ApplyRejected(f"{kind} {name}: {_reason(error)}") from None
            raise
        return {**self._json(response), "apiVersion": obj["apiVersion"], "kind": kind}

    def delete(self, kind: str, namespace: str, name: str) -> None:
        API_WRITES.labels(kind=kind, verb="delete").inc()
        try:
            self._finish(getattr(self._api(kind), f"delete_namespaced_{_SNAKE[kind]}")(
                name, namespace, propagation_policy="Background", _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT))
        except ApiException as error:
            if error.status != 404:
                raise

    def apply_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Server-side apply of status: fields the operator no longer sets (a removed role) go away."""
        API_WRITES.labels(kind=KIND, verb="apply-status").inc()
        body = {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace},
                "status": status}
        self._finish(self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body, field_manager=FIELD_MANAGER, force=True,
            _content_type=APPLY, _preload_content=False, _request_timeout=REQUEST_TIMEOUT))

    def post_event(self, llmd: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        metadata = llmd["metadata"]
        API_WRITES.labels(kind="Event", verb="create").inc()
        timestamp = now()
        self._finish(self.core.create_namespaced_event(metadata["namespace"], {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{uuid.uuid4().hex[:12]}", "namespace": metadata["namespace"]},
            "involvedObject": {"apiVersion": API_VERSION, "kind": KIND, "name": metadata["name"],
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
        }, _preload_content=False, _request_timeout=REQUEST_TIMEOUT))


def describe(error: ApiException) -> str:
    """One readable line for logs: HTTP status, reason and the API server's own message."""
    return f"{error.status} {error.reason}: {_reason(error)}"


def _reason(error: ApiException) -> str:
    try:
        return json.loads(error.body).get("message", error.reason)
    except (TypeError, ValueError):
        return str(error.reason)
