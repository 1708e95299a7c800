"""The LLMDeployment API (llmops.dev/v1alpha1): the single source of the CRD schema.

Field names are the API's camelCase names. Optional fields default to None and stay None: defaults
are applied by the renderer (see `llm_operator.render.config`), never written into the user's
object, so GitOps tools see exactly what they applied.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr

from llm_runtime.contract import TOKEN_ENV, CompileResult
from llm_runtime.layout import HUB_SOURCE_PATTERN, SOURCE_PATTERN, ModelSource, parse_source

from .rules import Rule, SpecModel
from .types import ENV_NAME, Affinity, DnsLabel, ObjectName, Quantity, Revision

GROUP = "llmops.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LLMDeployment"
PLURAL = "llmdeployments"
SINGULAR = "llmdeployment"
SHORT_NAMES = ["llmd"]

ROLES = ("llm", "embedding", "rerank")

# The longest child name is "<name>-embedding"; a Service name is a DNS-1035 label (<= 63).
MAX_NAME_LENGTH = 63 - len("-embedding")

# Flags the operator owns: typed fields set them, or setting them would break the pod contract
# (port, host) or leak a secret into the pod spec (api key). --task and --enable-reasoning were
# removed from vLLM and would make it exit; --config reads a file that can set any flag.
RESERVED_FLAGS = (
    "--model",
    "--host",
    "--port",
    "--served-model-name",
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--api-key",
    "--task",
    "--enable-reasoning",
    "--runner",
    "--tokenizer",
    "--config",
)
# vLLM's short aliases of reserved flags (tests/test_vllm_contract.py lists them from its parser).
RESERVED_SHORT_FLAGS = ("-tp", "-pp")


def reserved_flag(arg: str, long_flags: tuple[str, ...] = RESERVED_FLAGS,
                  short_flags: tuple[str, ...] = RESERVED_SHORT_FLAGS) -> str | None:
    """The reserved flag an extraArgs item would set in vLLM's parser, or None.

    vLLM's parser reads `--served_model_name` as `--served-model-name`, takes any unambiguous
    prefix (`--served`, `--api-k`, and `-t` for `-tp`) and `--flag=value` as one item, so an item is
    refused when its flag part, with '_' read as '-', is a prefix of a reserved flag. A bare `--`
    ends the options and is refused with them. The CEL rule below is the same test.
    """
    flag = arg.split("=")[0]
    if flag.startswith("--"):
        flag = "--" + flag[2:].replace("_", "-")
        return next((reserved for reserved in long_flags if reserved.startswith(flag)), None)
    if flag.startswith("-") and len(flag) >= 2:
        return next((reserved for reserved in short_flags if reserved.startswith(flag)), None)
    return None


def reserved_flag_cel(long_flags: tuple[str, ...], short_flags: tuple[str, ...]) -> str:
    """The CEL twin of reserved_flag() for the item `a`; `a.split('=')[0]` is the item's flag part."""
    long_list = ", ".join(f"'{flag}'" for flag in long_flags)
    short_list = ", ".join(f"'{flag}'" for flag in short_flags)
    return (
        f"(a.startsWith('--') ? [{long_list}].exists(f, f.startsWith('--' + a.split('=')[0].substring(2).replace('_', '-')))"
        f" : (a.startsWith('-') && size(a.split('=')[0]) >= 2 && [{short_list}].exists(f, f.startsWith(a.split('=')[0]))))"
    )


PARSER_NAME = r"^[a-z][a-z0-9_]*$"
# A pvc:// source whose path inside the claim has a '..' segment.
PVC_DOT_DOT = r"^pvc://[^/]*/(.*/)?[.][.](/.*)?$"


def _set(value: Any) -> bool:
    return value is not None


def _check_source(source: str) -> str:
    parse_source(source)  # raises ValueError with a message naming the accepted forms
    return source


# ---------------------------------------------------------------- model and engine


class SourcedSpec(SpecModel):
    """A spec with a `source` URI, kept as the user wrote it and parsed once, when the spec is read."""

    _parsed_source: ModelSource = PrivateAttr()
    if TYPE_CHECKING:  # each subclass declares it, with its own description
        source: str

    def model_post_init(self, context: Any) -> None:
        # `source` already passed its validator, so this cannot raise.
        self._parsed_source = parse_source(self.source)

    @property
    def parsed_source(self) -> ModelSource:
        return self._parsed_source


