"""Invalid LLMDeployments and what each one is told.

One table, two checks: tests/test_invalid_specs.py runs it through the Python validation used by
`llm-operator render` (exact messages), and e2e/test_operator.py applies it to a real API server
with the generated CRD (field path and, for CEL rules, the same message). When the CRD and the
Python side drift apart, one of them fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LLM = {"model": {"source": "modelscope://Qwen/Qwen2.5-0.5B-Instruct"}}


@dataclass(frozen=True)
class Invalid:
    id: str
    spec: dict[str, Any]
    error: str  # exact "path: message" line from the Python validation
    server_says: tuple[str, ...] = ()  # fragments the API server's refusal must contain
    name: str = "bad"
    extra: dict[str, Any] = field(default_factory=dict)


def _llm(**changes: Any) -> dict[str, Any]:
    return {"llm": {**LLM, **changes}}


RULE_ROLES = "at least one of spec.llm, spec.embedding and spec.rerank is required"
RULE_PARALLEL = "tensorParallelSize x pipelineParallelSize must equal gpus (GPUs per replica, default 1)"
RULE_EXTRA_ARGS = (
    "extraArgs may not set --model, --host, --port, --served-model-name, --tensor-parallel-size, "
    "--pipeline-parallel-size, --api-key, --task, --enable-reasoning, --runner, --tokenizer, --config, -tp, -pp "
    "(nor their prefixes or '_' spellings): use the typed fields "
    "(gpus, tensorParallelSize, model.servedName, model.tokenizer, apiKeySecretRef); --task and --enable-reasoning no longer exist in vLLM"
)
RULE_OPEN_SERVICE = (
    "a NodePort or LoadBalancer Service puts the model on the network: set apiKeySecretRef, or "
    "service.allowUnauthenticated: true if the endpoint is meant to be open"
)
RULE_AUTOSCALING = "replicas and autoscaling exclude each other: with autoscaling the autoscaler sets the number of pods"
RULE_EXTERNAL_SETTINGS = (
    "with provider External your own autoscaler holds the settings: remove minReplicas, maxReplicas, "
    "metric, target and scaleDownDelaySeconds, or use provider KEDA"
)
RULE_MAX_REPLICAS = "autoscaling.maxReplicas is required with provider KEDA (the default): the most pods the role may have"
RULE_KV_TARGET = "autoscaling.target of metric KVCacheUsage is a fraction of the KV cache, at most 1 (0.8 is 80 %)"
RULE_CACHE = "set exactly one of cache.size (a new claim) and cache.existingClaim"
RULE_PVC = (
    "revision, allowPatterns and ignorePatterns apply to modelscope:// and hf:// sources only; "
    "a pvc:// model is used as it is"
)
RULE_ENV = (
    "VLLM_API_KEY, HF_TOKEN and MODELSCOPE_API_TOKEN are set by the operator: use apiKeySecretRef and credentialsSecretRef"
)

RULE_CPU = (
    "a role with device CPU takes no gpus, gpuResourceName, tensorParallelSize, pipelineParallelSize or "
    "engine.gpuMemoryUtilization: size its memory with resources.memory and kvCacheSize"
)
RULE_KV_CACHE = "kvCacheSize applies to device CPU only; on GPUs use engine.gpuMemoryUtilization"
RULE_TOKENIZER_PVC = (
    "tokenizer is downloaded into the weights cache, which a pvc:// model does not use: put the tokenizer "
    "files next to the model on the claim instead"
)

CASES = [
    Invalid("no-role", {}, f"spec: {RULE_ROLES}", ("spec", RULE_ROLES)),
    Invalid(
        "tensor-times-pipeline",
        _llm(gpus=2, tensorParallelSize=3),
        f"spec.llm.tensorParallelSize: {RULE_PARALLEL}",
        ("spec.llm.tensorParallelSize", RULE_PARALLEL),
    ),
    Invalid(
        "pipeline-does-not-divide",
        _llm(gpus=3, pipelineParallelSize=2),
        f"spec.llm.tensorParallelSize: {RULE_PARALLEL}",
        ("spec.llm.tensorParallelSize", RULE_PARALLEL),
    ),
    Invalid(
        "ftp-source",
        {"llm": {"model": {"source": "ftp://x"}}},
        "spec.llm.model.source: model source 'ftp://x' is not one of modelscope://org/name, hf://org/name, pvc://claim/path",
        ("spec.llm.model.source", "should match"),
    ),
    Invalid(
        "pvc-without-path",
        {"llm": {"model": {"source": "pvc://models"}}},
        "spec.llm.model.source: model source 'pvc://models' is not one of modelscope://org/name, hf://org/name, pvc://claim/path",
        ("spec.llm.model.source", "should match"),
    ),
    Invalid(
        "pvc-with-revision",
        {"llm": {"model": {"source": "pvc://models/llama", "revision": "v1"}}},
        f"spec.llm.model: {RULE_PVC}",
        ("spec.llm.model", RULE_PVC),
    ),
    Invalid(
        "task-in-extra-args",
        {"embedding": {"model": {"source": "hf://BAAI/bge-m3"}, "engine": {"extraArgs": ["--task", "embed"]}}},
        f"spec.embedding.engine.extraArgs: {RULE_EXTRA_ARGS}",
        ("spec.embedding.engine.extraArgs", RULE_EXTRA_ARGS),
    ),
    Invalid(
        "api-key-in-extra-args",
        _llm(engine={"extraArgs": ["--api-key=sk-123"]}),
        f"spec.llm.engine.extraArgs: {RULE_EXTRA_ARGS}",
        ("spec.llm.engine.extraArgs", RULE_EXTRA_ARGS),
    ),
    # The issue's reproducer, and each way vLLM's parser reaches a reserved flag.
    Invalid(
        "reserved-flags-spelt-otherwise",
        _llm(engine={"extraArgs": ["--served_model_name", "evil", "-tp", "4", "--api_key=plain"]}),
        f"spec.llm.engine.extraArgs: {RULE_EXTRA_ARGS}",
        ("spec.llm.engine.extraArgs", RULE_EXTRA_ARGS),
    ),
    *(
        Invalid(
            f"reserved-flag-as-{label}",
            _llm(engine={"extraArgs": ["--max-num-seqs", "8", arg, "x"]}),
            f"spec.llm.engine.extraArgs: {RULE_EXTRA_ARGS}",
            ("spec.llm.engine.extraArgs", RULE_EXTRA_ARGS),
        )
        for label, arg in (("prefix", "--served"), ("prefix-with-value", "--api-k=x"), ("underscore", "--tensor_parallel_size"),
                           ("short-alias", "-pp"), ("short-prefix", "-t"), ("short-with-value", "-tp=2"),
                           ("config-file", "--config"), ("options-end", "--"))
    ),
    Invalid(
        "load-balancer-without-api-key",
        {**_llm(), "service": {"type": "LoadBalancer"}},
        f"spec.service.type: {RULE_OPEN_SERVICE}",
        ("spec.service.type", RULE_OPEN_SERVICE),
    ),
    Invalid(
        "node-port-without-api-key",
        {**_llm(), "service": {"type": "NodePort", "allowUnauthenticated": False}},
        f"spec.service.type: {RULE_OPEN_SERVICE}",
        ("spec.service.type", RULE_OPEN_SERVICE),
    ),
    Invalid(
        "dot-dot-in-hub-source",
        {"llm": {"model": {"source": "hf://org/..", "servedName": "x"}}},
        "spec.llm.model.source: model source 'hf://org/..' is not one of modelscope://org/name, hf://org/name, pvc://claim/path",
        ("spec.llm.model.source",),
    ),
    Invalid(
        "dot-dot-in-pvc-path",
        {"llm": {"model": {"source": "pvc://weights/models/../../etc"}}},
        "spec.llm.model.source: model source 'pvc://weights/models/../../etc': the path inside the claim may not contain '..'",
        ("spec.llm.model.source", "the path inside the claim may not contain '..'"),
    ),
    Invalid(
        "priority-class-with-trailing-garbage",
        _llm(scheduling={"priorityClassName": "high/../x"}),
        "spec.llm.scheduling.priorityClassName: String should match pattern "
        "'^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
        ("spec.llm.scheduling.priorityClassName",),
    ),
    Invalid(
        "allowed-namespace-not-a-name",
        {**_llm(), "service": {"allowedNamespaces": ["Apps"]}},
        "spec.service.allowedNamespaces[0]: String should match pattern '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
        ("spec.service.allowedNamespaces[0]",),
    ),
    Invalid(
        "api-key-in-env",
        _llm(engine={"env": [{"name": "VLLM_API_KEY", "value": "sk-123"}]}),
        f"spec.llm.engine.env[0].name: {RULE_ENV}",
        ("spec.llm.engine.env[0].name", RULE_ENV),
    ),
    Invalid(
        "gpu-memory-over-one",
        _llm(engine={"gpuMemoryUtilization": 1.5}),
        "spec.llm.engine.gpuMemoryUtilization: Input should be less than or equal to 1",
        ("spec.llm.engine.gpuMemoryUtilization", "less than or equal to 1"),
    ),
    Invalid(
        "tool-parser-shape",
        _llm(engine={"toolCallParser": "Hermes Parser"}),
        "spec.llm.engine.toolCallParser: String should match pattern '^[a-z][a-z0-9_]*$'",
        ("spec.llm.engine.toolCallParser", "should match"),
    ),
    Invalid(
        "tool-parser-on-embedding",
        {"embedding": {"model": {"source": "hf://BAAI/bge-m3"}, "engine": {"toolCallParser": "hermes"}}},
        "spec.embedding.engine.toolCallParser: unknown field; check the spelling against `kubectl explain llmd.spec`",
        ("spec.embedding.engine.toolCallParser", "unknown field"),
    ),
    Invalid(
        "misspelled-field",
        _llm(engine={"maxModelLength": 4096}),
        "spec.llm.engine.maxModelLength: unknown field; check the spelling against `kubectl explain llmd.spec`",
        ("spec.llm.engine.maxModelLength", "unknown field"),
    ),
    Invalid(
        "cache-size-and-claim",
        {**_llm(), "cache": {"size": "100Gi", "existingClaim": "weights"}},
        f"spec.cache: {RULE_CACHE}",
        ("spec.cache", RULE_CACHE),
    ),
    Invalid(
        "negative-replicas",
        _llm(replicas=-1),
        "spec.llm.replicas: Input should be greater than or equal to 0",
        ("spec.llm.replicas", "greater than or equal to 0"),
    ),
    Invalid(
        "shm-not-a-quantity",
        _llm(shmSize="lots"),
        "spec.llm.shmSize: 'lots' is not a Kubernetes quantity (examples: 16Gi, 500m, 2)",
        ("spec.llm.shmSize", "should match"),
    ),
    Invalid(
        "unknown-dtype",
        _llm(engine={"dtype": "int4"}),
        "spec.llm.engine.dtype: Input should be 'auto', 'half', 'float16', 'bfloat16', 'float' or 'float32'",
        ("spec.llm.engine.dtype", "Unsupported value"),
    ),
    Invalid(
        "name-too-long",
        _llm(),
        "<root>: metadata.name must be at most 53 characters: child Services are named <name>-embedding",
        ("metadata.name must be at most 53 characters",),
        name="a" * 54,
    ),
    Invalid(
        "cpu-with-gpus",
        _llm(device="CPU", gpus=2),
        f"spec.llm.device: {RULE_CPU}",
        ("spec.llm.device", RULE_CPU),
    ),
    Invalid(
        "cpu-with-gpu-memory",
        _llm(device="CPU", engine={"gpuMemoryUtilization": 0.9}),
        f"spec.llm.device: {RULE_CPU}",
        ("spec.llm.device", RULE_CPU),
    ),
    Invalid(
        "kv-cache-on-gpu",
        _llm(kvCacheSize="2Gi"),
        f"spec.llm.kvCacheSize: {RULE_KV_CACHE}",
        ("spec.llm.kvCacheSize", RULE_KV_CACHE),
    ),
    Invalid(
        "unknown-device",
        _llm(device="TPU"),
        "spec.llm.device: Input should be 'GPU' or 'CPU'",
        ("spec.llm.device", "Unsupported value"),
    ),
    Invalid(
        "tokenizer-for-pvc-model",
        {"llm": {"model": {"source": "pvc://models/llama", "tokenizer": {"source": "hf://meta-llama/Llama-3.1-8B"}}}},
        f"spec.llm.model.tokenizer: {RULE_TOKENIZER_PVC}",
        ("spec.llm.model.tokenizer", RULE_TOKENIZER_PVC),
    ),
    Invalid(
        "tokenizer-in-extra-args",
        _llm(engine={"extraArgs": ["--tokenizer=/models/x"]}),
        f"spec.llm.engine.extraArgs: {RULE_EXTRA_ARGS}",
        ("spec.llm.engine.extraArgs", RULE_EXTRA_ARGS),
    ),
    Invalid(
        "misspelled-affinity-field",
        _llm(scheduling={"affinity": {"nodeAfinity": {}}}),
        "spec.llm.scheduling.affinity.nodeAfinity: unknown field; check the spelling against `kubectl explain llmd.spec`",
        ("spec.llm.scheduling.affinity.nodeAfinity", "unknown field"),
    ),
    Invalid(
        "affinity-term-without-topology-key",
        _llm(scheduling={"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "vllm"}}}]}}}),
        "spec.llm.scheduling.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey: "
        "required field is missing",
        ("topologyKey: Required value",),
    ),
    Invalid(
        "replicas-and-autoscaling",
        _llm(replicas=2, autoscaling={"provider": "External"}),
        f"spec.llm.autoscaling: {RULE_AUTOSCALING}",
        ("spec.llm.autoscaling", RULE_AUTOSCALING),
    ),
    Invalid(
        "external-autoscaling-with-settings",
        _llm(autoscaling={"provider": "External", "maxReplicas": 3}),
        f"spec.llm.autoscaling.provider: {RULE_EXTERNAL_SETTINGS}",
        ("spec.llm.autoscaling.provider", RULE_EXTERNAL_SETTINGS),
    ),
    Invalid(
        "keda-autoscaling-without-max",
        _llm(autoscaling={"minReplicas": 1}),
        f"spec.llm.autoscaling.maxReplicas: {RULE_MAX_REPLICAS}",
        ("spec.llm.autoscaling.maxReplicas", RULE_MAX_REPLICAS),
    ),
    Invalid(
        "autoscaling-min-above-max",
        _llm(autoscaling={"minReplicas": 3, "maxReplicas": 2}),
        "spec.llm.autoscaling.minReplicas: autoscaling.minReplicas must not exceed maxReplicas",
        ("spec.llm.autoscaling.minReplicas", "autoscaling.minReplicas must not exceed maxReplicas"),
    ),
    Invalid(
        "autoscaling-zero-target",
        _llm(autoscaling={"maxReplicas": 2, "target": "0.0"}),
        "spec.llm.autoscaling.target: autoscaling.target must be above 0",
        ("spec.llm.autoscaling.target", "autoscaling.target must be above 0"),
    ),
    Invalid(
        "kv-cache-target-above-one",
        _llm(autoscaling={"maxReplicas": 2, "metric": "KVCacheUsage", "target": "80"}),
        f"spec.llm.autoscaling.target: {RULE_KV_TARGET}",
        ("spec.llm.autoscaling.target", RULE_KV_TARGET),
    ),
    Invalid(
        "autoscaling-target-not-a-number",
        _llm(autoscaling={"maxReplicas": 2, "target": "80%"}),
        "spec.llm.autoscaling.target: String should match pattern '^[0-9]{1,6}([.][0-9]{1,6})?$'",
        ("spec.llm.autoscaling.target", "should match"),
    ),
    Invalid(
        "file-and-allow-patterns",
        {"llm": {"model": {"source": "hf://a/b", "file": "x.gguf", "allowPatterns": ["*.gguf"]}}},
        "spec.llm.model: file and allowPatterns cannot both be set: file already selects the one file to download",
        ("spec.llm.model", "file and allowPatterns cannot both be set"),
    ),
    Invalid(
        "env-value-and-value-from",
        _llm(engine={"env": [{"name": "X", "value": "1", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
        "spec.llm.engine.env[0]: set exactly one of value and valueFrom",
        ("spec.llm.engine.env[0]", "set exactly one of value and valueFrom"),
    ),
    Invalid(
        "existing-claim-with-storage-class",
        {**_llm(), "cache": {"existingClaim": "weights", "storageClassName": "nfs"}},
        "spec.cache: storageClassName and accessMode describe a new claim: they cannot be set with existingClaim",
        ("spec.cache", "cannot be set with existingClaim"),
    ),
    Invalid(
        "name-with-a-dot",
        _llm(),
        "<root>: metadata.name must start with a letter and contain only lowercase letters, digits and '-': it names Services",
        ("metadata.name must start with a letter",),
        name="model.v2",
    ),
]
