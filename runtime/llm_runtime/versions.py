"""The one place the vLLM version is pinned.

`runtime/Dockerfile` repeats the tag in its FROM line (Dockerfiles cannot import Python);
tests/runtime/test_versions.py fails when the two differ. The operator's default runtime image
and the vLLM argument check (`make vllm-check-env`) both take the version from here.
"""

from __future__ import annotations

from importlib import metadata

VLLM_VERSION = "0.33.0"
VLLM_BASE_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
RUNTIME_IMAGE_REPOSITORY = "ghcr.io/llmops-dev/llm-runtime"


def _distribution_version() -> str:
    try:
        return metadata.version("llm-operator")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


OPERATOR_VERSION = _distribution_version()


def runtime_image(operator_version: str = OPERATOR_VERSION, repository: str = RUNTIME_IMAGE_REPOSITORY) -> str:
    """Tag of the runtime image built from runtime/Dockerfile for this operator and vLLM version."""
    return f"{repository}:{operator_version}-vllm{VLLM_VERSION}"


RUNTIME_IMAGE = runtime_image()