class ModelSpec(SourcedSpec):
    """Which weights to serve and where they come from."""

    source: Annotated[str, AfterValidator(_check_source)] = Field(
        max_length=512,
        json_schema_extra={"pattern": SOURCE_PATTERN},
        description=(
            "Where the weights come from: `modelscope://org/name`, `hf://org/name` (Hugging Face) or "
            "`pvc://claim/path` (a directory on an existing PersistentVolumeClaim in the same namespace)."
        ),
    )
    revision: Revision | None = Field(
        None,
        description="Branch, tag or commit to download. Default: `master` on ModelScope, `main` on Hugging Face. Hub sources only.",
    )
    servedName: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$",
        description="Model name clients send in requests (`--served-model-name`). Default: the last segment of the source.",
    )
    file: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=r"^[^/.][^/]*$",
        description="Serve one file of the repository (for example a `.gguf` quantization) instead of the whole snapshot.",
    )
    allowPatterns: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        None, max_length=32, description="Glob patterns of files to download; others are skipped. Hub sources only."
    )
    ignorePatterns: list[Annotated[str, Field(min_length=1, max_length=255)]] | None = Field(
        None, max_length=32, description="Glob patterns of files not to download (for example `*.pth`). Hub sources only."
    )
    tokenizer: TokenizerSpec | None = Field(
        None,
        description=(
            "Tokenizer to serve the model with (`--tokenizer`), downloaded by the same init container into the same "
            "cache. Recommended for a GGUF `file`: vLLM's conversion of the tokenizer embedded in a GGUF file is slow "
            "and unreliable, so give the base model's repository here."
        ),
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!self.source.startsWith('pvc://') || (!has(self.revision) && !has(self.allowPatterns) && !has(self.ignorePatterns))",
            "revision, allowPatterns and ignorePatterns apply to modelscope:// and hf:// sources only; a pvc:// model is used as it is",
            lambda m: not m.source.startswith("pvc://")
            or not (_set(m.revision) or _set(m.allowPatterns) or _set(m.ignorePatterns)),
        ),
        Rule(
            "!has(self.tokenizer) || !self.source.startsWith('pvc://')",
            "tokenizer is downloaded into the weights cache, which a pvc:// model does not use: put the tokenizer "
            "files next to the model on the claim instead",
            lambda m: m.tokenizer is None or not m.source.startswith("pvc://"),
            ".tokenizer",
        ),
        Rule(
            f"!self.source.matches('{PVC_DOT_DOT}')",
            "the path inside the claim may not contain '..'",
            lambda m: re.match(PVC_DOT_DOT, m.source) is None,
            ".source",
        ),
        Rule(
            "!has(self.file) || !has(self.allowPatterns)",
            "file and allowPatterns cannot both be set: file already selects the one file to download",
            lambda m: not (_set(m.file) and _set(m.allowPatterns)),
        ),
    )


class TokenizerSpec(SourcedSpec):
    """Where the tokenizer comes from, when it is not the model's own. Only its small files are downloaded
    (`*.json`, `*.txt`, `*.model`, `*.tiktoken`), never weights."""

    source: str = Field(
        max_length=512,
        pattern=HUB_SOURCE_PATTERN,
        description="`modelscope://org/name` or `hf://org/name`, for example the GGUF's base model.",
    )
    revision: Revision | None = Field(
        None, description="Branch, tag or commit. Default: `master` on ModelScope, `main` on Hugging Face."
    )



# Environment variables the operator sets from Secret references; a literal one would leak a secret.
OPERATOR_SET_ENV = ("VLLM_API_KEY", TOKEN_ENV["hf"], TOKEN_ENV["modelscope"])


class EnvVarSource(SpecModel):
    """A reference for an environment variable's value; only Secret keys are allowed."""

    secretKeyRef: SecretKeySelector = Field(description="A key of a Secret in the same namespace.")


