"""The watch cache's Store: it never goes back in time, and a relist is the truth as of its version."""

from __future__ import annotations

import pytest

from llm_operator.k8s import CHILD_KINDS
from llm_operator.k8s.cache import Store
from llm_operator.names import BATCH_LABEL


def obj(name, version, namespace="ns", **labels):
    return {"metadata": {"name": name, "namespace": namespace, "resourceVersion": str(version), "labels": labels}}


def test_an_event_older_than_the_held_version_is_ignored():
    store = Store()
    assert store.upsert(obj("a", 10))
    # The operator stored its own write's response (version 12); the watch then delivers version 11.
    assert store.upsert(obj("a", 12))
    assert not store.upsert(obj("a", 11))
    assert store.get("ns", "a")["metadata"]["resourceVersion"] == "12"


def test_a_delete_does_not_remove_a_newer_incarnation():
    store = Store()
    store.upsert(obj("a", 20))  # recreated; the old object's DELETED event comes late
    assert not store.remove(obj("a", 15))
    assert store.get("ns", "a") is not None
    assert store.remove(obj("a", 21))
    assert store.get("ns", "a") is None


def test_a_relist_removes_what_it_lacks_and_reports_it():
    store = Store()
    store.upsert(obj("kept", 5))
    store.upsert(obj("deleted-during-the-gap", 6))
    changed = store.replace([obj("kept", 5), obj("new", 9)], listed_version=10)
    assert {o["metadata"]["name"] for o in changed} == {"deleted-during-the-gap", "new"}
    assert store.get("ns", "deleted-during-the-gap") is None and store.get("ns", "new") is not None


def test_a_relist_keeps_what_was_written_after_it_was_taken():
    store = Store()
    store.upsert(obj("created-by-the-operator", 12))  # the response of an apply made during the list
    changed = store.replace([], listed_version=10)
    assert changed == [] and store.get("ns", "created-by-the-operator") is not None


def test_a_relist_never_takes_a_version_older_than_the_held_one():
    store = Store()
    store.upsert(obj("a", 30))
    assert store.replace([obj("a", 25)], listed_version=26) == []
    assert store.get("ns", "a")["metadata"]["resourceVersion"] == "30"


def test_labelled_selects_by_namespace_and_label_and_follows_relabels_and_deletes():
    label = "llmops.dev/deployment"
    store = Store(label)
    store.upsert(obj("x-llm", 1, **{label: "x"}))
    store.upsert(obj("y-llm", 1, **{label: "y"}))
    store.upsert(obj("x-llm", 1, namespace="other", **{label: "x"}))
    store.upsert(obj("unlabelled", 1))
    assert [o["metadata"]["name"] for o in store.labelled("ns", "x")] == ["x-llm"]
    store.upsert(obj("y-llm", 2, **{label: "x"}))  # someone relabelled it
    assert sorted(o["metadata"]["name"] for o in store.labelled("ns", "x")) == ["x-llm", "y-llm"]
    assert store.labelled("ns", "y") == []
    store.remove(obj("x-llm", 3))
    store.replace([obj("x-llm", 1, namespace="other", **{label: "x"})], listed_version=4)  # y-llm gone in a relist
    assert store.labelled("ns", "x") == [] and len(store.labelled("other", "x")) == 1


def test_a_store_indexed_by_several_labels_finds_an_object_by_each_and_forgets_a_label_removed():
    owner, gateway = "llmops.dev/deployment", "llmops.dev/gateway"
    store = Store(owner, gateway)
    store.upsert(obj("both", 1, **{owner: "x", gateway: "g"}))
    store.upsert(obj("gateway-only", 1, **{gateway: "g"}))
    assert [o["metadata"]["name"] for o in store.labelled("ns", "x")] == ["both"]
    assert sorted(o["metadata"]["name"] for o in store.labelled("ns", "g", gateway)) == ["both", "gateway-only"]
    store.upsert(obj("both", 2, **{owner: "x"}))  # the gateway label taken off
    assert [o["metadata"]["name"] for o in store.labelled("ns", "g", gateway)] == ["gateway-only"]
    assert [o["metadata"]["name"] for o in store.labelled("ns", "x")] == ["both"]
    with pytest.raises(KeyError, match="llmops.dev/batch is not an index label"):
        store.labelled("ns", "b", "llmops.dev/batch")


