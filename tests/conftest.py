"""Fixtures shared by the tests under tests/ (command-line options live in the root conftest.py)."""

from vllm_check import vllm_parser  # noqa: F401  - session fixture: vLLM's own `vllm serve` argument parser