class EnvVar(SpecModel):
    """An environment variable of the vLLM container."""

    name: str = Field(pattern=ENV_NAME, max_length=255, description="Variable name.")
    value: str | None = Field(None, description="Literal value. Never put secrets here: use valueFrom.")
    valueFrom: EnvVarSource | None = Field(None, description="Take the value from a Secret key.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.value) != has(self.valueFrom)",
            "set exactly one of value and valueFrom",
            lambda e: _set(e.value) != _set(e.valueFrom),
        ),
        Rule(
            f"!(self.name in [{', '.join(repr(name) for name in OPERATOR_SET_ENV)}])",
            "VLLM_API_KEY, HF_TOKEN and MODELSCOPE_API_TOKEN are set by the operator: use apiKeySecretRef and credentialsSecretRef",
            lambda e: e.name not in OPERATOR_SET_ENV,
            ".name",
        ),
    )


def _extra_args_rule() -> Rule:
    is_reserved = reserved_flag_cel(RESERVED_FLAGS, RESERVED_SHORT_FLAGS)
    return Rule(
        f"!has(self.extraArgs) || self.extraArgs.all(a, !{is_reserved})",
        "extraArgs may not set " + ", ".join(RESERVED_FLAGS + RESERVED_SHORT_FLAGS)
        + " (nor their prefixes or '_' spellings): use the typed fields (gpus, tensorParallelSize, model.servedName, "
        "model.tokenizer, apiKeySecretRef); --task and --enable-reasoning no longer exist in vLLM",
        lambda e: not any(reserved_flag(arg) for arg in e.extraArgs or ()),
        ".extraArgs",
    )


class EngineSpec(SpecModel):
    """vLLM engine settings common to every role. Unset fields keep vLLM's own defaults."""

    maxModelLen: int | None = Field(None, ge=16, le=10_485_760, description="Context length in tokens (`--max-model-len`).")
    gpuMemoryUtilization: float | None = Field(
        None, gt=0, le=1, description="Fraction of each GPU's memory vLLM may use (`--gpu-memory-utilization`), 0 < x <= 1."
    )
    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"] | None = Field(
        None, description="Weight and activation data type (`--dtype`)."
    )
    quantization: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_-]*$",
        max_length=64,
        description="Quantization method (`--quantization`), for example `gptq`, `awq`, `fp8`, `gguf`. Usually detected from the model config.",
    )
    enablePrefixCaching: bool | None = Field(
        None, description="Reuse the KV cache of shared prompt prefixes (`--enable-prefix-caching` / `--no-enable-prefix-caching`)."
    )
    trustRemoteCode: bool | None = Field(
        None, description="Run the model repository's own Python code (`--trust-remote-code`). Only for repositories you trust."
    )
    extraArgs: list[Annotated[str, Field(max_length=1024)]] | None = Field(
        None,
        max_length=64,
        description="More `vllm serve` arguments, appended as given, for example `[\"--max-num-seqs\", \"128\"]`.",
    )
    env: list[EnvVar] | None = Field(None, max_length=64, description="Extra environment variables of the vLLM container.")

    RULES: ClassVar[tuple[Rule, ...]] = (_extra_args_rule(),)


class GenerativeEngineSpec(EngineSpec):
    """vLLM settings of the chat/completions (LLM) role."""

    toolCallParser: str | None = Field(
        None,
        pattern=PARSER_NAME,
        max_length=64,
        description="Tool-call parser, for example `hermes`, `llama3_json`, `mistral` (`--tool-call-parser`); implies `--enable-auto-tool-choice`.",
    )
    reasoningParser: str | None = Field(
        None,
        pattern=PARSER_NAME,
        max_length=64,
        description="Reasoning parser, for example `deepseek_r1`, `qwen3` (`--reasoning-parser`).",
    )


class PoolingEngineSpec(EngineSpec):
    """vLLM settings of the embedding and rerank roles (`--runner pooling`)."""

    convert: Literal["embed", "classify"] | None = Field(
        None,
        description=(
            "Adapt a model that was not trained for this task (`--convert`): `embed` turns a causal LM into an "
            "embedding model, `classify` into a classifier/reranker. Leave unset for native embedding and reranker models."
        ),
    )


# ---------------------------------------------------------------- scheduling and resources


