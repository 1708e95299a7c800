"""The LLMBatch API (llmops.dev/v1alpha1): run one model once over a file of requests in OpenAI's
batch format, as a Kubernetes Job running `vllm run-batch`, and write the answers to a volume.

It sizes its pod like an LLMDeployment's role (WorkerSpec) and loads the model the same way (the
same init containers, and the same cache claim when `cache.existingClaim` names it). A batch runs
once: its spec cannot change after creation; create another LLMBatch to run again.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .meta import Condition, ObjectMeta, SecretReference, service_name_rules
from .rules import Rule, SpecModel, is_set
from .types import ObjectName
from .workload import (
    COMPILE_CACHE_DESCRIPTION,
    CompileCacheStatus,
    GenerativeEngineSpec,
    ModelSpec,
    WorkerSpec,
    reserved_flag,
    reserved_flag_cel,
)

BATCH_KIND = "LLMBatch"
BATCH_PLURAL = "llmbatches"
BATCH_SINGULAR = "llmbatch"
BATCH_SHORT_NAMES = ["llmb"]

# The Job is named "<name>-batch", and Kubernetes copies a Job's name into a label of its pods (<= 63).
MAX_BATCH_NAME_LENGTH = 63 - len("-batch")

# `vllm run-batch`'s own file flags: the operator sets them from spec.input and spec.output (the
# serving flags of RESERVED_FLAGS are refused by the engine's own rule).
RESERVED_BATCH_FLAGS = ("--input-file", "--output-file", "--output-tmp-dir")
RESERVED_BATCH_SHORT_FLAGS = ("-i", "-o")

# A relative path inside a volume: no leading '/', no '..' segment, no empty segment.
RELATIVE_PATH = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


def _names_a_file(path: str) -> bool:
    return not {".", ".."} & set(path.split("/"))


class ClaimFile(SpecModel):
    """A file on a PersistentVolumeClaim of the batch's namespace."""

    claimName: ObjectName = Field(description="The PersistentVolumeClaim.")
    path: str = Field(pattern=RELATIVE_PATH, max_length=1024, description="The file's path inside the claim, relative to its root.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("!self.path.split('/').exists(s, s == '..' || s == '.')",
             "path must name a file inside the claim: no '..' or '.' segment",
             lambda f: _names_a_file(f.path), ".path"),
    )


class ConfigMapFile(SpecModel):
    """A key of a ConfigMap of the batch's namespace (at most 1 MiB, the ConfigMap's own limit)."""

    name: ObjectName = Field(description="ConfigMap name.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key in the ConfigMap.")


class BatchInput(SpecModel):
    """The requests: one JSON object per line, in OpenAI's batch format
    (`{"custom_id": ..., "method": "POST", "url": "/v1/chat/completions", "body": {...}}`)."""

    configMap: ConfigMapFile | None = Field(None, description="A ConfigMap key holding the file.")
    persistentVolumeClaim: ClaimFile | None = Field(None, description="A file on a claim (mounted read-only).")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("has(self.configMap) != has(self.persistentVolumeClaim)",
             "set exactly one of input.configMap and input.persistentVolumeClaim",
             lambda i: is_set(i.configMap) != is_set(i.persistentVolumeClaim)),
    )


class BatchOutput(SpecModel):
    """Where the answers go: one line per request, in OpenAI's batch output format."""

    persistentVolumeClaim: ClaimFile = Field(
        description="The file to write on a claim. An existing file is replaced when the batch finishes.")


class BatchCacheSpec(SpecModel):
    """The weights cache to use: name an LLMDeployment's claim (`<name>-cache`) to reuse what it downloaded."""

    existingClaim: ObjectName = Field(description="An existing PersistentVolumeClaim holding (or to hold) the weights.")
    compileCache: bool | None = Field(None, description=COMPILE_CACHE_DESCRIPTION)


