"""Fixtures for `llm-runtime download` against local hub servers (real SDKs, loopback only)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.hubs import HFHub, ModelScopeHub, make_tiny_model  # noqa: E402 - after the repository is on sys.path

MS_REPO = "tiny-org/tiny-model"
HF_REPO = "tiny-org/tiny-model"


@pytest.fixture(scope="session")
def tiny():
    return make_tiny_model()


@pytest.fixture
def ms_hub(tiny):
    with ModelScopeHub({MS_REPO: {"master": tiny, "v1.0": tiny}}) as hub:
        yield hub


@pytest.fixture
def hf_hub(tiny):
    with HFHub({HF_REPO: {"main": tiny, "v1.0": tiny}}) as hub:
        yield hub


@pytest.fixture(params=["modelscope", "hf"])
def hub(request, tiny):
    """Either hub, with the source URI that points at it: `hub.source`."""
    cls = ModelScopeHub if request.param == "modelscope" else HFHub
    revision = "master" if request.param == "modelscope" else "main"
    with cls({MS_REPO: {revision: tiny}}) as server:
        server.scheme = request.param
        server.source = f"{request.param}://{MS_REPO}"
        server.default_revision = revision
        yield server


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A HOME, SDK caches and a cache volume inside tmp_path; no proxy, no telemetry, no token."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "HF_HOME": str(tmp_path / "hf-home"),
        "MODELSCOPE_CACHE": str(tmp_path / "ms-cache"),
        "MODELSCOPE_HOME": str(tmp_path / "ms-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "LLM_RUNTIME_BACKOFF_SECONDS": "0.05",
        "LLM_RUNTIME_ATTEMPTS": "3",
        "MODELSCOPE_DOWNLOAD_MAX_RETRIES": "1",
        "MODELSCOPE_API_MAX_RETRIES": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy",
              "HF_TOKEN", "MODELSCOPE_API_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "MODELSCOPE_ENDPOINT"):
        monkeypatch.delenv(k, raising=False)
    cache = tmp_path / "cache"
    cache.mkdir()
    return tmp_path


class Runner:
    """Runs `llm-runtime download` as its own process, as the init container does."""

    def __init__(self, sandbox: Path) -> None:
        self.sandbox = sandbox
        self.cache = sandbox / "cache"
        self.termination_log = sandbox / "termination-log"

    def env(self, hub=None, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        if hub is not None:
            env["MODELSCOPE_ENDPOINT" if isinstance(hub, ModelScopeHub) else "HF_ENDPOINT"] = hub.url
        env["PYTHONPATH"] = os.pathsep.join([str(REPO / "runtime"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.update(extra)
        return env

    def argv(self, source: str, *args: str) -> list[str]:
        return [sys.executable, "-m", "llm_runtime.cli", "download", "--source", source,
                "--cache-dir", str(self.cache), "--termination-log", str(self.termination_log), *args]

    def run(self, source: str, *args: str, hub=None, timeout: float = 120, **extra: str):
        return subprocess.run(self.argv(source, *args), env=self.env(hub, **extra), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def popen(self, source: str, *args: str, hub=None, **extra: str) -> subprocess.Popen:
        return subprocess.Popen(self.argv(source, *args), env=self.env(hub, **extra), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def message(self) -> str:
        return self.termination_log.read_text() if self.termination_log.exists() else ""


@pytest.fixture
def runner(sandbox):
    return Runner(sandbox)