class Toleration(SpecModel):
    """A pod toleration (see the Kubernetes Toleration type)."""

    key: str | None = Field(None, max_length=317, description="Taint key; empty with operator Exists matches every taint.")
    operator: Literal["Exists", "Equal"] | None = Field(None, description="Exists or Equal (default Equal).")
    value: str | None = Field(None, max_length=63, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(None, description="Taint effect to match; empty matches all.")
    tolerationSeconds: int | None = Field(None, description="For NoExecute: how long the pod stays bound after the taint appears.")


class Scheduling(SpecModel):
    """Where the pods may run. GPU tolerations for `nvidia.com/gpu` are added automatically."""

    nodeSelector: dict[str, str] | None = Field(None, description="Node labels the pods require.")
    tolerations: list[Toleration] | None = Field(None, max_length=32, description="Extra tolerations.")
    affinity: Affinity | None = Field(
        None, description="A Kubernetes Affinity object (nodeAffinity, podAffinity, podAntiAffinity), checked against the core type.")
    priorityClassName: ObjectName | None = Field(None, description="PriorityClass of the pods.")
    runtimeClassName: ObjectName | None = Field(None, description="RuntimeClass of the pods, for example `nvidia`.")


class Resources(SpecModel):
    """CPU and memory of the vLLM container. GPUs are set by `gpus`."""

    cpu: Quantity | None = Field(None, description="CPU request, for example `8`. No CPU limit is set (throttling hurts latency).")
    memory: Quantity | None = Field(None, description="Memory request and limit, for example `64Gi`. The /dev/shm volume counts against it.")


# A decimal number for KEDA's threshold. The CEL rules below check the pattern again before
# double(): the API server evaluates them even on a value that fails the pattern.
TARGET_PATTERN = r"^[0-9]{1,6}([.][0-9]{1,6})?$"  # [.], not \., so the CEL string needs no escape
_CEL_TARGET = f"has(self.target) && self.target.matches('{TARGET_PATTERN}')"


def _target(scaling: Any) -> float | None:
    """The target as a number, or None when it is absent or not a number (the pattern reports that)."""
    return float(scaling.target) if scaling.target and re.fullmatch(TARGET_PATTERN, scaling.target) else None


class Autoscaling(SpecModel):
    """Who sets the number of pods instead of `replicas`, and on what signal."""

    provider: Literal["KEDA", "External"] | None = Field(
        None,
        description=(
            "`KEDA` (default): the operator renders a KEDA ScaledObject `<name>-<role>` that scales the role's "
            "Deployment on one of its pods' vLLM metrics, read from Prometheus; KEDA must be installed. "
            "`External`: an autoscaler you run (an HPA on any metrics adapter, or your own ScaledObject) sets the "
            "Deployment's replicas. Either way the operator never writes them, and hands the field over without "
            "resetting it when a role switches from `replicas`. See docs/autoscaling.md."
        ),
    )
    minReplicas: int | None = Field(None, ge=0, le=1000, description="KEDA: fewest pods. Default 1.")
    maxReplicas: int | None = Field(None, ge=1, le=1000, description="KEDA: most pods. Required with KEDA.")
    metric: Literal["RequestsWaiting", "RequestsRunning", "KVCacheUsage"] | None = Field(
        None,
        description=(
            "KEDA: what adds pods. `RequestsWaiting` (default, `vllm:num_requests_waiting`): requests queued "
            "per pod. `RequestsRunning` (`vllm:num_requests_running`): requests being generated per pod. "
            "`KVCacheUsage` (`vllm:kv_cache_usage_perc`): KV-cache usage per pod, 0 to 1."
        ),
    )
    target: str | None = Field(
        None,
        pattern=TARGET_PATTERN,
        description=(
            "KEDA: the metric's per-pod average above which pods are added, a decimal number. "
            "Default 4 (RequestsWaiting), 16 (RequestsRunning), 0.8 (KVCacheUsage)."
        ),
    )
    scaleDownDelaySeconds: int | None = Field(
        None,
        ge=0,
        le=86400,
        description=(
            "KEDA: how long the metric must stay low before pods are removed. Default 300: a vLLM pod is "
            "useful only once its model is loaded, so removing one early costs a cold start later."
        ),
    )

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.provider) || self.provider != 'External' || (!has(self.minReplicas) && !has(self.maxReplicas)"
            " && !has(self.metric) && !has(self.target) && !has(self.scaleDownDelaySeconds))",
            "with provider External your own autoscaler holds the settings: remove minReplicas, maxReplicas, "
            "metric, target and scaleDownDelaySeconds, or use provider KEDA",
            lambda a: a.provider != "External" or all(
                v is None for v in (a.minReplicas, a.maxReplicas, a.metric, a.target, a.scaleDownDelaySeconds)),
            ".provider",
        ),
        Rule(
            "(has(self.provider) && self.provider == 'External') || has(self.maxReplicas)",
            "autoscaling.maxReplicas is required with provider KEDA (the default): the most pods the role may have",
            lambda a: a.provider == "External" or a.maxReplicas is not None,
            ".maxReplicas",
        ),
        Rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "autoscaling.minReplicas must not exceed maxReplicas",
            lambda a: a.minReplicas is None or a.maxReplicas is None or a.minReplicas <= a.maxReplicas,
            ".minReplicas",
        ),
        Rule(
            f"!({_CEL_TARGET}) || double(self.target) > 0.0",
            "autoscaling.target must be above 0",
            lambda a: (target := _target(a)) is None or target > 0,
            ".target",
        ),
        Rule(
            f"!({_CEL_TARGET}) || !has(self.metric) || self.metric != 'KVCacheUsage' || double(self.target) <= 1.0",
            "autoscaling.target of metric KVCacheUsage is a fraction of the KV cache, at most 1 (0.8 is 80 %)",
            lambda a: (target := _target(a)) is None or a.metric != "KVCacheUsage" or target <= 1,
            ".target",
        ),
    )


