"""The installed `llm-operator` command, as a user runs it."""

import subprocess
import sys
from pathlib import Path

from support import REPO

CLI = str(Path(sys.executable).parent / "llm-operator")


def run(*args, **kwargs):
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=REPO, **kwargs)


def test_crd_command_is_byte_identical_to_the_committed_file():
    assert run("crd").stdout == (REPO / "crds" / "llmops.dev_llmdeployments.yaml").read_text()


def test_render_reads_stdin_and_exits_2_on_bad_input():
    good = run("render", "-f", "-", input=(REPO / "examples" / "minimal.yaml").read_text())
    assert good.returncode == 0 and "kind: Deployment" in good.stdout
    bad = run("render", "-f", "-", input="apiVersion: llmops.dev/v1alpha1\nkind: LLMDeployment\n"
              "metadata: {name: x}\nspec: {llm: {model: {source: 'hf://a/b'}, gpus: 2, tensorParallelSize: 3}}\n")
    assert bad.returncode == 2
    assert "spec.llm.tensorParallelSize" in bad.stderr and bad.stdout == ""


def test_render_missing_file_is_a_clear_error():
    result = run("render", "-f", "does-not-exist.yaml")
    assert result.returncode == 2 and "does-not-exist.yaml" in result.stderr


def test_version_names_the_pinned_vllm():
    from llm_runtime.versions import VLLM_VERSION

    assert f"vLLM {VLLM_VERSION}" in run("version").stdout
