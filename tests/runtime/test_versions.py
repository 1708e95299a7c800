"""The vLLM version is pinned once (versions.py); the Dockerfiles repeat literals that must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from llm_runtime import versions

REPO = Path(__file__).resolve().parents[2]


def _from_lines(dockerfile: Path) -> list[str]:
    return re.findall(r"^FROM\s+(\S+)", dockerfile.read_text(), flags=re.M)


def test_runtime_dockerfile_uses_the_pinned_vllm_image():
    assert _from_lines(REPO / "runtime" / "Dockerfile") == [f"vllm/vllm-openai:v{versions.VLLM_VERSION}"], (
        "runtime/Dockerfile's FROM tag differs from VLLM_VERSION in runtime/llm_runtime/versions.py: "
        "change both together"
    )
    assert versions.VLLM_BASE_IMAGE == f"vllm/vllm-openai:v{versions.VLLM_VERSION}"


def test_runtime_dockerfile_installs_the_sdk_versions_of_the_runtime_extra():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = sorted(pyproject["project"]["optional-dependencies"]["runtime"])
    text = (REPO / "runtime" / "Dockerfile").read_text()
    for requirement in extra:
        assert requirement in text, f"runtime/Dockerfile must install {requirement} (pyproject.toml runtime extra)"


def test_runtime_image_tag_names_operator_and_vllm_versions():
    assert versions.runtime_image("1.2.3") == f"ghcr.io/llmops-dev/llm-runtime:1.2.3-vllm{versions.VLLM_VERSION}"
    assert versions.RUNTIME_IMAGE.endswith(f"-vllm{versions.VLLM_VERSION}")


def test_vllm_check_env_takes_the_version_from_versions_py():
    script = (REPO / "runtime" / "vllm-check-env.sh").read_text()
    assert "runtime/llm_runtime/versions.py" in script
    assert "vllm==" not in (REPO / "runtime" / "vllm-check-requirements.txt").read_text().replace("vllm==<", "")


def test_operator_dockerfile():
    text = (REPO / "Dockerfile").read_text()
    assert _from_lines(REPO / "Dockerfile")[-1] == "python:3.11-slim"
    assert re.search(r"^USER\s+\d+", text, flags=re.M), "the operator image runs as a non-root UID"
    assert 'ENTRYPOINT ["llm-operator", "run"]' in text