class WorkerSpec(SpecModel):
    """What a vLLM pod runs on: device, GPUs and parallelism, memory and placement. Shared by the
    roles of an LLMDeployment and by an LLMBatch."""

    device: Literal["GPU", "CPU"] | None = Field(
        None,
        description=(
            "What runs the model. Default `GPU`. `CPU` runs vLLM's CPU build (the operator's CPU runtime image unless "
            "spec.image is set) with no GPU request and no GPU toleration: for small models, laptops and CI clusters."
        ),
    )
    kvCacheSize: Quantity | None = Field(
        None,
        description=(
            "CPU only: memory for the KV cache (`VLLM_CPU_KVCACHE_SPACE`, rounded up to whole GiB). Default 1Gi. "
            "Count it in resources.memory."
        ),
    )
    gpus: int | None = Field(None, ge=1, le=64, description="GPUs per pod. Default 1.")
    gpuResourceName: str | None = Field(
        None,
        pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$",
        max_length=253,
        description="Extended resource that counts GPUs. Default `nvidia.com/gpu` (or the operator's --gpu-resource).",
    )
    tensorParallelSize: int | None = Field(
        None, ge=1, le=64, description="`--tensor-parallel-size`. Default: gpus / pipelineParallelSize."
    )
    pipelineParallelSize: int | None = Field(None, ge=1, le=64, description="`--pipeline-parallel-size`. Default 1.")
    resources: Resources | None = Field(None, description="CPU and memory of the vLLM container.")
    shmSize: Quantity | None = Field(
        None,
        description="Size of the in-memory /dev/shm volume (NCCL and vLLM workers use it). Default: 2Gi per GPU.",
    )
    scheduling: Scheduling | None = Field(None, description="Node placement of the pods.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.tensorParallelSize)"
            " ? self.tensorParallelSize * (has(self.pipelineParallelSize) ? self.pipelineParallelSize : 1) == (has(self.gpus) ? self.gpus : 1)"
            " : (has(self.gpus) ? self.gpus : 1) % (has(self.pipelineParallelSize) ? self.pipelineParallelSize : 1) == 0",
            "tensorParallelSize x pipelineParallelSize must equal gpus (GPUs per replica, default 1)",
            lambda r: (r.tensorParallelSize * (r.pipelineParallelSize or 1) == (r.gpus or 1))
            if r.tensorParallelSize
            else (r.gpus or 1) % (r.pipelineParallelSize or 1) == 0,
            ".tensorParallelSize",
        ),
        Rule(
            "!has(self.device) || self.device != 'CPU' || (!has(self.gpus) && !has(self.gpuResourceName)"
            " && !has(self.tensorParallelSize) && !has(self.pipelineParallelSize)"
            " && !(has(self.engine) && has(self.engine.gpuMemoryUtilization)))",
            "a role with device CPU takes no gpus, gpuResourceName, tensorParallelSize, pipelineParallelSize or "
            "engine.gpuMemoryUtilization: size its memory with resources.memory and kvCacheSize",
            lambda r: r.device != "CPU" or not (
                _set(r.gpus) or _set(r.gpuResourceName) or _set(r.tensorParallelSize) or _set(r.pipelineParallelSize)
                or _set(getattr(getattr(r, "engine", None), "gpuMemoryUtilization", None))),
            ".device",
        ),
        Rule(
            "!has(self.kvCacheSize) || (has(self.device) && self.device == 'CPU')",
            "kvCacheSize applies to device CPU only; on GPUs use engine.gpuMemoryUtilization",
            lambda r: not _set(r.kvCacheSize) or r.device == "CPU",
            ".kvCacheSize",
        ),
    )


