"""LLMBatch: its API's rules, the Job it renders (the same loader, cache and resources as serving),
and its status from the Job and its pods, case by case."""

from __future__ import annotations

import copy
import json

import pytest
from pydantic import ValidationError

from fakes import MemoryKube
from llm_operator.api.llmbatch import LLMBatch
from llm_operator.controllers.llmbatch.reconcile import PROGRESS_SECONDS, reconcile_batch
from llm_operator.controllers.llmbatch.status import batch_transitions, compute_batch_status, progress_in
from llm_operator.names import BATCH_LABEL, DEPLOYMENT_LABEL
from llm_operator.render import RenderConfig, render
from llm_operator.render.batch import render_batch
from support import BATCH, MODEL, batch, container, job, llmd


def job_of(b: LLMBatch) -> dict:
    [job] = render_batch(b)
    return job


# ---------------------------------------------------------------- API


@pytest.mark.parametrize("change, field, words", [
    ({"input": {"configMap": {"name": "a", "key": "k"},
                "persistentVolumeClaim": {"claimName": "c", "path": "in.jsonl"}}}, "input", "exactly one"),
    ({"input": {}}, "input", "exactly one"),
    ({"output": {"persistentVolumeClaim": {"claimName": "c", "path": "../etc/passwd"}}}, "path", "inside the claim"),
    ({"output": {"persistentVolumeClaim": {"claimName": "c", "path": "."}}}, "path", "name a file"),
    ({"output": {"persistentVolumeClaim": {"claimName": "c", "path": "out/."}}}, "path", "name a file"),
    ({"output": {"persistentVolumeClaim": {"claimName": "c", "path": "/abs.jsonl"}}}, "path", "pattern"),
    ({"engine": {"extraArgs": ["-o", "/tmp/x"]}}, "extraArgs", "the files are spec.input"),
    ({"engine": {"extraArgs": ["--output_file=/tmp/x"]}}, "extraArgs", "the files are spec.input"),
    ({"engine": {"extraArgs": ["--port", "9"]}}, "extraArgs", "--port"),
    ({"gpus": 2}, "device", "device CPU"),
    ({"backoffLimit": 11}, "backoffLimit", "less than or equal"),
])
def test_bad_specs_are_refused_naming_the_field(change, field, words):
    with pytest.raises(ValidationError) as refused:
        batch(**change)
    assert words in str(refused.value) and field in str(refused.value)


def test_a_name_too_long_for_its_job_is_refused():
    raw = copy.deepcopy(BATCH)
    raw["metadata"]["name"] = "b" * 58
    with pytest.raises(ValidationError, match="at most 57 characters"):
        LLMBatch.model_validate(raw)


def test_engine_flags_that_are_not_the_files_are_allowed():
    assert batch(engine={"extraArgs": ["--max-num-seqs", "4", "--enforce-eager"]})


# ---------------------------------------------------------------- render


def test_the_job_loads_the_model_as_serving_does_and_runs_the_batch_runner():
    job = job_of(batch())
    serving = next(o for o in render(llmd({"llm": {"model": MODEL, "device": "CPU"},
                                          "cache": {"existingClaim": "chat-cache"}}, "tag-docs"))
                   if o["kind"] == "Deployment")
    pod, served = job["spec"]["template"]["spec"], serving["spec"]["template"]["spec"]
    # Same downloader, same cache claim, same environment and security: a model a serving
    # LLMDeployment downloaded into chat-cache is found there, not fetched again.
    assert pod["initContainers"] == served["initContainers"]
    assert pod["volumes"][:3] == served["volumes"]
    runner = container(job)
    assert runner["env"] == container(serving)["env"]
    assert runner["securityContext"] == container(serving)["securityContext"]
    assert runner["command"] == ["llm-runtime", "batch"]
    assert runner["args"][:4] == ["--input", "/batch/input/requests.jsonl", "--output", "/batch/output/tag-docs/answers.jsonl"]
    # The same compile cache as the serving pods: what either compiled, the other reuses.
    served_args = container(serving)["args"]
    assert runner["args"][4:runner["args"].index("--")] == served_args[:served_args.index("--")]
    assert runner["volumeMounts"][:len(container(serving)["volumeMounts"])] == container(serving)["volumeMounts"]
    assert "startupProbe" not in runner and "ports" not in runner
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 2