class FakeResponse:
    """An unread response, as k8s/transport.py returns it."""

    def __init__(self, body):
        import json
        self.data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.closed = False

    def json(self):
        import json
        return json.loads(self.data)

    def lines(self):
        yield from self.data.splitlines()

    def close(self):
        self.closed = True


class FakeServer:
    """A LIST that answers with `items`, and WATCH requests answered by scripted event streams."""

    def __init__(self, items, version, streams):
        self.items, self.version, self.streams, self.lists = items, version, list(streams), 0
        self.watches: list[FakeResponse] = []
        self.watched_from: list[str] = []  # the resourceVersion of each WATCH
        self.exhausted = lambda: None  # called when the script is over

    def list_call(self, **kwargs):
        import json
        if kwargs.get("watch"):
            self.watched_from.append(kwargs["resourceVersion"])
            if not self.streams:
                self.exhausted()
                events = []
            else:
                events = self.streams.pop(0)
            # The API server sends one JSON event per line.
            self.watches.append(FakeResponse(b"".join(
                (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n" for e in events)))
            return self.watches[-1]
        self.lists += 1
        return FakeResponse({"metadata": {"resourceVersion": str(self.version)}, "items": self.items})


def run_reflector(server, store=None):
    import llm_operator.k8s.cache as cache

    changes = []
    reflector = cache.Reflector("test", server.list_call, store or Store(),
                                lambda t, o: changes.append((t, o["metadata"]["name"])), kind=("v1", "Pod"))
    reflector.RETRY_SECONDS = (0,)
    server.exhausted = reflector.stop
    reflector._run()  # in this thread: returns once the scripted streams are used up
    return reflector, changes


def test_the_reflector_relists_after_410_and_reports_deletes_seen_only_there():
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    server = FakeServer([obj("a", 1), obj("b", 2)], 2, [
        [{"type": "MODIFIED", "object": obj("a", 3)}, gone],
    ])
    original_list = server.list_call

    def list_then_lose_b(**kwargs):
        response = original_list(**kwargs)
        server.items = [obj("a", 3)]  # b is deleted while the watch is broken
        return response
    server.list_call = list_then_lose_b
    reflector, changes = run_reflector(server)
    assert server.lists == 2
    assert ("MODIFIED", "a") in changes and ("DELETED", "b") in changes
    assert reflector.store.get("ns", "b") is None and reflector.store.get("ns", "a")["kind"] == "Pod"
    assert reflector.synced.is_set()
    assert all(response.closed for response in server.watches)  # no connection left open


def test_the_reflector_resumes_from_the_last_version_and_skips_bookmarks():
    server = FakeServer([obj("a", 1)], 1, [
        [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "7"}}},
         {"type": "ADDED", "object": obj("c", 8)}],
        [{"type": "DELETED", "object": obj("a", 9)}],
    ])
    reflector, changes = run_reflector(server)
    # Each WATCH resumes where the last one ended (a bookmark moves the version, but is no change).
    assert server.watched_from[:2] == ["1", "8"] and server.lists == 1
    # The first LIST reports what it found; then only the watch's changes.
    assert changes == [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "a")]
    assert reflector.store.get("ns", "a") is None


def test_a_watch_that_stalls_is_reopened_from_the_last_version_without_a_relist():
    """A connection a proxy stopped forwarding delivers nothing and never closes: the read times out
    (after the reflector's stall_seconds) and the watch resumes from the last version it saw."""
    server = FakeServer([obj("a", 1)], 1, [[{"type": "ADDED", "object": obj("b", 5)}], [], [{"type": "ADDED", "object": obj("c", 6)}]])
    original_list = server.list_call

    def stall_the_second_watch(**kwargs):
        response = original_list(**kwargs)
        if kwargs.get("watch") and len(server.watches) == 2:
            def silent():
                raise TimeoutError("The read operation timed out")
                yield  # a generator, as lines() is
            response.lines = silent
        return response
    server.list_call = stall_the_second_watch
    reflector, changes = run_reflector(server)
    assert server.watched_from[:3] == ["1", "5", "5"] and server.lists == 1
    assert changes == [("MODIFIED", "a"), ("ADDED", "b"), ("ADDED", "c")]
    assert all(response.closed for response in server.watches)


