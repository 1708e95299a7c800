"""The vLLM contract check really checks: it rejects flags vLLM 0.33 removed and accepts a known-good line.

The positive test over every example and hypothesis-generated specs lives with the renderer
(tests/test_vllm_contract.py); both use the `vllm_parser` fixture of tests/vllm_check.py.
"""

from __future__ import annotations

import pytest

MODEL = "/models/modelscope/Qwen/Qwen2.5-7B-Instruct/master"

KNOWN_GOOD = [
    MODEL,
    "--runner", "pooling",
    "--served-model-name", "x",
    "--tensor-parallel-size", "2",
    "--tool-call-parser", "hermes", "--enable-auto-tool-choice",
    "--reasoning-parser", "deepseek_r1",
    "--max-model-len", "4096",
    "--gpu-memory-utilization", "0.9",
    "--enable-prefix-caching",
    "--trust-remote-code",
    "--quantization", "gptq",
    "--dtype", "bfloat16",
    "--pipeline-parallel-size", "2",
]


def test_known_good_line_is_accepted(vllm_parser):
    ok, error = vllm_parser.check(KNOWN_GOOD)
    assert ok, error


@pytest.mark.parametrize("removed,flag", [
    (["--task", "embed"], "--task"),  # removed in 0.13: use --runner pooling
    (["--enable-reasoning"], "--enable-reasoning"),  # removed: --reasoning-parser alone is enough
    (["--no-such-flag"], "--no-such-flag"),
])
def test_removed_or_unknown_flags_are_rejected(vllm_parser, removed, flag):
    ok, error = vllm_parser.check([MODEL, "--served-model-name", "x", *removed])
    assert not ok
    assert flag in error


def test_positional_model_path_is_required_and_single(vllm_parser):
    assert not vllm_parser.check(["--served-model-name", "x"])[0]
    ok, error = vllm_parser.check([MODEL, "/models/other"])
    assert not ok and "/models/other" in error


def test_serve_time_validation_runs(vllm_parser):
    # `vllm serve` validates after parsing: auto tool choice needs a tool-call parser.
    ok, error = vllm_parser.check([MODEL, "--enable-auto-tool-choice"])
    assert not ok and "--tool-call-parser" in error


def test_bad_value_is_rejected(vllm_parser):
    ok, error = vllm_parser.check([MODEL, "--max-model-len", "lots"])
    assert not ok and "--max-model-len" in error
