"""What a workload of vLLM pods is made of, shared by LLMDeployment roles and LLMBatch: the model
and tokenizer sources, engine settings, environment, scheduling and resources, and the compile cache.

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

from .meta import SecretKeySelector
from .rules import Rule, SpecModel, is_set
from .types import ENV_NAME, Affinity, ObjectName, Quantity, Revision

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


def _check_source(source: str) -> str:
    parse_source(source)  # raises ValueError with a message naming the accepted forms
    return source


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
            or not (is_set(m.revision) or is_set(m.allowPatterns) or is_set(m.ignorePatterns)),
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
            lambda m: not (is_set(m.file) and is_set(m.allowPatterns)),
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
            lambda e: is_set(e.value) != is_set(e.valueFrom),
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
                is_set(r.gpus) or is_set(r.gpuResourceName) or is_set(r.tensorParallelSize) or is_set(r.pipelineParallelSize)
                or is_set(getattr(getattr(r, "engine", None), "gpuMemoryUtilization", None))),
            ".device",
        ),
        Rule(
            "!has(self.kvCacheSize) || (has(self.device) && self.device == 'CPU')",
            "kvCacheSize applies to device CPU only; on GPUs use engine.gpuMemoryUtilization",
            lambda r: not is_set(r.kvCacheSize) or r.device == "CPU",
            ".kvCacheSize",
        ),
    )


COMPILE_CACHE_DESCRIPTION = (
    "Keep what vLLM compiles when it starts (torch.compile graphs, Inductor and Triton kernels) on this volume too, "
    "under `compile/`, keyed by vLLM version, device and model: a restart or another replica of the same model on "
    "the same kind of device then skips compiling. Default true. Set false to compile at every start, as without "
    "a cache volume (docs/cache.md).")


# What CompileCacheStatus.result may say: the engine's results, and Unknown when its log does not say.
COMPILE_RESULTS = tuple(str(result) for result in CompileResult) + ("Unknown",)


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