class RoleSpec(WorkerSpec):
    """One served model: a Deployment of vLLM pods and a Service."""

    replicas: int | None = Field(None, ge=0, le=1000, description="Number of pods. Default 1. 0 keeps the objects but frees the GPUs.")
    autoscaling: Autoscaling | None = Field(
        None, description="Leave the number of pods to an autoscaler. Excludes `replicas`.")
    startupTimeoutSeconds: int | None = Field(
        None,
        ge=60,
        le=86400,
        description="How long vLLM may take to load the model before the pod is restarted. Default 1800 (30 minutes).",
    )
    if TYPE_CHECKING:  # each kind of role declares them, with its own engine settings
        model: ModelSpec
        engine: EngineSpec | None

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "!has(self.replicas) || !has(self.autoscaling)",
            "replicas and autoscaling exclude each other: with autoscaling the autoscaler sets the number of pods",
            lambda r: r.replicas is None or r.autoscaling is None,
            ".autoscaling",
        ),
    ) + WorkerSpec.RULES


class LLMRoleSpec(RoleSpec):
    """The chat/completions model (OpenAI-compatible `/v1/chat/completions`)."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: GenerativeEngineSpec | None = Field(None, description="vLLM engine settings.")


class PoolingRoleSpec(RoleSpec):
    """An embedding (`/v1/embeddings`) or rerank (`/v1/rerank`, `/v1/score`) model, run with `--runner pooling`."""

    model: ModelSpec = Field(description="The model to serve.")
    engine: PoolingEngineSpec | None = Field(None, description="vLLM engine settings.")


# ---------------------------------------------------------------- shared settings


class SecretKeySelector(SpecModel):
    """A key of a Secret in the LLMDeployment's namespace."""

    name: ObjectName = Field(description="Secret name.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key in the Secret.")


class SecretReference(SpecModel):
    """A Secret in the LLMDeployment's namespace."""

    name: ObjectName = Field(description="Secret name.")


COMPILE_CACHE_DESCRIPTION = (
    "Keep what vLLM compiles when it starts (torch.compile graphs, Inductor and Triton kernels) on this volume too, "
    "under `compile/`, keyed by vLLM version, device and model: a restart or another replica of the same model on "
    "the same kind of device then skips compiling. Default true. Set false to compile at every start, as without "
    "a cache volume (docs/cache.md).")


class CacheSpec(SpecModel):
    """The volume that holds downloaded weights, shared by all pods and roles of this resource.

    Without it each pod downloads into its own emptyDir, and every restart downloads again."""

    size: Quantity | None = Field(None, description="Create a PersistentVolumeClaim `<name>-cache` of this size.")
    storageClassName: str | None = Field(None, max_length=253, description="StorageClass of the new claim. Default: the cluster's default class.")
    accessMode: Literal["ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"] | None = Field(
        None,
        description="Access mode of the new claim. Default ReadWriteMany, so pods on different nodes share it.",
    )
    existingClaim: ObjectName | None = Field(None, description="Use this existing PersistentVolumeClaim instead of creating one.")
    compileCache: bool | None = Field(None, description=COMPILE_CACHE_DESCRIPTION)

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.size) != has(self.existingClaim)",
            "set exactly one of cache.size (a new claim) and cache.existingClaim",
            lambda c: _set(c.size) != _set(c.existingClaim),
        ),
        Rule(
            "!has(self.existingClaim) || (!has(self.storageClassName) && !has(self.accessMode))",
            "storageClassName and accessMode describe a new claim: they cannot be set with existingClaim",
            lambda c: not _set(c.existingClaim) or not (_set(c.storageClassName) or _set(c.accessMode)),
        ),
    )