class ApiKube:
    """The wrapped Kube: counts reads, answers writes with the object as stored."""

    child_kinds = CHILD_KINDS

    def __init__(self):
        self.reads, self.version = 0, 100

    def lister(self, kind, namespace=None):
        return lambda **query: None  # the reflectors are built, never started here

    def get_llmdeployment(self, namespace, name):
        self.reads += 1

    def apply(self, obj, **kwargs):
        self.version += 1
        return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}


def cached(kube):
    from llm_operator.k8s.cache import CachedKube

    cache = CachedKube(kube, ("ns",), lambda *args: None, managed_selector="m=o", owner_label="llmops.dev/deployment")
    for reflector in cache.reflectors:
        reflector.synced.set()  # as after the first LIST
    return cache


def test_reads_come_from_the_cache_and_never_go_back_before_the_own_write():
    kube = ApiKube()
    cache = cached(kube)
    owner = {"uid": "u1", "controller": True}
    child = {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "x-llm", "namespace": "ns", "labels": {"llmops.dev/deployment": "x"},
                          "ownerReferences": [owner], "resourceVersion": "90"}}
    cache.stores["Deployment"].upsert(child)
    stored = cache.apply({**child, "metadata": {**child["metadata"], "annotations": {"new": "1"}}})
    # A watch event of the version before the operator's write arrives late: it is ignored.
    cache.stores["Deployment"].upsert(child)
    (seen,) = cache.list_children("ns", "x", "u1")
    assert seen["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"] == "101"
    assert cache.list_children("ns", "x", "another-uid") == []
    assert cache.get_llmdeployment("ns", "x") is None and kube.reads == 0


def test_a_batch_s_job_and_pods_come_from_the_cache_and_never_an_llmdeployment_s():
    from llm_operator.k8s.cache import CachedKube

    kube = ApiKube()
    kube.get_job = lambda namespace, name: {"from": "api"}
    cache = CachedKube(kube, ("ns",), lambda *args: None, managed_selector="m=o", owner_label="llmops.dev/deployment",
                       batches=True)
    for reflector in cache.reflectors:
        reflector.synced.set()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "b-batch", "namespace": "ns", "resourceVersion": "5"}}
    cache.stores["Job"].upsert(job)

    def pod(name, labels):
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "ns", "labels": labels, "resourceVersion": "6"}}

    cache.stores["Pod"].upsert(pod("b-batch-x1", {"llmops.dev/batch": "b"}))
    cache.stores["Pod"].upsert(pod("b-llm-x2", {"llmops.dev/deployment": "b"}))  # an LLMDeployment of the same name
    assert cache.get_job("ns", "b-batch") is job
    assert cache.get_job("ns", "other-batch") == {"from": "api"}  # not ours, or not there: asked of the API server
    assert [p["metadata"]["name"] for p in cache.list_labelled_pods("ns", BATCH_LABEL, "b")] == ["b-batch-x1"]
    assert [p["metadata"]["name"] for p in cache.list_pods("ns", "b")] == ["b-llm-x2"]


# ---------------------------------------------------------------- reconcile over the cache

def server_kube(llmd):
    """test_reconcile's in-memory API server, answering writes as the real one does: with the
    object as stored and a new resourceVersion."""
    import copy

    from fakes import MemoryKube

    class ServerKube(MemoryKube):
        version = 100

        def lister(self, kind, namespace=None):
            return lambda **query: None

        def apply(self, obj, field_manager="llm-operator"):
            stored = super().apply(obj, field_manager)
            self.version += 1
            stored["metadata"]["resourceVersion"] = str(self.version)
            self.objects[(obj["kind"], obj["metadata"]["name"])]["metadata"]["resourceVersion"] = str(self.version)
            return stored

        def apply_status(self, namespace, name, status, kind="LLMDeployment"):
            super().apply_status(namespace, name, status, kind)
            self.version += 1
            self.llmd["metadata"]["resourceVersion"] = str(self.version)
            return copy.deepcopy(self.llmd)

    return ServerKube(llmd)


