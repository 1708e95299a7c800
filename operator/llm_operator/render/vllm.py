"""The `vllm serve` command line for one role (vLLM 0.33, see runtime/llm_runtime/versions.py).

Facts this file relies on, checked against vLLM's own parser by tests/test_vllm_contract.py:
- `--task` was removed (0.13): embedding and rerank models run with `--runner pooling`, plus
  `--convert embed|classify` to adapt a model trained for something else.
- `--enable-reasoning` was removed: `--reasoning-parser NAME` alone turns reasoning on.
- `--enable-auto-tool-choice` requires `--tool-call-parser`.
- The API key is read from VLLM_API_KEY; it never appears here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.workload import EngineSpec, GenerativeEngineSpec, PoolingEngineSpec
from .config import CONTAINER_PORT

if TYPE_CHECKING:
    from .plan import RolePlan

POOLING_ROLES = ("embedding", "rerank")


def _engine_args(engine: EngineSpec) -> list[str]:
    args: list[str] = []
    if engine.maxModelLen is not None:
        args += ["--max-model-len", str(engine.maxModelLen)]
    if engine.gpuMemoryUtilization is not None:
        args += ["--gpu-memory-utilization", repr(float(engine.gpuMemoryUtilization))]
    if engine.dtype is not None:
        args += ["--dtype", engine.dtype]
    if engine.quantization is not None:
        args += ["--quantization", engine.quantization]
    if engine.enablePrefixCaching is not None:
        args.append("--enable-prefix-caching" if engine.enablePrefixCaching else "--no-enable-prefix-caching")
    if engine.trustRemoteCode:
        args.append("--trust-remote-code")
    return args


def _model_args(plan: RolePlan) -> list[str]:
    """The flags `vllm serve` and `vllm run-batch` share: served name, parallel sizes, tokenizer."""
    args = [
        "--served-model-name", plan.served_name,
        "--tensor-parallel-size", str(plan.tensor_parallel),
        "--pipeline-parallel-size", str(plan.pipeline_parallel),
    ]
    if plan.tokenizer_path:
        args += ["--tokenizer", plan.tokenizer_path]
    return args


def serve_args(plan: RolePlan) -> list[str]:
    """Arguments after `vllm serve`: the local model path first, then flags, then extraArgs."""
    args = [plan.model_path, "--port", str(CONTAINER_PORT), *_model_args(plan)]
    engine = plan.engine
    if plan.role_name in POOLING_ROLES:
        args += ["--runner", "pooling"]
        if isinstance(engine, PoolingEngineSpec) and engine.convert:
            args += ["--convert", engine.convert]
    if engine is None:
        return args
    args += _engine_args(engine)
    if isinstance(engine, GenerativeEngineSpec):
        if engine.toolCallParser:
            args += ["--enable-auto-tool-choice", "--tool-call-parser", engine.toolCallParser]
        if engine.reasoningParser:
            args += ["--reasoning-parser", engine.reasoningParser]
    return args + list(engine.extraArgs or ())


def run_batch_args(plan: RolePlan) -> list[str]:
    """Arguments of `vllm run-batch` after its input and output files: the model by `--model` (run-batch
    takes no positional model), the served name the requests' `model` must match, parallelism, the
    engine settings and extraArgs. No port: nothing listens."""
    args = ["--model", plan.model_path, *_model_args(plan)]
    engine = plan.engine
    if engine is None:
        return args
    return args + _engine_args(engine) + list(engine.extraArgs or ())