class ServiceSpec(SpecModel):
    """How the role Services are exposed."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] | None = Field(
        None,
        description="Service type. Default ClusterIP. NodePort and LoadBalancer need apiKeySecretRef (or allowUnauthenticated).")
    port: int | None = Field(None, ge=1, le=65535, description="Service port. Default 8000.")
    annotations: dict[str, str] | None = Field(None, description="Annotations of the Services (load balancer settings).")
    allowUnauthenticated: bool | None = Field(
        None,
        description=(
            "Allow a NodePort or LoadBalancer Service without apiKeySecretRef: anyone who reaches a node or the load "
            "balancer can then use the model. Only for endpoints meant to be open (a private network you trust)."
        ),
    )
    allowedNamespaces: list[DnsLabel] | None = Field(
        None,
        min_length=1,
        max_length=64,
        description=(
            "Let in only pods of these namespaces, with a NetworkPolicy `<name>-ingress` over every role's pods "
            "(serving port only). "
            "List this resource's own namespace too if clients run beside it. Needs a network plugin that enforces "
            "NetworkPolicy. Default: no NetworkPolicy."
        ),
    )


class LLMDeploymentSpec(SpecModel):
    """What to serve. At least one of llm, embedding and rerank is required."""

    llm: LLMRoleSpec | None = Field(None, description="The chat/completions model.")
    embedding: PoolingRoleSpec | None = Field(None, description="The embedding model.")
    rerank: PoolingRoleSpec | None = Field(None, description="The reranker (cross-encoder) model.")
    image: str | None = Field(
        None, min_length=1, max_length=512, description="Runtime image (vLLM plus llm-runtime). Default: the image this operator version pins."
    )
    imagePullPolicy: Literal["Always", "IfNotPresent", "Never"] | None = Field(None, description="Pull policy of the runtime image.")
    cache: CacheSpec | None = Field(None, description="Shared volume for downloaded weights. Without it each pod "
                                    "downloads into its own emptyDir on the node's disk, again on every start.")
    apiKeySecretRef: SecretKeySelector | None = Field(
        None, description="Secret key holding the API key clients must send; given to vLLM as VLLM_API_KEY, never as an argument."
    )
    credentialsSecretRef: SecretReference | None = Field(
        None,
        description="Secret with hub tokens for private or gated models: keys `MODELSCOPE_API_TOKEN` and/or `HF_TOKEN`.",
    )
    service: ServiceSpec | None = Field(None, description="Service settings for every role.")

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            "has(self.llm) || has(self.embedding) || has(self.rerank)",
            "at least one of spec.llm, spec.embedding and spec.rerank is required",
            lambda s: any(getattr(s, role) is not None for role in ROLES),
        ),
        Rule(
            "!has(self.service) || !has(self.service.type) || self.service.type == 'ClusterIP'"
            " || has(self.apiKeySecretRef) || (has(self.service.allowUnauthenticated) && self.service.allowUnauthenticated)",
            "a NodePort or LoadBalancer Service puts the model on the network: set apiKeySecretRef, or "
            "service.allowUnauthenticated: true if the endpoint is meant to be open",
            lambda s: s.service is None or s.service.type in (None, "ClusterIP") or s.apiKeySecretRef is not None
            or s.service.allowUnauthenticated is True,
            ".service.type",
        ),
    )

    def roles(self) -> dict[str, RoleSpec]:
        """The roles that are set, in a fixed order."""
        return {role: getattr(self, role) for role in ROLES if getattr(self, role) is not None}


# ---------------------------------------------------------------- status


# What CompileCacheStatus.result may say: the engine's results, and Unknown when its log does not say.
COMPILE_RESULTS = tuple(str(result) for result in CompileResult) + ("Unknown",)


class Condition(BaseModel):
    """A Kubernetes-style condition (kstatus)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="One of the types `conditions` lists for this kind.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word, for machines.")
    message: str = Field(description="What happened and what to do, for people.")
    observedGeneration: int | None = Field(None, description="The metadata.generation this condition describes.")
    lastTransitionTime: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When status last changed."
    )