def test_a_reconcile_leaves_every_object_in_the_cache_as_it_was():
    import copy

    from fakes import resource
    from llm_operator.controllers.llmdeployment.reconcile import reconcile
    from llm_operator.render import RenderConfig

    kube = server_kube(resource())
    cache = cached(kube)
    cache.stores["LLMDeployment"].upsert(copy.deepcopy(kube.llmd))
    reconcile(cache, RenderConfig(), "ns", "team")  # creates the children, through the cache
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "team-llm-1", "namespace": "ns", "resourceVersion": "500",
                        "labels": {"llmops.dev/deployment": "team", "llmops.dev/role": "llm"}},
           "status": {"phase": "Running", "startTime": "2026-01-01T00:00:00Z",
                      "containerStatuses": [{"name": "vllm", "ready": False, "restartCount": 0,
                                             "state": {"running": {}}}]}}
    cache.stores["Pod"].upsert(pod)
    held = [obj for store in cache.stores.values() for obj in list(store._objects.values())]
    assert len(held) >= 4  # the resource, its Deployment and Service, the pod
    before = copy.deepcopy(held)
    result = reconcile(cache, RenderConfig(), "ns", "team")
    assert result.phase == "Starting"  # it did read the pod
    assert held == before  # no object the cache handed out was changed in place


