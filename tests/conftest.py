"""Fixtures shared by the tests under tests/ (command-line options live in the root conftest.py)."""

import vllm_check
from vllm_check import vllm_parser  # noqa: F401  - session fixture: vLLM's own `vllm serve` argument parser


def pytest_collection_finish(session):
    vllm_check.start_early(session.items)


def pytest_sessionfinish(session, exitstatus):
    vllm_check.stop_early()
