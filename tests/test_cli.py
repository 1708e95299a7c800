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


def test_render_takes_every_flag_that_changes_what_run_applies():
    """`render` and `run` share their rendering flags, so `render -f X` prints what the operator applies."""
    from llm_operator.cli import build_parser

    def rendering_flags(command):
        parser = next(a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == command)[1]
        return {option for action in parser._actions for option in action.option_strings}

    runtime_only = {"--namespace", "--kubeconfig", "--metrics-address", "--health-address", "--workers",
                    "--resync-seconds", "--watch-stall-seconds", "--crd-wait-seconds", "--log-format", "-v", "--verbose",
                    "--leader-election-namespace", "--leader-election-id", "--lease-seconds"}
    assert rendering_flags("run") - runtime_only <= rendering_flags("render")
    hub = run("render", "-f", "examples/minimal.yaml", "--modelscope-endpoint", "http://hub.local:8500",
              "--hf-endpoint", "http://hf.local:8501")
    assert hub.returncode == 0 and "http://hub.local:8500" in hub.stdout  # a modelscope:// model


def test_explicit_kubeconfig_wins_over_the_in_cluster_service_account(tmp_path, monkeypatch):
    from kubernetes import config

    from llm_operator.k8s import load_config

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters: [{name: k, cluster: "
                          "{server: 'https://127.0.0.9:6443'}}]\nusers: [{name: u, user: {token: t}}]\n"
                          "contexts: [{name: c, context: {cluster: k, user: u}}]\n")
    monkeypatch.setattr(config, "load_incluster_config", lambda: None)  # as if running in a pod
    assert load_config(str(kubeconfig)).configuration.host == "https://127.0.0.9:6443"