def test_a_child_changed_while_its_owner_is_reconciled_is_reconciled_again():
    import copy
    import time

    from fakes import resource
    from llm_operator.controllers.llmdeployment.reconcile import reconcile
    from llm_operator.handlers.queue import WorkQueue
    from llm_operator.render import RenderConfig

    kube = server_kube(resource())
    cache = cached(kube)
    cache.stores["LLMDeployment"].upsert(copy.deepcopy(kube.llmd))
    apply = kube.apply
    late_events = []
    queue = None

    def apply_while_someone_edits(obj, field_manager="llm-operator"):
        stored = apply(obj, field_manager)
        if obj["kind"] == "Service" and not late_events:
            # Between the operator's Deployment and Service writes, someone edits the Deployment;
            # the watch delivers that edit, and only later the event of the operator's own write.
            deployment = kube.objects[("Deployment", "team-llm")]
            late_events.append(copy.deepcopy(deployment))
            edited = copy.deepcopy(deployment)
            edited["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"
            kube.version += 1
            edited["metadata"]["resourceVersion"] = str(kube.version)
            kube.objects[("Deployment", "team-llm")] = edited
            assert cache.stores["Deployment"].upsert(copy.deepcopy(edited))
            queue.add("ns/team")  # what the reflector's change handler does
        return stored
    kube.apply = apply_while_someone_edits

    queue = WorkQueue(lambda key: reconcile(cache, RenderConfig(), *key.split("/")), workers=2)
    queue.add("ns/team")
    queue.start()
    deadline = time.monotonic() + 30  # on a loaded machine the two reconciles take more than a moment
    while kube.applied.count(("Deployment", "team-llm")) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The event of the operator's first Deployment write arrives after the edit: it is stale.
    assert not cache.stores["Deployment"].upsert(late_events[0])
    queue.stop()

    assert kube.applied.count(("Deployment", "team-llm")) == 2  # the edit was seen and undone
    (deployment,) = [c for c in cache.list_children("ns", "team", "u-1") if c["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] != "someone/else:1"
    assert deployment["metadata"]["resourceVersion"] == kube.objects[("Deployment", "team-llm")]["metadata"]["resourceVersion"]


def test_the_watch_echo_of_an_own_write_is_no_change():
    store = Store()
    assert store.upsert(obj("a", 7))  # the response of the operator's apply
    assert not store.upsert(obj("a", 7))  # the same version, from the watch: nothing to reconcile


def test_the_version_is_peeked_from_typed_and_custom_objects_and_not_guessed():
    import json

    from llm_operator.k8s.cache import peek_resource_version

    def event(obj):
        return json.dumps({"type": "MODIFIED", "object": obj}, separators=(",", ":")).encode()

    # Typed objects put metadata first; custom resources have their keys sorted (after annotations).
    typed = {"kind": "Deployment", "metadata": {"name": "d", "uid": "u", "resourceVersion": "41",
                                                "annotations": {"a": "{\"resourceVersion\":\"9\"}"}}}
    custom = {"metadata": {"annotations": {"x": "1"}, "resourceVersion": "42"}}  # json.dumps keeps this order
    assert peek_resource_version(event(typed)) == 41  # an escaped copy in an annotation's value is no field
    assert peek_resource_version(event(custom)) == 42
    # An annotation named resourceVersion: two fields, so no answer (the event is parsed instead).
    named = {"metadata": {"annotations": {"resourceVersion": "7"}, "resourceVersion": "43"}}
    assert peek_resource_version(event(named)) is None


def test_the_echo_of_an_own_write_is_skipped_unread_and_the_watch_resumes_after_it():
    echo = b'{"type":"MODIFIED","object":{"metadata":{"name":"a","resourceVersion":"7"'  # unparseable if read
    server = FakeServer([obj("a", 1)], 1, [[echo, {"type": "MODIFIED", "object": obj("a", 8)}], []])
    store = Store()
    store.upsert(obj("a", 7), written=True)  # the response of the operator's write
    reflector, changes = run_reflector(server, store)
    assert server.lists == 1  # the echo was not parsed: no failure, no relist
    assert server.watched_from[:2] == ["1", "8"]
    assert store.get("ns", "a")["metadata"]["resourceVersion"] == "8"


def test_echoes_that_never_come_are_forgotten():
    store = Store()
    store.upsert(obj("a", 7), written=True)
    store.upsert(obj("b", 9), written=True)
    store.replace([obj("a", 7), obj("b", 9)], listed_version=8)  # a relist at 8: 7's event never comes
    assert not store.is_echo(7) and store.is_echo(9) and not store.is_echo(9)
    store.ECHOES_KEPT = 1
    for version in (20, 21, 22):
        store.upsert(obj(f"c{version}", version), written=True)
    assert not store.is_echo(30)  # over the bound: every echo older than a seen event is dropped
    assert store.is_echo(31) is False and not store._echoes


def test_an_event_that_arrives_during_an_own_write_waits_for_it_to_be_stored():
    import threading
    import time

    store = Store()
    assert not store.is_echo(5, wait=30)  # no write in flight: no wait at all
    answered = threading.Event()

    def write():
        with store.writing():
            answered.wait()  # the API server's answer is on its way
            store.upsert(obj("a", 5), written=True)
    writer = threading.Thread(target=write)
    writer.start()
    threading.Timer(0.05, answered.set).start()
    assert store.is_echo(5, wait=30)  # the event came first; the write's answer then made it an echo
    writer.join()

    started = time.monotonic()
    with store.writing():  # a write of another object, slower than the wait
        assert not store.is_echo(6, wait=0.05)
    assert time.monotonic() - started < 5


def test_pods_are_read_straight_into_their_slim_form():
    import json

    from llm_operator.k8s.cache import _POD_EVENT, _POD_LIST, slim
    from llm_operator.k8s.transport import decode

    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "3", "generateName": "p-",
                        "labels": {"l": "v"}, "deletionTimestamp": "2026-01-01T00:00:00Z",
                        "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
           "spec": {"containers": [{"name": "vllm", "image": "i"}]},
           "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    read_event, read_list = _POD_EVENT.validate_json, _POD_LIST.validate_json
    line = json.dumps({"type": "MODIFIED", "object": pod}).encode()
    assert slim("v1", "Pod", read_event(line)["object"]) == slim("v1", "Pod", decode(line)["object"])
    assert "spec" not in read_event(line)["object"]
    listing = read_list(json.dumps({"kind": "PodList", "metadata": {"resourceVersion": "5"},
                                    "items": [pod]}).encode())
    assert listing["metadata"] == {"resourceVersion": "5"} and listing["items"] == [read_event(line)["object"]]
    assert read_list(b'{"metadata":{"resourceVersion":"6"},"items":null}')["items"] is None


def test_a_deployment_status_update_is_read_without_its_spec_and_a_new_generation_whole():
    import llm_operator.k8s.cache as cache

    def deployment(version, generation, image, ready):
        managed = [{"manager": "llm-operator", "operation": "Apply",
                    "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {}}}}},
                   {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]
        return {"metadata": {"name": "x-llm", "namespace": "ns", "uid": "u", "generation": generation,
                             "resourceVersion": str(version), "managedFields": managed},
                "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": image}]}}},
                "status": {"readyReplicas": ready}}
    server = FakeServer([deployment(1, 1, "a", 0)], 1, [[
        {"type": "MODIFIED", "object": deployment(2, 1, "a", 1)},
        {"type": "MODIFIED", "object": deployment(3, 2, "b", 1)},
    ]])
    store, seen = Store(), []
    reflector = cache.Reflector("test", server.list_call, store, lambda t, o: seen.append(o),
                                kind=("apps/v1", "Deployment"))
    reflector.RETRY_SECONDS = (0,)
    server.exhausted = reflector.stop
    reflector._run()
    listed, status_update, new_generation = seen
    assert status_update["status"] == {"readyReplicas": 1}
    assert status_update["spec"] is listed["spec"]  # the held spec, not read again
    assert new_generation["spec"]["template"]["spec"]["containers"] == [{"image": "b"}]
    assert status_update["metadata"]["managedFields"] == new_generation["metadata"]["managedFields"] == [
        {"manager": "llm-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]


def test_slim_keeps_what_reconcile_and_status_read():
    from llm_operator.controllers.llmdeployment.reconcile import replicas_handoff
    from llm_operator.k8s.cache import slim

    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "3",
                        "labels": {"l": "v"}, "managedFields": [{"manager": "kubelet"}]},
           "spec": {"containers": [{"name": "vllm"}]}, "status": {"phase": "Running"}}
    assert slim("v1", "Pod", pod) == {
        "apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running"},
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "3", "labels": {"l": "v"}}}
    # A Deployment keeps who owns spec.replicas, which the hand-off to an autoscaler reads.
    owned = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}}
    live = {"metadata": {"name": "d", "namespace": "ns", "managedFields": [
        {"manager": "llm-operator", "operation": "Apply", "fieldsV1": owned},
        {"manager": "kube-controller-manager", "operation": "Update", "fieldsV1": {"f:status": {}}}]},
        "spec": {"replicas": 3}}
    slimmed = slim("apps/v1", "Deployment", live)
    assert slimmed["metadata"]["managedFields"] == [
        {"manager": "llm-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns"},
               "spec": {"template": {}}}
    assert replicas_handoff(desired, slimmed)["spec"] == {"replicas": 3}
    service = slim("v1", "Service", {"metadata": {"name": "s", "managedFields": [{}]}, "spec": {}})
    assert "managedFields" not in service["metadata"] and service["kind"] == "Service"


