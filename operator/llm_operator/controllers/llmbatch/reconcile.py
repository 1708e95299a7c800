"""One idempotent reconcile of one LLMBatch: create its Job once, then report what the Job and its
pods show, and while it runs, the progress its pod logs. The Job is never updated: its pod template
is immutable, and so is the batch's spec (CEL refuses a change), so a Job that differs from today's
render can only come from an older operator, and it runs to its end as it was made. A batch runs
once: its Job is never created again, and a finished batch's status is never rewritten."""

from __future__ import annotations

import logging

from ...api.llmbatch import BATCH_KIND, LLMBatch
from ...api.validation import InvalidSpec, parse
from ...k8s import ApplyRejected, Kube
from ...names import BATCH_LABEL, ENGINE_CONTAINER
from ...render import RenderConfig
from ...render.batch import job_name, render_batch
from ..shared import FAILED_RETRY_SECONDS, Result, name_conflict, write_status
from .status import (
    batch_transitions,
    cancelled_status,
    compute_batch_status,
    finished,
    invalid_batch_status,
    progress_in,
    ran,
    running_pod,
    with_gitops_conditions,
)

log = logging.getLogger("llm_operator.reconcile")

# How often a running batch's progress is read from its pod's log (one GET of its last lines).
PROGRESS_SECONDS = 10.0
LOG_LINES = 50


def reconcile_batch(kube: Kube, config: RenderConfig, namespace: str, name: str) -> Result:
    raw = kube.get_llmbatch(namespace, name)
    if raw is None or raw["metadata"].get("deletionTimestamp"):
        return Result(None, 0)  # the owner reference makes the garbage collector delete the Job and its pods
    try:
        batch = parse(LLMBatch, raw)
    except InvalidSpec as error:
        status = invalid_batch_status(raw["metadata"].get("generation"), error.errors)
        return write_status(kube, raw, status, 0, BATCH_KIND, batch_transitions)
    previous = raw.get("status")
    if finished(previous):  # kept as observed; an older operator's status gains the GitOps conditions
        return write_status(kube, raw, with_gitops_conditions(previous), 0, BATCH_KIND, batch_transitions)
    writes, problem = 0, None
    job = kube.get_job(namespace, job_name(name))  # from the API server when the cache has none
    if job is None and ran(previous):
        log.info("Cancelled LLMBatch %s/%s: its Job was deleted before it finished", namespace, name)
        return write_status(kube, raw, cancelled_status(batch, previous), 0, BATCH_KIND, batch_transitions)
    if job is None:
        try:
            job = kube.apply(render_batch(batch, config)[0])
            writes += 1
            log.info("Created Job %s/%s for LLMBatch %s", namespace, job_name(name), name)
        except ApplyRejected as error:
            problem = f"The Job was refused: {error}"
    else:
        desired = render_batch(batch, config)[0]
        problem = name_conflict(desired, job, batch.metadata.uid)
        if problem:
            job = None
    pods = kube.list_labelled_pods(namespace, BATCH_LABEL, name) if job else []
    # Progress is only in the running pod's log: read its end, and look again in PROGRESS_SECONDS.
    # An operator that may not read logs shows the counts when the pod ends (its termination message).
    runner = running_pod(pods) if kube.reads_pod_logs else None
    progress = progress_in(kube.read_log_tail(namespace, runner["metadata"]["name"], ENGINE_CONTAINER, LOG_LINES)) \
        if runner else None
    status = compute_batch_status(batch, job, pods, problem, progress)
    result = write_status(kube, raw, status, writes, BATCH_KIND, batch_transitions)
    if problem:
        return Result(result.phase, result.writes, FAILED_RETRY_SECONDS)
    return Result(result.phase, result.writes, PROGRESS_SECONDS if runner else None)
