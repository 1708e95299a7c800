"""reconcile() against an in-memory API server: what it writes and what status it reports when
the cluster lags behind, refuses, or holds objects of other owners."""

from __future__ import annotations

import copy

from fakes import SPEC, MemoryKube, resource, run
from llm_operator.controllers.llmdeployment.reconcile import START_LINE_RETRY_SECONDS, reconcile
from llm_operator.controllers.shared import FAILED_RETRY_SECONDS
from llm_operator.k8s import now
from llm_operator.render import RenderConfig


def test_a_new_generation_is_not_ready_before_it_rolls_out():
    kube = MemoryKube(resource())
    run(kube)
    kube.roll_out()
    assert run(kube).phase == "Ready"
    kube.llmd = {**resource({"llm": {"model": {"source": "hf://Qwen/Qwen3-32B"}}}, generation=2),
                 "status": kube.llmd["status"]}
    result = run(kube)
    assert ("Deployment", "team-llm") in kube.applied[-2:]
    assert result.phase != "Ready" and kube.llmd["status"]["observedGeneration"] == 2
    ready = next(c for c in kube.llmd["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    kube.roll_out()
    assert run(kube).phase == "Ready"


def test_a_refused_object_is_failed_and_retried_until_accepted():
    kube = MemoryKube(resource())
    kube.refuse.add("Deployment")
    result = run(kube)
    assert result.phase == "Failed" and result.requeue_after == FAILED_RETRY_SECONDS
    assert kube.llmd["status"]["conditions"][0]["reason"] == "ApplyFailed"
    # The same generation, and the cause went away (a granted permission, an operator upgrade).
    kube.refuse.clear()
    result = run(kube)
    assert result.phase != "Failed" and ("Deployment", "team-llm") in kube.objects


def test_objects_of_others_are_left_alone_and_named_in_status():
    kube = MemoryKube(resource({**SPEC, "cache": {"size": "10Gi"}}))
    users_claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": "team-cache", "namespace": "ns"}, "spec": {"resources": {"requests": {"storage": "1Gi"}}}}
    kube.objects[("PersistentVolumeClaim", "team-cache")] = copy.deepcopy(users_claim)
    result = run(kube)
    assert kube.objects[("PersistentVolumeClaim", "team-cache")] == users_claim
    assert ("PersistentVolumeClaim", "team-cache") not in kube.applied
    # Its pods would mount that claim read-write and download into it: not applied until it clears.
    assert ("Deployment", "team-llm") not in kube.applied and ("Service", "team-llm") in kube.applied
    degraded = next(c for c in kube.llmd["status"]["conditions"] if c["type"] == "Degraded")
    assert result.phase == "Degraded" and degraded["reason"] == "NameConflict"
    assert "PersistentVolumeClaim team-cache already exists" in degraded["message"]
    assert "applies nothing that would use it" in degraded["message"]
    assert result.requeue_after
    del kube.objects[("PersistentVolumeClaim", "team-cache")]  # the user renamed theirs
    run(kube)
    assert {("PersistentVolumeClaim", "team-cache"), ("Deployment", "team-llm")} <= set(kube.applied)


def test_settled_resource_gets_no_write():
    kube = MemoryKube(resource())
    run(kube)
    kube.roll_out()
    run(kube)
    applied = len(kube.applied)
    assert run(kube).writes == 0 and len(kube.applied) == applied


def test_refusals_that_retrying_cannot_fix_are_told_apart():
    import json

    from kubernetes.client.rest import ApiException

    from llm_operator.k8s import _unfixable_by_retry

    def error(status, message):
        failure = ApiException(status=status, reason="x")
        failure.body = json.dumps({"message": message})
        return failure

    assert _unfixable_by_retry(error(422, "spec.template.spec.affinity: Invalid value"))
    assert _unfixable_by_retry(error(403, "cannot set blockOwnerDeletion"))
    # Server-side apply's answer to an object that does not fit the type's schema.
    assert _unfixable_by_retry(error(500, "failed to create typed patch object (/x; apps/v1, Kind=Deployment): "
                                          ".spec.template.spec.affinity.nodeAfinity: field not declared in schema"))
    assert not _unfixable_by_retry(error(500, "etcdserver: request timed out"))
    assert not _unfixable_by_retry(error(409, "the object has been modified"))
    assert not _unfixable_by_retry(error(429, "too many requests"))


def test_a_renderer_defect_is_reported_in_status_and_retried(monkeypatch):
    kube = MemoryKube(resource())
    run(kube)
    kube.roll_out()
    assert run(kube).phase == "Ready"

    def broken(llmd, config):
        raise KeyError("a bug")
    monkeypatch.setattr("llm_operator.controllers.llmdeployment.reconcile.render", broken)
    result = run(kube)
    assert (result.phase, result.requeue_after) == ("Failed", FAILED_RETRY_SECONDS)
    ready = next(c for c in kube.llmd["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RenderFailed")
    assert "KeyError" in ready["message"] and "a bug" in ready["message"]
    assert ("Deployment", "team-llm") in kube.objects  # what serves is left serving


def test_the_render_memo_renders_again_exactly_when_an_input_changes(monkeypatch):
    import llm_operator.controllers.llmdeployment.reconcile as reconcile_module
    from llm_operator.controllers.llmdeployment.reconcile import RenderMemo

    renders = []
    real_render = reconcile_module.render
    monkeypatch.setattr(reconcile_module, "render", lambda llmd, config: renders.append(1) or real_render(llmd, config))
    kube, memo = MemoryKube(resource()), RenderMemo()

    def run_memo():
        return reconcile(kube, RenderConfig(), "ns", "team", memo)

    run_memo()
    kube.roll_out()
    run_memo()
    assert len(renders) == 1  # a child's change: same inputs, the remembered render
    kube.llmd["metadata"]["labels"] = {"team": "search"}  # labels do not raise the generation
    run_memo()
    assert len(renders) == 2
    kube.llmd["spec"] = {"llm": {"model": {"source": "hf://Qwen/Qwen3-8B"}, "engine": {"maxModelLen": 4096}}}
    kube.llmd["metadata"]["generation"] = 2
    run_memo()
    assert len(renders) == 3
    assert "4096" in kube.objects[("Deployment", "team-llm")]["spec"]["template"]["spec"]["containers"][0]["args"]
    kube.llmd["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    run_memo()
    assert memo.get(kube.llmd) is None  # forgotten with the resource


def test_a_child_that_matched_its_render_is_compared_again_only_once_it_changed(monkeypatch):
    import llm_operator.controllers.llmdeployment.reconcile as reconcile_module
    from llm_operator.controllers.llmdeployment.reconcile import RenderMemo

    compared = []
    real_needs_apply = reconcile_module.needs_apply
    monkeypatch.setattr(reconcile_module, "needs_apply",
                        lambda desired, live: compared.append(desired["kind"]) or real_needs_apply(desired, live))
    kube, memo = MemoryKube(resource()), RenderMemo()
    versions = iter(range(100, 1000))

    def changed(obj):  # what every write does to an object in the API server
        obj["metadata"]["resourceVersion"] = str(next(versions))
        return obj

    def compared_in_a_reconcile():
        compared.clear()
        for obj in kube.objects.values():
            obj["metadata"].setdefault("resourceVersion", str(next(versions)))
        reconcile(kube, RenderConfig(), "ns", "team", memo)
        return sorted(compared)

    compared_in_a_reconcile()  # creates both children: nothing live to compare
    assert compared_in_a_reconcile() == ["Deployment", "Service"]
    kube.roll_out()
    changed(kube.objects[("Deployment", "team-llm")])  # a status update: same generation
    assert compared_in_a_reconcile() == []
    # The Deployment controller's revision annotation is none the operator sets: no comparison.
    changed(kube.objects[("Deployment", "team-llm")])["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "1"
    assert compared_in_a_reconcile() == []

    deployment = kube.objects[("Deployment", "team-llm")]
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:1"
    deployment["metadata"]["generation"] += 1  # a spec edit raises the generation
    changed(deployment)
    applied = len(kube.applied)
    assert compared_in_a_reconcile() == ["Deployment"]
    assert kube.applied[applied:] == [("Deployment", "team-llm")]  # the drift was undone

    changed(kube.objects[("Deployment", "team-llm")])["metadata"]["labels"] = {"edited": "by-hand"}
    assert compared_in_a_reconcile() == ["Deployment"]  # a label edit does not raise the generation
    assert compared_in_a_reconcile() == ["Deployment"]  # the object the operator's apply stored, once
    assert compared_in_a_reconcile() == []

    service = changed(kube.objects[("Service", "team-llm")])  # a Service has no generation
    service["spec"]["ports"][0]["port"] = 9999
    assert compared_in_a_reconcile() == ["Service"]
    assert kube.objects[("Service", "team-llm")]["spec"]["ports"][0]["port"] != 9999


# ------------------------------------------------------------------ engine starts and the compile cache

CACHED = {**SPEC, "cache": {"size": "10Gi"}}
LONG_AGO = "2026-01-01T00:00:00Z"


def engine_pod(name, started, ready_since=LONG_AGO, ready=True):
    return {"metadata": {"name": name, "labels": {"llmops.dev/role": "llm"}},
            "status": {"conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": ready_since}],
                       "containerStatuses": [{"name": "vllm", "ready": ready, "state": {"running": {"startedAt": started}}}]}}


def compile_status(kube):
    return kube.llmd["status"]["roles"]["llm"].get("compileCache")


def test_each_engine_start_is_read_once_into_status_and_an_event():
    kube = MemoryKube(resource(CACHED))
    run(kube)
    kube.roll_out()
    kube.pods = [engine_pod("team-llm-a", "2026-01-01T00:00:05Z")]
    kube.logs["team-llm-a"] = ("INFO vLLM starting\n2026-01-01T00:00:40+0000 INFO Compile cache Compiled: 30 files (1.1 MiB) "
                               "compiled in 35.0 s and stored in /compile-cache/x; the next start of this model reuses them\n")
    run(kube)
    assert compile_status(kube) == {
        "pod": "team-llm-a", "startedAt": "2026-01-01T00:00:05Z", "result": "Compiled",
        "message": "30 files (1.1 MiB) compiled in 35.0 s and stored in /compile-cache/x; the next start of this model "
                   "reuses them"}
    assert "CompiledFilesStored" in kube.events
    # Nothing new: the log is not read again, and nothing is written.
    reads, events = len(kube.log_reads), len(kube.events)
    assert run(kube).writes == 0 and len(kube.log_reads) == reads and len(kube.events) == events
    # A second replica that reused the files.
    kube.pods.append(engine_pod("team-llm-b", "2026-01-01T00:03:00Z"))
    kube.logs["team-llm-b"] = "Compile cache Reused: 30 compiled files from /compile-cache/x, nothing compiled\n"
    run(kube)
    assert kube.log_reads[reads:] == ["team-llm-b"]
    assert (compile_status(kube)["pod"], compile_status(kube)["result"]) == ("team-llm-b", "Reused")
    assert kube.events[events:] == ["CompiledFilesReused"]


def test_a_start_whose_line_is_not_logged_yet_is_looked_at_again_soon():
    kube = MemoryKube(resource(CACHED))
    run(kube)
    kube.roll_out()
    kube.pods = [engine_pod("team-llm-a", "2026-01-01T00:00:05Z", ready_since=now())]
    kube.logs["team-llm-a"] = "INFO vLLM is healthy\n"  # llm-runtime serve has not logged its line yet
    result = run(kube)
    assert result.requeue_after == START_LINE_RETRY_SECONDS and compile_status(kube) is None
    kube.logs["team-llm-a"] += "Compile cache NotStored: 30 files (1.1 MiB) compiled and not stored: read-only\n"
    run(kube)
    assert compile_status(kube)["result"] == "NotStored" and "CompiledFilesNotStored" in kube.events


def test_a_start_whose_log_cannot_be_read_is_unknown_without_an_event():
    kube = MemoryKube(resource(CACHED))
    run(kube)
    kube.roll_out()
    kube.pods = [engine_pod("team-llm-a", "2026-01-01T00:00:05Z"), engine_pod("team-llm-b", "2026-01-01T00:00:09Z", ready=False)]
    result = run(kube)  # no log at all (a node whose kubelet serves none)
    assert compile_status(kube)["result"] == "Unknown" and result.requeue_after is None
    assert kube.log_reads == ["team-llm-a"]  # a pod not ready yet is not read
    assert not [e for e in kube.events if e.startswith("Compiled")]


def test_an_operator_not_allowed_to_read_logs_asks_for_none_and_reports_no_start():
    kube = MemoryKube(resource(CACHED))
    kube.reads_pod_logs = False
    run(kube)
    kube.roll_out()
    kube.pods = [engine_pod("team-llm-a", "2026-01-01T00:00:05Z")]
    kube.logs["team-llm-a"] = "Compile cache Reused: 30 compiled files from /compile-cache/x, nothing compiled\n"
    result = run(kube)
    assert kube.log_reads == [] and compile_status(kube) is None and result.requeue_after is None
    assert kube.llmd["status"]["phase"] == "Ready" and not [e for e in kube.events if e.startswith("Compiled")]


def test_without_a_compile_cache_no_log_is_read():
    kube = MemoryKube(resource({**SPEC, "cache": {"size": "10Gi", "compileCache": False}}))
    run(kube)
    kube.roll_out()
    kube.pods = [engine_pod("team-llm-a", "2026-01-01T00:00:05Z")]
    run(kube)
    assert kube.log_reads == [] and compile_status(kube) is None
