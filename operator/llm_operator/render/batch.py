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
from ..names import BATCH_LABEL, ENGINE_CONTAINER, MANAGED_BY, MANAGED_BY_LABEL
from . import vllm
from .config import RenderConfig
from .meta import finished, object_meta
from .plan import RolePlan, Workload, plan_role
from .pod import compile_cache_args, container_security, engine_mounts, image_fields, pod_spec

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


def batch_workload(batch: LLMBatch) -> Workload:
    """A batch downloads into an existing claim or into its pod's emptyDir, and has no API key."""
    spec = batch.spec
    return Workload(
        owner=batch.metadata.name,
        namespace=batch.metadata.namespace,
        image=spec.image,
        image_pull_policy=spec.imagePullPolicy,
        credentials_secret=spec.credentialsSecretRef.name if spec.credentialsSecretRef else None,
        weights_claim=spec.cache.existingClaim if spec.cache else None,
        compile_cache=spec.cache is None or spec.cache.compileCache is not False,
        api_key=None,
    )


def batch_plan(batch: LLMBatch, config: RenderConfig) -> RolePlan:
    """The batch planned as an `llm` role, so that image, loaders, cache volume, environment and
    parallelism are decided exactly as for serving."""
    return plan_role(batch_workload(batch), "llm", batch.spec, config)


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
    container = {"name": ENGINE_CONTAINER, **image_fields(plan)}
    container.update({
        "command": ["llm-runtime", "batch"],
        "args": ["--input", input_path(batch), "--output", output_path(batch), *compile_cache_args(plan),
                 "--", *vllm.run_batch_args(plan)],
        "env": plan.env,
        "resources": plan.resources,
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
    return finished([batch_job(batch, config or RenderConfig())], BATCH_KIND, batch.metadata)