class CompileCacheStatus(BaseModel):
    """What one engine start did with the compile cache, as the engine logged it."""

    model_config = ConfigDict(extra="forbid")

    pod: str | None = Field(None, description="The pod whose start this is.")
    startedAt: str | None = Field(None, description="When its engine container started.")
    result: Literal[COMPILE_RESULTS] | None = Field(  # type: ignore[valid-type]  # a tuple of values, one source
        None, description="Reused (every compiled file came from the volume), Compiled (compiled and stored for the next "
                          "start), NotStored (compiled, and the volume refused the files: the message says why), "
                          "NothingCompiled (the engine compiles nothing), Unknown (the engine's log does not say).")
    message: str | None = Field(None, description="The engine's own line about it.")


class RoleStatus(BaseModel):
    """What is running for one role."""

    model_config = ConfigDict(extra="forbid")

    replicas: int | None = Field(None, description="Pods wanted.")
    readyReplicas: int | None = Field(None, description="Pods ready to serve.")
    url: str | None = Field(None, description="In-cluster OpenAI-compatible base URL.")
    servedName: str | None = Field(None, description="Model name to send in requests.")
    compileCache: CompileCacheStatus | None = Field(
        None, description="The newest engine start of this role with a compile cache: whether it reused compiled "
                         "files (read from its log, by an operator allowed to: the chart's operator.readPodLogs).")


class LLMDeploymentStatus(BaseModel):
    """What the operator observed. Written only by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(None, description="The metadata.generation last reconciled.")
    phase: Literal["Pending", "Downloading", "Starting", "Ready", "Idle", "Degraded", "Failed"] | None = Field(
        None, description="Summary: Pending, Downloading, Starting, Ready, Idle (a role scaled to zero by its "
                          "autoscaler), Degraded or Failed."
    )
    rolesReady: str | None = Field(None, description="Roles ready out of roles requested, for example `2/3`.")
    conditions: list[Condition] | None = Field(None, description="Ready, Progressing and Degraded.")
    roles: dict[str, RoleStatus] | None = Field(None, description="Per role: replicas, ready replicas, URL and served name.")


NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ObjectMeta(BaseModel):
    """The part of metadata the renderer reads; the rest is kept as given."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


def service_name_rules(max_length: int, longest_child: str) -> tuple[Rule, Rule]:
    """The rules on metadata.name of a kind whose children include Services named after it."""
    return (
        Rule(
            f"size(self.metadata.name) <= {max_length}",
            f"metadata.name must be at most {max_length} characters: {longest_child}",
            lambda o: len(o.metadata.name) <= max_length,
        ),
        Rule(
            f"self.metadata.name.matches('{NAME_PATTERN}')",
            "metadata.name must start with a letter and contain only lowercase letters, digits and '-': it names Services",
            lambda o: re.fullmatch(NAME_PATTERN, o.metadata.name) is not None,
        ),
    )


class LLMDeployment(SpecModel):
    """An LLMDeployment as read from a file or the API server. Its RULES sit at the CRD's root,
    where CEL can see metadata.name."""

    model_config = ConfigDict(extra="forbid")

    apiVersion: Literal["llmops.dev/v1alpha1"]
    kind: Literal["LLMDeployment"]
    metadata: ObjectMeta
    spec: LLMDeploymentSpec
    status: dict[str, Any] | None = None  # written by the operator; never read back as input

    # Names must be DNS-1035 labels short enough for "<name>-embedding" to stay a valid Service name.
    RULES: ClassVar[tuple[Rule, ...]] = service_name_rules(MAX_NAME_LENGTH, "child Services are named <name>-embedding")


# Forward references: EnvVarSource uses SecretKeySelector, defined further down for readability.
ModelSpec.model_rebuild()
EnvVarSource.model_rebuild()
EnvVar.model_rebuild()
EngineSpec.model_rebuild()
GenerativeEngineSpec.model_rebuild()
PoolingEngineSpec.model_rebuild()
LLMRoleSpec.model_rebuild()
PoolingRoleSpec.model_rebuild()
LLMDeploymentSpec.model_rebuild()
LLMDeployment.model_rebuild()
