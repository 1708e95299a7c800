"""An LLMBatch's status, computed from its Job and the Job's pods: a pure function, like the other kinds'.

The counts come from the finished pod's termination message, which `llm-runtime batch` writes as one
JSON object (runtime/llm_runtime/batch.py). A pod that failed has its log's end as its termination
message instead (`FallbackToLogsOnError`), which is where vLLM says why it stopped.
"""

from __future__ import annotations

import json
from typing import Any, TypeGuard

from llm_runtime.contract import BATCH_PROGRESS_PATTERN, COMPILE_CACHE_PATTERN

from ...api.llmbatch import LLMBatch
from ...names import ENGINE_CONTAINER, LOADER_CONTAINERS
from ...render.batch import DEFAULT_BACKOFF_LIMIT, job_name, output_location
from ..shared import READY, container_statuses, last_log_line, short_message

COMPLETE, FAILED = "Complete", "Failed"
STALLED = "Stalled"


def _terminated(pod: dict[str, Any], key: str, names: tuple[str, ...]) -> dict[str, Any] | None:
    for status in container_statuses(pod, key):
        if status.get("name") in names and "terminated" in (status.get("state") or {}):
            return status["state"]["terminated"]
    return None


def batch_report(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The counts a pod's runner reported on success, or None."""
    terminated = _terminated(pod, "containerStatuses", (ENGINE_CONTAINER,))
    if not terminated or terminated.get("exitCode") != 0:
        return None
    try:
        report = json.loads(terminated.get("message") or "")
    except ValueError:
        return None
    return report if isinstance(report, dict) and isinstance(report.get("total"), int) else None


def pod_failure(pod: dict[str, Any]) -> str | None:
    """Why a pod of the batch failed, in the words of what failed (the downloader, vLLM, the kubelet)."""
    loader = _terminated(pod, "initContainerStatuses", LOADER_CONTAINERS)
    if loader and loader.get("exitCode", 0) != 0:
        return f"the model download failed (exit code {loader.get('exitCode')}): {(loader.get('message') or '').strip()}"
    engine = _terminated(pod, "containerStatuses", (ENGINE_CONTAINER,))
    if engine and engine.get("exitCode", 0) != 0:
        detail = last_log_line(engine.get("message") or "") or engine.get("reason", "")
        return f"vllm run-batch exited with code {engine.get('exitCode')}: {detail}"
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return f"{status.get('reason', 'the pod failed')}: {status.get('message', '')}".strip(": ")
    return None


def _waiting_for(pod: dict[str, Any] | None) -> str:
    """What a pod that does not run vLLM yet waits for."""
    if pod is None:
        return "Waiting for the Job controller to create the pod."
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return f"Waiting for a node: {condition.get('message', '')}"
    for status in container_statuses(pod, "initContainerStatuses") + container_statuses(pod, "containerStatuses"):
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"):
            return f"The pod cannot start: {waiting.get('message', waiting['reason'])}"
    for status in container_statuses(pod, "initContainerStatuses"):
        if "running" in (status.get("state") or {}):
            return "Downloading the model."
    return "Starting vLLM."


def _running(pod: dict[str, Any]) -> bool:
    return any(s.get("name") == ENGINE_CONTAINER and "running" in (s.get("state") or {})
               for s in container_statuses(pod, "containerStatuses"))


def running_pod(pods: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The pod whose runner is answering requests now, if any (a Job runs one at a time)."""
    return next((pod for pod in pods if _running(pod)), None)


def progress_in(log_tail: str) -> tuple[int, int] | None:
    """(done, total) from the last progress line the runner logged, or None before the first."""
    found = BATCH_PROGRESS_PATTERN.findall(log_tail)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def _condition(kind: str, true: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    return {"type": kind, "status": "True" if true else "False", "reason": reason,
            "message": short_message(message), "observedGeneration": generation}


def _conditions(phase: str, reason: str, message: str, generation: int | None) -> list[dict[str, Any]]:
    """Complete and Failed, as a Job has them; Ready and Stalled, as GitOps tools read any resource
    (Flux's kstatus, the Argo CD health check in docs/gitops.md): Ready once the batch succeeded,
    Stalled once it failed, neither while it waits or runs."""
    truth = {COMPLETE: phase == "Succeeded", FAILED: phase == "Failed",
             READY: phase == "Succeeded", STALLED: phase == "Failed"}
    return [_condition(kind, true, reason, message, generation) for kind, true in truth.items()]


def compute_batch_status(batch: LLMBatch, job: dict[str, Any] | None, pods: list[dict[str, Any]],
                         problem: str | None = None, progress: tuple[int, int] | None = None) -> dict[str, Any]:
    """`problem`: why the Job could not be created (refused, or a name held by another object).
    `progress`: (done, total) as the running pod last logged it."""
    generation = batch.metadata.generation
    status: dict[str, Any] = {"observedGeneration": generation, "job": job_name(batch.metadata.name),
                              "output": output_location(batch)}
    if problem:
        status["phase"] = "Failed"
        status["conditions"] = _conditions("Failed", "JobNotCreated", problem, generation)
        return status
    job_status = (job or {}).get("status") or {}
    finished = {c.get("type") for c in job_status.get("conditions") or [] if c.get("status") == "True"}
    failed_pods = job_status.get("failed", 0)
    status["attempts"] = failed_pods + job_status.get("succeeded", 0) + job_status.get("active", 0)
    by_start = sorted(pods, key=lambda p: ((p.get("status") or {}).get("startTime") or "", p["metadata"]["name"]))
    reporter, report = next(((p, r) for p in reversed(by_start) if (r := batch_report(p))), (None, None))
    last_failure = next((f for f in map(pod_failure, reversed(by_start)) if f), None)
    if report and reporter:
        status.update(total=report["total"], completed=report["total"], succeeded=report.get("succeeded", 0),
                      failed=report.get("failed", 0))
        found = COMPILE_CACHE_PATTERN.fullmatch(str(report.get("compileCache") or ""))
        if found:
            status["compileCache"] = {"pod": reporter["metadata"]["name"], "result": found[1], "message": found[2]}
        if report.get("malformed"):
            status["malformed"] = [{"line": m["line"], "error": str(m["error"])} for m in report["malformed"]
                                   if isinstance(m, dict) and isinstance(m.get("line"), int)]
    if COMPLETE in finished:
        status["phase"] = "Succeeded"
        message = (f"Answered {status['succeeded']} of {status['total']} requests ({status['failed']} failed); "
                   f"the answers are at {status['output']}." if report else
                   f"The Job completed, but its pod is gone: the counts are unknown. The answers are at {status['output']}.")
        status["conditions"] = _conditions("Succeeded", "Completed", message, generation)
    elif FAILED in finished:
        status["phase"] = "Failed"
        why = last_failure or next((c.get("message", "") for c in job_status.get("conditions") or []
                                    if c.get("type") == FAILED), "")
        message = f"The batch failed after {status['attempts']} attempts: {why}"
        status["conditions"] = _conditions("Failed", "Failed", message, generation)
    else:
        running = running_pod(by_start) is not None
        status["phase"] = "Running" if running else "Pending"
        message = "vllm run-batch is answering the requests." if running else _waiting_for(by_start[-1] if by_start else None)
        if running and progress:
            status["completed"], status["total"] = progress
            message = f"vllm run-batch is answering the requests: {progress[0]} of {progress[1]} done."
        if failed_pods:
            limit = DEFAULT_BACKOFF_LIMIT if batch.spec.backoffLimit is None else batch.spec.backoffLimit
            message += f" Attempt {failed_pods + 1} of {limit + 1}; the last one failed: {last_failure or 'see the Job'}"
        status["conditions"] = _conditions(status["phase"], status["phase"], message, generation)
    return status


def ran(previous: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether an earlier reconcile saw the batch's Job: `attempts` is written only then."""
    return (previous or {}).get("attempts") is not None


def finished(previous: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """A batch runs once: after its Job ended, what was observed then is its status for good, even
    once the Job's pods (which held the counts and vLLM's error) or the Job itself are deleted."""
    return ran(previous) and (previous or {}).get("phase") in ("Succeeded", "Failed")


def with_gitops_conditions(previous: dict[str, Any]) -> dict[str, Any]:
    """A finished status written before Ready and Stalled existed, with them added (from its Complete
    condition), so that GitOps tools see the batch's health; any other status as it is."""
    conditions = previous.get("conditions") or []
    complete = next((c for c in conditions if c.get("type") == COMPLETE), None)
    if complete is None or {READY, STALLED} <= {c.get("type") for c in conditions}:
        return previous
    return {**previous, "conditions": _conditions(previous["phase"], complete.get("reason", previous["phase"]),
                                                  complete.get("message", ""), complete.get("observedGeneration"))}


def cancelled_status(batch: LLMBatch, previous: dict[str, Any]) -> dict[str, Any]:
    """A batch whose Job was deleted before it finished: that is how a user cancels one. The batch is
    not run again (that would overwrite its output); what was observed so far is kept."""
    generation = batch.metadata.generation
    message = (f"The Job {job_name(batch.metadata.name)} was deleted before the batch finished, so the batch "
               f"is cancelled; answers written so far are at {output_location(batch)}. To run it again, "
               "delete this LLMBatch and create it anew.")
    return {**previous, "observedGeneration": generation, "phase": "Failed",
            "conditions": _conditions("Failed", "JobDeleted", message, generation)}


def invalid_batch_status(generation: int | None, errors: list[str]) -> dict[str, Any]:
    """A batch the API server accepted but the operator cannot run (an older CRD, a newer operator)."""
    message = "The spec cannot be run: " + "; ".join(errors)
    return {"observedGeneration": generation, "phase": "Failed",
            "conditions": _conditions("Failed", "InvalidSpec", message, generation)}


def batch_transitions(old: dict[str, Any] | None, new: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Events: the batch finished, one way or the other."""
    if (old or {}).get("phase") == new.get("phase") or new.get("phase") not in ("Succeeded", "Failed"):
        return []
    message = next(c["message"] for c in new["conditions"] if c["type"] == COMPLETE)
    return [("Normal", "Completed", message)] if new["phase"] == "Succeeded" else [("Warning", "Failed", message)]