class LLMBatchSpec(WorkerSpec):
    """The model, the input and output files, and the pod that runs them."""

    model: ModelSpec = Field(description="The model to run (servedName is what the requests' `model` must name).")
    engine: GenerativeEngineSpec | None = Field(None, description="vLLM engine settings.")
    input: BatchInput = Field(description="The requests file.")
    output: BatchOutput = Field(description="The answers file.")
    image: str | None = Field(
        None, min_length=1, max_length=512,
        description="Runtime image. Default: the operator's GPU or CPU runtime image, as for an LLMDeployment.")
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="Pull policy of the runtime image.")
    cache: BatchCacheSpec | None = Field(
        None, description="The weights cache. Default: the pod downloads into a volume of its own, deleted with it.")
    credentialsSecretRef: SecretReference | None = Field(
        None, description="Secret with hub tokens (MODELSCOPE_API_TOKEN, HF_TOKEN) for private models; only the download reads it.")
    backoffLimit: int | None = Field(
        None, ge=0, le=10, description="How many times a failed pod is retried before the batch is Failed. Default 2.")

    RULES: ClassVar[tuple[Rule, ...]] = WorkerSpec.RULES + (
        Rule(
            "!has(self.engine) || !has(self.engine.extraArgs) || self.engine.extraArgs.all(a, !"
            + reserved_flag_cel(RESERVED_BATCH_FLAGS, RESERVED_BATCH_SHORT_FLAGS) + ")",
            "engine.extraArgs of an LLMBatch may not set " + ", ".join(RESERVED_BATCH_FLAGS + RESERVED_BATCH_SHORT_FLAGS)
            + " (nor their prefixes or '_' spellings): the files are spec.input and spec.output",
            lambda s: not any(reserved_flag(arg, RESERVED_BATCH_FLAGS, RESERVED_BATCH_SHORT_FLAGS)
                              for arg in (s.engine.extraArgs if s.engine else None) or ()),
            ".engine.extraArgs",
        ),
        # A Job's pod template cannot change; running half a file with one model and half with another
        # would give answers nobody can attribute.
        Rule("self == oldSelf", "an LLMBatch runs once and its spec cannot change: create another LLMBatch",
             lambda _: True),
    )


class MalformedLine(BaseModel):
    """An input line that is not a valid request: it got no answer."""

    model_config = ConfigDict(extra="forbid")

    line: int = Field(description="Line number in the input file, from 1.")
    error: str = Field(description="What is wrong with it.")


class LLMBatchStatus(BaseModel):
    """What the operator observed. Written only by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(None, description="The metadata.generation last reconciled.")
    phase: Literal["Pending", "Running", "Succeeded", "Failed"] | None = Field(
        None, description="Pending (downloading or waiting for a node), Running, Succeeded or Failed.")
    job: str | None = Field(None, description="The Job that runs the batch.")
    attempts: int | None = Field(None, description="Pods that ran the batch so far (failed ones are retried up to backoffLimit).")
    total: int | None = Field(None, description="Requests in the input file (lines that are not blank).")
    completed: int | None = Field(None, description=(
        "Requests answered so far: while it runs, as the pod's log reports them (by an operator allowed to read it: "
        "the chart's operator.readPodLogs); at its end, the runner's count."))
    succeeded: int | None = Field(None, description="Requests answered with HTTP 200.")
    failed: int | None = Field(None, description="Requests that got an error, malformed lines included.")
    malformed: list[MalformedLine] | None = Field(None, description="The first malformed input lines, by line number.")
    output: str | None = Field(None, description="Where the answers are: `pvc://<claim>/<path>`.")
    compileCache: CompileCacheStatus | None = Field(
        None, description="Whether the batch's engine reused compiled files from the cache volume (once it succeeded).")
    conditions: list[Condition] | None = Field(None, description="Complete, Failed, Ready and Stalled.")


class LLMBatch(SpecModel):
    """An LLMBatch as read from a file or the API server."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: Literal["llmops.dev/v1alpha1"]
    kind: Literal["LLMBatch"]
    metadata: ObjectMeta
    spec: LLMBatchSpec
    status: dict[str, Any] | None = None  # written by the operator; never read back as input

    RULES: ClassVar[tuple[Rule, ...]] = service_name_rules(MAX_BATCH_NAME_LENGTH, "its Job is named <name>-batch")