def test_the_response_of_a_write_is_returned_whole_while_the_cache_keeps_it_slim():
    kube = ApiKube()
    cache = cached(kube)
    managed = [{"manager": "llm-operator", "operation": "Apply", "fieldsV1": {"f:spec": {"f:template": {}}}}]
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "x-llm", "namespace": "ns", "managedFields": managed}}
    returned = cache.apply(deployment)
    assert returned["metadata"]["managedFields"] == managed
    assert cache.stores["Deployment"].get("ns", "x-llm")["metadata"]["managedFields"] == []


def test_a_write_s_response_from_before_a_delete_does_not_bring_the_object_back():
    """The watch's DELETED event is handled while the operator's apply is in flight, and its
    response, older than the deletion, is stored after it: no ghost (a user's delete would
    otherwise never be acted on, and a name would stay in NameConflict)."""
    store = Store()
    store.upsert(obj("a", 10))
    with store.writing():
        assert store.remove(obj("a", 12))  # the DELETED event
        assert not store.upsert(obj("a", 11), written=True)  # the apply's response
        assert store.get("ns", "a") is None
    assert store.upsert(obj("a", 13), written=True)  # created again afterwards: kept
    with store.writing():
        assert store.remove(obj("b", 14)) is False  # deleted before its create's response was stored
        assert not store.upsert(obj("b", 13), written=True)
        assert store.upsert(obj("b", 15))  # a newer incarnation is kept
    assert store.get("ns", "b")["metadata"]["resourceVersion"] == "15"