def test_the_job_is_the_batch_s_own_and_no_llmdeployment_s():
    job = job_of(batch())
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels[BATCH_LABEL] == "tag-docs" and DEPLOYMENT_LABEL not in labels
    assert job["metadata"]["name"] == "tag-docs-batch"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("LLMBatch", "batch-uid", True)


def test_input_on_a_claim_is_mounted_read_only_and_output_writable():
    job = job_of(batch(input={"persistentVolumeClaim": {"claimName": "data", "path": "eval/set.jsonl"}}, backoffLimit=0))
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["batch-input"]["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    assert volumes["batch-output"]["persistentVolumeClaim"] == {"claimName": "results"}
    mounts = {m["name"]: m for m in container(job)["volumeMounts"]}
    assert mounts["batch-input"]["readOnly"] is True and "readOnly" not in mounts["batch-output"]
    assert container(job)["args"][1] == "/batch/input/eval/set.jsonl"
    assert job["spec"]["backoffLimit"] == 0


def test_without_a_cache_the_pod_downloads_into_its_own_volume():
    raw = copy.deepcopy(BATCH)
    del raw["spec"]["cache"]
    volumes = job_of(LLMBatch.model_validate(raw))["spec"]["template"]["spec"]["volumes"]
    assert volumes[0] == {"name": "model-cache", "emptyDir": {}}


def test_gpu_batches_request_gpus_and_tolerate_gpu_nodes():
    raw = copy.deepcopy(BATCH)
    del raw["spec"]["device"]
    raw["spec"]["gpus"] = 2
    job = job_of(LLMBatch.model_validate(raw))
    assert container(job)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        job["spec"]["template"]["spec"]["tolerations"]
    assert container(job)["args"][container(job)["args"].index("--tensor-parallel-size") + 1] == "2"


# ---------------------------------------------------------------- status


def pod(name, start, engine=None, init=None, conditions=None, phase="Running"):
    status = {"phase": phase, "startTime": start, "conditions": conditions or []}
    if engine is not None:
        status["containerStatuses"] = [{"name": "vllm", "state": engine}]
    if init is not None:
        status["initContainerStatuses"] = [{"name": "model-download", "state": init}]
    return {"metadata": {"name": name, "labels": {BATCH_LABEL: "tag-docs"}}, "status": status}


REPORT = {"total": 21, "succeeded": 20, "failed": 1, "malformed": [{"line": 7, "error": "not JSON: Expecting value"}]}


def test_pending_while_the_model_downloads():
    status = compute_batch_status(batch(), job(active=1), [pod("p1", "t1", init={"running": {}})])
    assert status["phase"] == "Pending"
    assert "Downloading the model" in status["conditions"][0]["message"]
    assert status["output"] == "pvc://results/tag-docs/answers.jsonl" and status["attempts"] == 1


def test_pending_says_why_no_node_takes_the_pod():
    unschedulable = [{"type": "PodScheduled", "status": "False", "message": "0/3 nodes: Insufficient nvidia.com/gpu."}]
    status = compute_batch_status(batch(), job(active=1), [pod("p1", None, conditions=unschedulable, phase="Pending")])
    assert "Insufficient nvidia.com/gpu" in status["conditions"][0]["message"]


def test_running_once_vllm_runs():
    status = compute_batch_status(batch(), job(active=1), [pod("p1", "t1", engine={"running": {}}, init={"terminated": {"exitCode": 0}})])
    assert status["phase"] == "Running"


def test_running_shows_the_progress_the_pod_last_logged():
    log = ("2026-12-06T03:00:00 INFO Batch progress: 2/22 requests done\n"
           "Running batch:  40%|####      | 8/20 [00:05<00:07]\n"
           "2026-12-06T03:00:05 INFO Batch progress: 10/22 requests done\n")
    assert progress_in(log) == (10, 22) and progress_in("vLLM is loading the model") is None
    running = [pod("p1", "t1", engine={"running": {}})]
    status = compute_batch_status(batch(), job(active=1), running, progress=progress_in(log))
    assert (status["phase"], status["completed"], status["total"]) == ("Running", 10, 22)
    assert "10 of 22 done" in status["conditions"][0]["message"]
    # A pod that is not running any more has no progress to show: its report or failure says it all.
    assert "completed" not in compute_batch_status(batch(), job(active=1), [pod("p1", "t1", init={"running": {}})],
                                                   progress=(10, 22))


def test_succeeded_with_the_runner_s_counts_and_malformed_lines():
    done = pod("p1", "t1", engine={"terminated": {"exitCode": 0, "message": json.dumps(REPORT)}}, phase="Succeeded")
    status = compute_batch_status(batch(), job([("Complete", "")], succeeded=1), [done])
    assert status["phase"] == "Succeeded"
    assert (status["total"], status["completed"], status["succeeded"], status["failed"]) == (21, 21, 20, 1)
    assert status["malformed"] == [{"line": 7, "error": "not JSON: Expecting value"}]
    assert "Answered 20 of 21 requests (1 failed)" in status["conditions"][0]["message"]
    assert batch_transitions({"phase": "Running"}, status)[0][:2] == ("Normal", "Completed")
    assert batch_transitions(status, status) == []


def test_succeeded_says_whether_the_engine_reused_compiled_files():
    line = "Compile cache Reused: 30 compiled files from /compile-cache/x, nothing compiled; healthy 20.0 s after start"
    done = pod("p1", "t1", engine={"terminated": {"exitCode": 0, "message": json.dumps({**REPORT, "compileCache": line})}},
               phase="Succeeded")
    status = compute_batch_status(batch(), job([("Complete", "")], succeeded=1), [done])
    assert status["compileCache"] == {"pod": "p1", "result": "Reused", "message": line.split(": ", 1)[1]}
    without = pod("p1", "t1", engine={"terminated": {"exitCode": 0, "message": json.dumps(REPORT)}}, phase="Succeeded")
    assert "compileCache" not in compute_batch_status(batch(), job([("Complete", "")], succeeded=1), [without])


def test_a_retry_says_why_the_last_attempt_failed():
    crashed = pod("p1", "t1", phase="Failed", engine={"terminated": {
        "exitCode": 1, "message": "Traceback ...\nValueError: Invalid request on line 3: body.messages: Field required\n"}})
    status = compute_batch_status(batch(), job(failed=1, active=1), [crashed, pod("p2", "t2", init={"running": {}})])
    assert status["phase"] == "Pending" and status["attempts"] == 2
    message = status["conditions"][0]["message"]
    assert "Attempt 2 of 3" in message and "ValueError: Invalid request on line 3" in message


def test_failed_after_the_retries_with_vllm_s_own_error():
    crashed = [pod(f"p{i}", f"t{i}", phase="Failed", engine={"terminated": {
        "exitCode": 1, "message": f"RuntimeError: Engine core initialization failed\nValueError: attempt {i} too small\n"}})
        for i in range(3)]
    status = compute_batch_status(batch(), job([("Failed", "Job has reached the specified backoff limit")], failed=3), crashed)
    assert status["phase"] == "Failed" and status["attempts"] == 3
    message = next(c for c in status["conditions"] if c["type"] == "Failed")["message"]
    assert "after 3 attempts" in message and "ValueError: attempt 2 too small" in message
    assert batch_transitions({"phase": "Running"}, status)[0][:2] == ("Warning", "Failed")


def test_a_download_failure_is_reported_as_such():
    failed = pod("p1", "t1", phase="Failed", init={"terminated": {"exitCode": 3, "message": "model not found on ModelScope"}})
    status = compute_batch_status(batch(backoffLimit=0), job([("Failed", "")], failed=1), [failed])
    assert "the model download failed (exit code 3): model not found on ModelScope" in status["conditions"][1]["message"]


def test_a_job_that_cannot_be_made_is_failed_with_the_reason():
    status = compute_batch_status(batch(), None, [], problem="Job tag-docs-batch already exists and it was not created by this LLMBatch.")
    assert status["phase"] == "Failed" and status["conditions"][1]["reason"] == "JobNotCreated"


# ---------------------------------------------------------------- reconcile


class BatchKube(MemoryKube):
    """MemoryKube with one LLMBatch, its Job's pods and their logs, and the log reads counted."""

    def __init__(self):
        super().__init__(None)
        self.batch = copy.deepcopy(BATCH)
        self.logs: dict[str, str] = {}
        self.log_reads = 0

    def get_llmbatch(self, namespace, name):
        return copy.deepcopy(self.batch)

    def get_job(self, namespace, name):
        return self.get_child("Job", namespace, name)

    def list_labelled_pods(self, namespace, label, value):
        assert label == BATCH_LABEL
        return copy.deepcopy(self.pods)

    def read_log_tail(self, namespace, pod, container, lines):
        self.log_reads += 1
        return self.logs.get(pod, "")

    def apply_status(self, namespace, name, status, kind="LLMDeployment"):
        assert kind == "LLMBatch"
        self.batch["status"] = status


def reconcile_once(kube):
    return reconcile_batch(kube, RenderConfig(), "ns", "tag-docs")


def test_the_job_is_created_once_and_its_progress_read_only_while_it_runs():
    kube = BatchKube()
    result = reconcile_once(kube)
    assert kube.applied == [("Job", "tag-docs-batch")] and result.phase == "Pending" and result.requeue_after is None
    assert reconcile_once(kube).writes == 0 and kube.applied == [("Job", "tag-docs-batch")] and kube.log_reads == 0
    kube.pods = [pod("tag-docs-batch-x", "t1", engine={"running": {}})]
    kube.logs["tag-docs-batch-x"] = "INFO Batch progress: 5/20 requests done\n"
    result = reconcile_once(kube)
    assert (kube.batch["status"]["phase"], kube.batch["status"]["completed"]) == ("Running", 5)
    assert result.requeue_after == PROGRESS_SECONDS and kube.log_reads == 1
    kube.pods = [pod("tag-docs-batch-x", "t1", phase="Succeeded",
                     engine={"terminated": {"exitCode": 0, "message": json.dumps(REPORT)}})]
    kube.objects[("Job", "tag-docs-batch")]["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    result = reconcile_once(kube)
    assert result.phase == "Succeeded" and result.requeue_after is None and kube.log_reads == 1
    assert kube.events == ["Completed"]
    assert reconcile_once(kube).writes == 0  # finished: nothing more to say


def test_an_operator_not_allowed_to_read_logs_shows_the_counts_when_the_batch_ends():
    kube = BatchKube()
    kube.reads_pod_logs = False
    reconcile_once(kube)
    kube.pods = [pod("tag-docs-batch-x", "t1", engine={"running": {}})]
    kube.logs["tag-docs-batch-x"] = "INFO Batch progress: 5/20 requests done\n"
    result = reconcile_once(kube)
    assert kube.batch["status"]["phase"] == "Running" and "completed" not in kube.batch["status"]
    assert kube.log_reads == 0 and result.requeue_after is None  # its pod's changes queue it again
    kube.pods = [pod("tag-docs-batch-x", "t1", phase="Succeeded",
                     engine={"terminated": {"exitCode": 0, "message": json.dumps(REPORT)}})]
    kube.objects[("Job", "tag-docs-batch")]["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    reconcile_once(kube)
    assert (kube.batch["status"]["completed"], kube.batch["status"]["succeeded"]) == (21, 20) and kube.log_reads == 0


def test_a_job_of_that_name_made_by_someone_else_is_never_taken_over():
    kube = BatchKube()
    kube.objects[("Job", "tag-docs-batch")] = {"kind": "Job", "metadata": {"name": "tag-docs-batch"}}
    result = reconcile_once(kube)
    assert kube.applied == [] and result.phase == "Failed" and result.requeue_after
    assert "not created by this LLMBatch" in kube.batch["status"]["conditions"][1]["message"]


def test_a_refused_job_is_reported_and_retried_later():
    kube = BatchKube()
    kube.refuse.add("Job")
    result = reconcile_once(kube)
    assert result.phase == "Failed" and result.requeue_after
    assert "The Job was refused: Job tag-docs-batch: refused" in kube.batch["status"]["conditions"][1]["message"]


def finish(kube, report=REPORT):
    kube.pods = [pod("tag-docs-batch-x", "t1", phase="Succeeded",
                     engine={"terminated": {"exitCode": 0, "message": json.dumps(report)}})]
    kube.objects[("Job", "tag-docs-batch")]["status"] = {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
    assert reconcile_once(kube).phase == "Succeeded"


def test_a_finished_batch_whose_job_and_pods_are_deleted_keeps_its_status_and_is_not_run_again():
    kube = BatchKube()
    reconcile_once(kube)
    finish(kube)
    kept = copy.deepcopy(kube.batch["status"])
    kube.pods = []  # the pod garbage-collected: its termination message held the counts
    assert reconcile_once(kube).writes == 0 and kube.batch["status"] == kept
    del kube.objects[("Job", "tag-docs-batch")]  # a TTL, a policy engine, or a user's cleanup
    result = reconcile_once(kube)
    assert kube.applied == [("Job", "tag-docs-batch")], "the batch ran again, overwriting its answers"
    assert result.phase == "Succeeded" and result.writes == 0 and kube.batch["status"] == kept
    assert (kept["succeeded"], kept["malformed"][0]["line"]) == (20, 7)


def test_a_failed_batch_keeps_vllm_s_error_once_its_pods_are_gone():
    kube = BatchKube()
    reconcile_once(kube)
    kube.pods = [pod("tag-docs-batch-x", "t1", phase="Failed",
                     engine={"terminated": {"exitCode": 1, "message": "ValueError: max_model_len is too large"}})]
    kube.objects[("Job", "tag-docs-batch")]["status"] = {"failed": 1, "conditions": [
        {"type": "Failed", "status": "True", "message": "Job has reached the specified backoff limit"}]}
    assert reconcile_once(kube).phase == "Failed"
    kube.pods = []
    reconcile_once(kube)
    assert "max_model_len is too large" in kube.batch["status"]["conditions"][1]["message"]


def test_deleting_the_job_of_a_running_batch_cancels_it_and_keeps_its_progress():
    kube = BatchKube()
    reconcile_once(kube)
    kube.pods = [pod("tag-docs-batch-x", "t1", engine={"running": {}})]
    kube.logs["tag-docs-batch-x"] = "INFO Batch progress: 5/20 requests done\n"
    reconcile_once(kube)
    del kube.objects[("Job", "tag-docs-batch")]
    kube.pods = []
    result = reconcile_once(kube)
    assert kube.applied == [("Job", "tag-docs-batch")], "the batch ran again"
    status = kube.batch["status"]
    assert result.phase == "Failed" and result.requeue_after is None and status["completed"] == 5
    assert status["conditions"][1]["reason"] == "JobDeleted" and "was deleted" in status["conditions"][1]["message"]
    assert kube.events[-1] == "Failed"
    assert reconcile_once(kube).writes == 0 and kube.applied == [("Job", "tag-docs-batch")]


def test_a_job_that_was_never_created_is_created_once_the_refusal_ends():
    kube = BatchKube()
    kube.refuse.add("Job")
    assert reconcile_once(kube).phase == "Failed"
    kube.refuse.discard("Job")
    assert reconcile_once(kube).phase == "Pending" and kube.applied == [("Job", "tag-docs-batch")]


def test_a_batch_finished_under_an_older_operator_gains_the_gitops_conditions_once():
    kube = BatchKube()
    kube.batch["status"] = {"phase": "Succeeded", "attempts": 1, "total": 3, "conditions": [
        {"type": "Complete", "status": "True", "reason": "Completed", "message": "Answered 3 of 3 requests."},
        {"type": "Failed", "status": "False", "reason": "Completed", "message": "Answered 3 of 3 requests."}]}
    assert reconcile_once(kube).writes == 1 and kube.applied == []
    conditions = {c["type"]: c["status"] for c in kube.batch["status"]["conditions"]}
    assert conditions == {"Complete": "True", "Failed": "False", "Ready": "True", "Stalled": "False"}
    assert kube.batch["status"]["total"] == 3 and kube.events == []
    assert reconcile_once(kube).writes == 0
