"""In-memory copies of what the operator watches, so that a reconcile reads memory and the API
server sees writes only.

A `Store` holds the newest version seen of each object of one kind; a `Reflector` keeps one
Store current with a LIST followed by a WATCH, and lists again when the watch can no longer resume
(410 Gone) or fails. Assumptions, as client-go's informers make them:

- resourceVersions of one kind are etcd revisions: integers that grow with every write. They are
  compared only to keep a store from going back in time: an event older than what the store holds
  (a late watch event after the operator stored its own write's response) is ignored.
- A relist is the truth as of its resourceVersion: what it lacks was deleted, unless the store
  holds a newer version (an object the operator created after the list was taken).
- No two versions of one kind share a resourceVersion, and a watch delivers one kind's events in
  resourceVersion order. So a watch event whose version is that of a write response the store took
  is that write's echo, and is skipped before it is parsed (a third of the events at scale).
- The API server answers a write and sends its watch event at about the same time, and the
  reflector's thread often reads the event before the writing thread has stored the answer. An event
  that arrives while a write of its kind is in flight waits for that write (at most
  `ECHO_WAIT_SECONDS`), so that it is known as an echo without being read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic_core import CoreSchema, SchemaValidator, core_schema

from ..api.meta import API_VERSION
from ..names import BATCH_LABEL, CHAT_PAGE_LABEL, GATEWAY_LABEL
from . import Kube, api_version
from .transport import decode

log = logging.getLogger("llm_operator.cache")

Key = tuple[str, str]  # (namespace, name)
# Of a pod, the controllers' status modules read its status and these few fields of its metadata; its spec, the largest
# part, is never read (the Deployment's template is what the operator compares).
POD_METADATA = ("name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp")


def slim(api_version: str, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The part of a listed or watched object the operator reads, with its apiVersion and kind
    (list items and watch events of typed lists lack them)."""
    metadata = obj["metadata"]
    if kind == "Pod":
        return {"apiVersion": api_version, "kind": kind,
                "metadata": {k: metadata[k] for k in POD_METADATA if k in metadata},
                "status": obj.get("status") or {}}
    managed = metadata.pop("managedFields", None)
    if kind == "Deployment" and managed:
        metadata["managedFields"] = _replicas_owners(managed)
    obj["apiVersion"], obj["kind"] = api_version, kind
    return obj


def _fields(*names: str, **schemas: CoreSchema) -> CoreSchema:
    """A JSON object of which only these fields are read; the parser skips the others unbuilt."""
    fields = {name: core_schema.any_schema() for name in names} | schemas
    return core_schema.typed_dict_schema(
        {name: core_schema.typed_dict_field(schema, required=False) for name, schema in fields.items()},
        extra_behavior="ignore")


# Pods are read straight into their slim form: a pod's spec and managedFields are two thirds of its
# JSON, and building them only to drop them doubled the cost of each pod event.
_POD = _fields("status", metadata=_fields(*POD_METADATA))
_POD_EVENT = SchemaValidator(_fields("type", object=_POD))
_POD_LIST = SchemaValidator(_fields(metadata=_fields("resourceVersion"),
                                    items=core_schema.nullable_schema(core_schema.list_schema(_POD))))
# Most events of a Deployment are its controller's status updates, which leave the spec as it was:
# they are read without it (and with managedFields cut to what `_replicas_owners` reads).
_REPLICAS_OWNERS = core_schema.list_schema(
    _fields("manager", "operation", fieldsV1=_fields(**{"f:spec": _fields("f:replicas")})))
_ALL_METADATA_BUT_FIELD_SETS = core_schema.typed_dict_schema(
    {"managedFields": core_schema.typed_dict_field(_REPLICAS_OWNERS, required=False)}, extra_behavior="allow")
_EVENT_WITHOUT_SPEC = SchemaValidator(
    _fields("type", object=_fields("apiVersion", "kind", "status", metadata=_ALL_METADATA_BUT_FIELD_SETS)))

