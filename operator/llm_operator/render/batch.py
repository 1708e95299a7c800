"""An LLMBatch's Job: the same loader init containers, cache volume, environment and resources as a
role's pod (pod.py), with `llm-runtime batch` in place of `vllm serve`, the input and output files
mounted, and no Service, probe or port.

`llm-runtime batch` (runtime/llm_runtime/batch.py) sets malformed input lines aside by line number,
runs `vllm run-batch` over the rest, writes the answers in input order and reports its counts as the
container's termination message, which status reads (controllers/llmbatch/status.py).
"""

from __future__ import annotations

from typing import Any

from ..api.llmbatch import BATCH_KIND, LLMBatch
from ..api.llmdeployment import KIND, CacheSpec, LLMDeployment, LLMDeploymentSpec, LLMRoleSpec
from ..api.meta import API_VERSION
from ..api.workload import WorkerSpec
from ..names import BATCH_LABEL, ENGINE_CONTAINER, HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL
from . import vllm
from .config import RenderConfig
from .meta import content_hash, object_meta
from .plan import RolePlan, plan_role
from .pod import compile_cache_args, container_security, engine_env, engine_mounts, engine_resources, pod_spec

INPUT_VOLUME = "batch-input"
OUTPUT_VOLUME = "batch-output"
INPUT_MOUNT_PATH = "/batch/input"
OUTPUT_MOUNT_PATH = "/batch/output"
CONFIGMAP_INPUT_FILE = "requests.jsonl"
DEFAULT_BACKOFF_LIMIT = 2


def job_name(batch_name: str) -> str:
    return f"{batch_name}-batch"


def batch_labels(batch_name: str) -> dict[str, str]:
    """On the Job and its pods. Not the LLMDeployment labels: an LLMDeployment of the same name must
    not count the batch's pods as its own."""
    return {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": batch_name,
        "app.kubernetes.io/component": "batch",
        MANAGED_BY_LABEL: MANAGED_BY,
        "app.kubernetes.io/part-of": "llm-operator",
        BATCH_LABEL: batch_name,
    }


def batch_plan(batch: LLMBatch, config: RenderConfig) -> RolePlan:
    """The batch as the one `llm` role of an LLMDeployment, so that image, loaders, cache volume and
    parallelism are decided exactly as for serving. The stand-in is never validated as an
    LLMDeployment (a batch's name may be longer than an LLMDeployment's)."""
    spec = batch.spec
    role = LLMRoleSpec(model=spec.model, engine=spec.engine,
                       **{field: getattr(spec, field) for field in WorkerSpec.model_fields})
    serving = LLMDeploymentSpec(
        llm=role, image=spec.image, imagePullPolicy=spec.imagePullPolicy, credentialsSecretRef=spec.credentialsSecretRef,
        cache=CacheSpec(existingClaim=spec.cache.existingClaim, compileCache=spec.cache.compileCache) if spec.cache else None)
    stand_in = LLMDeployment.model_construct(apiVersion=API_VERSION, kind=KIND,  # type: ignore[arg-type]  # as str
                                             metadata=batch.metadata, spec=serving, status=None)
    return plan_role(stand_in, "llm", role, config)


def input_path(batch: LLMBatch) -> str:
    claim_file = batch.spec.input.persistentVolumeClaim
    return f"{INPUT_MOUNT_PATH}/{claim_file.path if claim_file else CONFIGMAP_INPUT_FILE}"


def output_path(batch: LLMBatch) -> str:
    return f"{OUTPUT_MOUNT_PATH}/{batch.spec.output.persistentVolumeClaim.path}"


def output_location(batch: LLMBatch) -> str:
    """Where status says the answers are."""
    claim_file = batch.spec.output.persistentVolumeClaim
    return f"pvc://{claim_file.claimName}/{claim_file.path}"


def input_volume(batch: LLMBatch) -> dict[str, Any]:
    source = batch.spec.input
    if source.configMap:
        return {"name": INPUT_VOLUME, "configMap": {
            "name": source.configMap.name, "items": [{"key": source.configMap.key, "path": CONFIGMAP_INPUT_FILE}]}}
    claim_file = source.persistentVolumeClaim
    assert claim_file is not None, "BatchInput's rule: a configMap or a persistentVolumeClaim"
    return {"name": INPUT_VOLUME, "persistentVolumeClaim": {"claimName": claim_file.claimName, "readOnly": True}}


def output_volume(batch: LLMBatch) -> dict[str, Any]:
    return {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": batch.spec.output.persistentVolumeClaim.claimName}}


def batch_container(plan: RolePlan, batch: LLMBatch) -> dict[str, Any]:
    container: dict[str, Any] = {"name": ENGINE_CONTAINER, "image": plan.image}
    if batch.spec.imagePullPolicy:
        container["imagePullPolicy"] = batch.spec.imagePullPolicy
    container.update({
        "command": ["llm-runtime", "batch"],
        "args": ["--input", input_path(batch), "--output", output_path(batch), *compile_cache_args(plan),
                 "--", *vllm.run_batch_args(plan)],
        "env": engine_env(plan),
        "resources": engine_resources(plan),
        "securityContext": container_security(),
        # The runner's summary (counts, malformed lines) is the termination message; when vLLM fails
        # before writing one, its last log lines are, and status quotes them.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            *engine_mounts(plan),
            {"name": INPUT_VOLUME, "mountPath": INPUT_MOUNT_PATH, "readOnly": True},
            {"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT_PATH},
        ],
    })
    return container


def batch_job(batch: LLMBatch, config: RenderConfig) -> dict[str, Any]:
    plan = batch_plan(batch, config)
    labels = batch_labels(batch.metadata.name)
    pod = pod_spec(plan)
    pod["restartPolicy"] = "Never"  # a failed pod is replaced by the Job (backoffLimit), never restarted in place
    pod["containers"] = [batch_container(plan, batch)]
    pod["volumes"] = pod["volumes"] + [input_volume(batch), output_volume(batch)]
    backoff = DEFAULT_BACKOFF_LIMIT if batch.spec.backoffLimit is None else batch.spec.backoffLimit
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": object_meta(job_name(batch.metadata.name), batch.metadata.namespace, labels),
        "spec": {"backoffLimit": backoff, "template": {"metadata": {"labels": dict(labels)}, "spec": pod}},
    }


def render_batch(batch: LLMBatch, config: RenderConfig | None = None) -> list[dict[str, Any]]:
    """The one object an LLMBatch needs, owned by it (deleting the batch deletes the Job and its pods;
    the output file stays on its claim)."""
    job = batch_job(batch, config or RenderConfig())
    if batch.metadata.uid:
        job["metadata"]["ownerReferences"] = [{
            "apiVersion": API_VERSION, "kind": BATCH_KIND, "name": batch.metadata.name, "uid": batch.metadata.uid,
            "controller": True, "blockOwnerDeletion": True}]
    job["metadata"]["annotations"] = {HASH_ANNOTATION: content_hash(job)}
    return [job]