_VERSION_FIELD = b'"resourceVersion":"'


def peek_resource_version(event: bytes) -> int | None:
    """The resourceVersion of a watch event's object, read without parsing the event.

    Every object has one "resourceVersion" field. When the event holds exactly one, it is the
    object's; a second (an annotation or label of that name) makes the answer None."""
    if event.count(_VERSION_FIELD) != 1:
        return None
    start = event.index(_VERSION_FIELD) + len(_VERSION_FIELD)
    return _int(event[start:event.find(b'"', start)].decode("ascii", "replace"))


def _replicas_owners(managed_fields: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Of a Deployment's managedFields, the one fact the operator reads (reconcile.replicas_handoff):
    which manager, by which operation, owns spec.replicas. The full field sets are a large part
    of an object's size in memory."""
    owners: list[dict[str, Any]] = []
    for entry in managed_fields:
        if "f:replicas" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
            owners.append({"manager": entry.get("manager"), "operation": entry.get("operation"),
                           "fieldsV1": {"f:spec": {"f:replicas": {}}}})
    return owners


def resource_version(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def _key(obj: dict[str, Any]) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def _older(candidate: dict[str, Any], held: dict[str, Any]) -> bool:
    """True when `candidate` is an older version than `held` (unknown versions are never older)."""
    new, old = resource_version(candidate), resource_version(held)
    return new is not None and old is not None and new < old


def _same_version(candidate: dict[str, Any], held: dict[str, Any]) -> bool:
    version = resource_version(candidate)
    return version is not None and version == resource_version(held)


class Store:
    """The newest version seen of each object of one kind, indexed by labels. Thread-safe.

    It hands out the objects it holds, not copies: copying every child and pod on every reconcile
    was a large part of the operator's CPU. Callers must not change what they get (reconcile and
    status build new objects; tests/test_cache.py checks that a reconcile leaves the store as it was).
    """

    ECHOES_KEPT = 1000

    def __init__(self, *index_labels: str) -> None:
        """`labelled` finds objects by the first of `index_labels` unless told another."""
        self.index_labels = index_labels
        self._objects: dict[Key, dict[str, Any]] = {}
        # (label, namespace, value of the label) -> the keys of the objects carrying it
        self._index: dict[tuple[str, str, str], set[Key]] = {}
        # resourceVersions of the operator's writes whose watch events have not come yet
        self._echoes: set[int] = set()
        self._writes_in_flight = 0
        # key -> resourceVersion of its deletion, seen while writes of this kind were in flight: a
        # write's response older than that must not bring the object back. Only a write in flight
        # when the DELETED event came can answer with an older version, so they are kept until no
        # write is in flight.
        self._tombstones: dict[Key, int] = {}
        self._lock = threading.Lock()
        self._write_done = threading.Condition(self._lock)

    def _indexed_as(self, key: Key, obj: dict[str, Any]) -> list[tuple[str, str, str]]:
        labels = obj["metadata"].get("labels") or {}
        return [(label, key[0], labels[label]) for label in self.index_labels if label in labels]

    def _put(self, key: Key, obj: dict[str, Any]) -> None:
        held = self._objects.get(key)
        if held is not None:
            self._unindex(key, held)
        self._objects[key] = obj
        for entry in self._indexed_as(key, obj):
            self._index.setdefault(entry, set()).add(key)

    def _drop(self, key: Key) -> dict[str, Any]:
        held = self._objects.pop(key)
        self._unindex(key, held)
        return held

    def _unindex(self, key: Key, held: dict[str, Any]) -> None:
        for entry in self._indexed_as(key, held):
            if entry in self._index:
                self._index[entry].discard(key)
                if not self._index[entry]:
                    del self._index[entry]

    def upsert(self, obj: dict[str, Any], written: bool = False) -> bool:
        """Keep `obj` unless the store holds a newer or the same version; True when it was kept.

        The same version is the watch's echo of a write whose response the operator stored: no
        change, so no reconcile for it. `written` marks a write's response, whose echo the
        reflector may then skip unread (`is_echo`)."""
        key = _key(obj)
        with self._lock:
            held = self._objects.get(key)
            if held is not None and (_older(obj, held) or _same_version(obj, held)):
                return False
            version = resource_version(obj)
            deleted_at = self._tombstones.get(key)
            if deleted_at is not None and version is not None and version <= deleted_at:
                return False  # a write's response from before the object was deleted
            self._put(key, obj)
            if written and version is not None:
                self._echoes.add(version)
            return True

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around a write of this kind whose response goes to `upsert(..., written=True)`."""
        with self._lock:
            self._writes_in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._writes_in_flight -= 1
                if not self._writes_in_flight:
                    self._tombstones.clear()
                self._write_done.notify_all()

    def is_echo(self, version: int, wait: float = 0.0) -> bool:
        """Whether a watch event of this version echoes a write the store took, waiting up to `wait`
        seconds for the writes in flight to store theirs. Echoes that never come (the watch
        restarted in between) are forgotten once a later event has come."""
        deadline = time.monotonic() + wait
        with self._lock:
            while version not in self._echoes and self._writes_in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._write_done.wait(remaining)
            if version in self._echoes:
                self._echoes.discard(version)
                return True
            if len(self._echoes) > self.ECHOES_KEPT:
                self._echoes = {echo for echo in self._echoes if echo > version}
            return False

    def remove(self, obj: dict[str, Any]) -> bool:
        """Forget the object a DELETED event names, unless the store holds a newer one (recreated)."""
        key = _key(obj)
        with self._lock:
            held = self._objects.get(key)
            if held is not None and _older(obj, held):
                return False
            version = resource_version(obj)
            if self._writes_in_flight and version is not None:
                self._tombstones[key] = max(version, self._tombstones.get(key, version))
            if held is None:
                return False
            self._drop(key)
            return True

    def replace(self, objects: Iterable[dict[str, Any]], listed_version: int | None) -> list[dict[str, Any]]:
        """Take a fresh listing; return the objects that changed or disappeared with it."""
        listed = {_key(obj): obj for obj in objects}
        changed: list[dict[str, Any]] = []
        with self._lock:
            if listed_version is not None:  # the watch resumes after the listing: older echoes never come
                self._echoes = {echo for echo in self._echoes if echo > listed_version}
            for key, held in list(self._objects.items()):
                if key in listed:
                    continue
                written_after = listed_version is not None and (resource_version(held) or 0) > listed_version
                if not written_after:
                    changed.append(self._drop(key))
            for key, obj in listed.items():
                current = self._objects.get(key)
                if current is not None and _older(obj, current):
                    continue
                if current is None or resource_version(current) != resource_version(obj):
                    changed.append(obj)
                self._put(key, obj)
        return changed

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get((namespace, name))

    def in_namespace(self, namespace: str) -> list[dict[str, Any]]:
        with self._lock:
            return [obj for (held_namespace, _), obj in self._objects.items() if held_namespace == namespace]

    def labelled(self, namespace: str, value: str, label: str | None = None) -> list[dict[str, Any]]:
        """The objects in `namespace` whose `label` (an index label; the first by default) has `value`."""
        label = label or self.index_labels[0]
        if label not in self.index_labels:
            raise KeyError(f"{label} is not an index label of this store: {self.index_labels}")
        with self._lock:
            return [self._objects[key] for key in self._index.get((label, namespace, value), ())]


class Reflector:
    """Keeps a Store current with LIST then WATCH, in a thread of its own.

    `list_call(**query)` sends a LIST (a WATCH with watch=true) of one kind and returns the unread
    response (`Kube.lister`); `on_change(event_type, obj)` is called for every change the
    store took, from the reflector's thread ("DELETED" for objects gone, also when a relist shows it).
    """

    WATCH_SECONDS = 300  # the API server ends each watch after this; the reflector resumes it
    # The API server sends a bookmark on every watch about once a minute (its watch cache's
    # bookmark frequency), so a watch silent for longer has stalled without closing (a load
    # balancer or proxy that dropped it): it is reopened from the last version seen.
    STALL_SECONDS = 90.0
    ECHO_WAIT_SECONDS = 0.01
    RETRY_SECONDS = (1, 2, 5, 10, 30)

    def __init__(self, name: str, list_call: Callable[..., Any], store: Store,
                 on_change: Callable[[str, dict[str, Any]], None], label_selector: str | None = None,
                 kind: tuple[str, str] | None = None, stall_seconds: float | None = None) -> None:
        self.name = name
        self.stall_seconds = stall_seconds or self.STALL_SECONDS
        self.version: str | None = None  # of the last list or event seen; None: list first
        self.list_call = list_call
        self.store = store
        self.on_change = on_change
        self.label_selector = label_selector
        self.kind = kind  # (apiVersion, kind) that list items lack
        kind_name = kind[1] if kind else ""
        readers: dict[str, Callable[[bytes], dict[str, Any]]] = {"Pod": _POD_EVENT.validate_json,
                                                                 "Deployment": self._read_keeping_spec}
        self._read_event: Callable[[bytes], dict[str, Any]] = readers.get(kind_name, decode)
        self._read_list = _POD_LIST.validate_json if kind_name == "Pod" else decode
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reflector-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _selector(self) -> dict[str, Any]:
        return {"labelSelector": self.label_selector} if self.label_selector else {}

    def _typed(self, obj: dict[str, Any]) -> dict[str, Any]:
        return slim(*self.kind, obj) if self.kind else obj

    def _read_keeping_spec(self, line: bytes) -> dict[str, Any]:
        """A watch event, read without the object's spec when the store holds the same generation of
        it, and whole otherwise. Assumes the API server raises the generation on every change of the
        spec, as it does for Deployments (and custom resources with a status subresource)."""
        event = _EVENT_WITHOUT_SPEC.validate_json(line)
        metadata = (event.get("object") or {}).get("metadata") or {}
        held = self.store.get(metadata.get("namespace") or "", metadata["name"]) if "name" in metadata else None
        if (event.get("type") not in ("ADDED", "MODIFIED") or held is None or "spec" not in held
                or held["metadata"].get("uid") != metadata.get("uid")
                or held["metadata"].get("generation") != metadata.get("generation")):
            return decode(line)
        event["object"]["spec"] = held["spec"]
        return event

    def _list(self) -> str | None:
        listing = self._read_list(self.list_call(**self._selector()).data)
        version = listing["metadata"].get("resourceVersion")
        for event_obj in self.store.replace([self._typed(o) for o in listing.get("items") or []], _int(version)):
            gone = self.store.get(*_key(event_obj)) is None
            self.on_change("DELETED" if gone else "MODIFIED", event_obj)
        return version

    def _events(self, version: str) -> Iterator[bytes]:
        """One WATCH request from `version`: its events, one JSON document each, until the server
        ends it.

        Not the client's `watch.Watch`: it builds the client's model classes from every event (and
        encodes each to JSON once more to do so), most of the operator's CPU at scale."""
        response = self.list_call(watch="true", resourceVersion=version, allowWatchBookmarks="true",
                                  timeoutSeconds=str(self.WATCH_SECONDS), timeout=(10, self.stall_seconds),
                                  **self._selector())
        try:
            for line in response.lines():
                if line.strip():
                    yield line
        finally:
            response.close()

    def _watch(self) -> None:
        """Follow changes from `self.version` until asked to stop; raises ApiException(410) to
        relist, and TimeoutError when the watch stalled."""
        while not self._stop.is_set():
            assert self.version is not None, "a watch resumes from a listing or an event"
            for line in self._events(self.version):
                echo = peek_resource_version(line)
                if echo is not None and self.store.is_echo(echo, self.ECHO_WAIT_SECONDS):
                    self.version = str(echo)
                    continue
                event = self._read_event(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    obj = decode(line)["object"]  # a Status, which a slim reader does not keep
                    raise ApiException(status=obj.get("code", 500), reason=obj.get("message", "watch error"))
                self.version = obj["metadata"].get("resourceVersion", self.version)
                if event["type"] == "BOOKMARK":
                    continue
                obj = self._typed(obj)
                took = self.store.remove(obj) if event["type"] == "DELETED" else self.store.upsert(obj)
                if took:
                    self.on_change(event["type"], obj)
                if self._stop.is_set():
                    return

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                if self.version is None:
                    self.version = self._list()
                    self.synced.set()
                failures = 0
                self._watch()
            except TimeoutError:
                log.warning("Reopened the watch of %s: nothing came, not even a bookmark, for %.0fs",
                            self.name, self.stall_seconds)
                continue  # from the last version seen: a stalled connection lost nothing the server kept
            except ApiException as error:
                self.version = None
                if error.status == 410:
                    log.info("Relisted %s: the watch could not resume (410 Gone)", self.name)
                    continue
                failures += 1
                log.warning("Failed to watch %s: %s %s", self.name, error.status, error.reason)
            except ConnectionRefusedError:
                # Nothing listens (the API server restarting): asking again costs it nothing, and
                # the sooner the watch is back, the sooner changes made meanwhile are seen.
                self.version, failures = None, 1
                log.warning("Failed to watch %s: the API server refused the connection", self.name)
            except Exception as error:  # noqa: BLE001 - a reflector never dies; it lists again
                self.version = None
                failures += 1
                log.warning("Failed to watch %s: %s", self.name, error)
            self._stop.wait(self.RETRY_SECONDS[min(failures, len(self.RETRY_SECONDS)) - 1])


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def wait_synced(reflectors: Iterable[Reflector], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all(r.synced.wait(max(0.0, deadline - time.monotonic())) for r in reflectors)


# ---------------------------------------------------------------- the operator's caches

LLMDEPLOYMENT = "LLMDeployment"
LLMGATEWAY = "LLMGateway"
LLMBATCH = "LLMBatch"
POD = "Pod"
JOB = "Job"
# Besides the owner's label, pods are found by these: a gateway's, its chat page's, a batch's.
POD_INDEX_LABELS = (GATEWAY_LABEL, CHAT_PAGE_LABEL, BATCH_LABEL)


def _detached(response: dict[str, Any]) -> dict[str, Any]:
    """A copy of a write's response that `slim` may change without changing what reconcile gets."""
    return {**response, "metadata": dict(response["metadata"])}


class CachedKube:
    """A Kube whose reads come from watch caches and whose writes also update them.

    Reads fall through to the API server until every reflector has listed once. Writes store the
    response (the object as stored, with its resourceVersion), so a later, older watch event cannot
    make a reconcile decide from a version older than the operator's own last write.
    Everything else (Leases, Events, name-conflict GETs) is the wrapped Kube's.
    """

    def __init__(self, kube: Kube, namespaces: tuple[str, ...], on_change: Callable[[str, str, dict[str, Any]], None],
                 managed_selector: str, owner_label: str, gateways: bool = False, batches: bool = False,
                 watch_stall_seconds: float | None = None) -> None:
        self.kube = kube
        self.stores = {LLMDEPLOYMENT: Store(), **({LLMGATEWAY: Store()} if gateways else {}),
                       **({LLMBATCH: Store(), JOB: Store()} if batches else {}),
                       POD: Store(owner_label, *POD_INDEX_LABELS),
                       **{kind: Store(owner_label) for kind in kube.child_kinds}}
        where = namespaces or (None,)
        self.reflectors = [
            Reflector(f"{kind} in {ns or 'all namespaces'}", kube.lister(kind, ns), self.stores[kind],
                      partial(on_change, kind),
                      label_selector=None if kind in (LLMDEPLOYMENT, LLMGATEWAY, LLMBATCH) else managed_selector,
                      kind=(api_version(kind), kind), stall_seconds=watch_stall_seconds)
            for kind in self.stores for ns in where
        ]

    def start(self) -> None:
        for reflector in self.reflectors:
            reflector.start()

    def stop(self) -> None:
        for reflector in self.reflectors:
            reflector.stop()

    @property
    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kube, name)

    # ------------------------------------------------------------ reads

    def get_llmdeployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.synced:
            return self.kube.get_llmdeployment(namespace, name)
        return self.stores[LLMDEPLOYMENT].get(namespace, name)

    def get_llmgateway(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.synced or LLMGATEWAY not in self.stores:
            return self.kube.get_llmgateway(namespace, name)
        return self.stores[LLMGATEWAY].get(namespace, name)

    def get_llmbatch(self, namespace: str, name: str) -> dict[str, Any] | None:
        if not self.synced or LLMBATCH not in self.stores:
            return self.kube.get_llmbatch(namespace, name)
        return self.stores[LLMBATCH].get(namespace, name)

    def get_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A Job the operator labelled as its own, from the cache; any other of that name from the API
        server (to be refused as a conflict)."""
        held = self.stores[JOB].get(namespace, name) if self.synced and JOB in self.stores else None
        return held if held is not None else self.kube.get_job(namespace, name)

    def list_labelled_pods(self, namespace: str, label: str, value: str) -> list[dict[str, Any]]:
        """`label` is one of POD_INDEX_LABELS."""
        if not self.synced:
            return self.kube.list_labelled_pods(namespace, label, value)
        return self.stores[POD].labelled(namespace, value, label)

    def list_llmdeployments(self, namespace: str) -> list[dict[str, Any]]:
        if not self.synced:
            return self.kube.list_llmdeployments(namespace)
        return self.stores[LLMDEPLOYMENT].in_namespace(namespace)

    def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """From the cache for the kinds it holds (only objects labelled as the operator's are there:
        an unlabelled one of the same name is asked of the API server, to be refused as a conflict)."""
        held = self.stores[kind].get(namespace, name) if self.synced and kind in self.kube.child_kinds else None
        return held if held is not None else self.kube.get_child(kind, namespace, name)

    def list_children(self, namespace: str, owner: str, owner_uid: str) -> list[dict[str, Any]]:
        if not self.synced:
            return self.kube.list_children(namespace, owner, owner_uid)
        return [obj for kind in self.kube.child_kinds
                for obj in self.stores[kind].labelled(namespace, owner)
                if any(ref.get("uid") == owner_uid and ref.get("controller")
                       for ref in obj["metadata"].get("ownerReferences") or [])]

    def list_pods(self, namespace: str, owner: str) -> list[dict[str, Any]]:
        if not self.synced:
            return self.kube.list_pods(namespace, owner)
        return self.stores[POD].labelled(namespace, owner)

    # ------------------------------------------------------------ writes

    def apply(self, obj: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        store = self.stores.get(obj["kind"])
        with store.writing() if store else nullcontext():
            stored = self.kube.apply(obj, **kwargs)
            if store:
                store.upsert(slim(obj["apiVersion"], obj["kind"], _detached(stored)), written=True)
        return stored

    def apply_status(self, namespace: str, name: str, status: dict[str, Any], kind: str = LLMDEPLOYMENT) -> dict[str, Any]:
        store = self.stores.get(kind)
        with store.writing() if store else nullcontext():
            stored = self.kube.apply_status(namespace, name, status, kind)
            if store:
                store.upsert(slim(API_VERSION, kind, _detached(stored)), written=True)
        return stored

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.kube.delete(kind, namespace, name)
        held = self.stores[kind].get(namespace, name) if kind in self.stores else None
        if held:
            self.stores[kind].remove(held)
