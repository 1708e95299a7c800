"""The installed `llm-operator` command, as a user runs it."""

import subprocess
import sys
from pathlib import Path

import yaml

from support import REPO

CLI = str(Path(sys.executable).parent / "llm-operator")


def run(*args, **kwargs):
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=REPO, **kwargs, check=False)


def test_crd_command_is_byte_identical_to_the_committed_file():
    assert run("crd").stdout == (REPO / "crds" / "llmops.dev_llmdeployments.yaml").read_text()


def test_render_reads_stdin_and_exits_2_on_bad_input():
    good = run("render", "-f", "-", input=(REPO / "examples" / "minimal.yaml").read_text())
    assert good.returncode == 0 and "kind: Deployment" in good.stdout
    bad = run("render", "-f", "-", input="apiVersion: llmops.dev/v1alpha1\nkind: LLMDeployment\n"
              "metadata: {name: x}\nspec: {llm: {model: {source: 'hf://a/b'}, gpus: 2, tensorParallelSize: 3}}\n")
    assert bad.returncode == 2
    assert "spec.llm.tensorParallelSize" in bad.stderr and bad.stdout == ""


def test_render_renders_every_kind_and_a_gateway_routes_to_the_models_it_selects():
    stack = yaml.safe_load((REPO / "examples" / "cpu-rag-stack.yaml").read_text())
    stack["metadata"]["labels"] = {"gateway": "shared"}
    text = "---\n".join(yaml.safe_dump(d) for d in [stack]) + "---\n" + \
        (REPO / "examples" / "gateway.yaml").read_text() + "---\n" + (REPO / "examples" / "batch.yaml").read_text()
    result = run("render", "-f", "-", input=text)
    assert result.returncode == 0, result.stderr
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o}
    assert ("Deployment", "cpu-rag-llm") in objects and ("Deployment", "shared-gateway") in objects
    batch = next(o for (kind, _), o in objects.items() if kind == "Job")
    assert batch["metadata"]["labels"]["llmops.dev/batch"]
    lua = objects[("ConfigMap", "shared-gateway")]["data"]["gateway.lua"]
    served = [role["model"]["servedName"] for role in (stack["spec"][r] for r in ("llm", "embedding", "rerank"))]
    assert all(f"[ [[{name}]] ]" in lua for name in served), lua[:400]


def test_render_names_the_field_of_an_invalid_gateway_or_batch():
    gateway = (REPO / "examples" / "gateway.yaml").read_text().replace("policy: PrefixAware", "policy: Random")
    result = run("render", "-f", "-", input=gateway)
    assert result.returncode == 2 and "LLMGateway 'shared' is invalid" in result.stderr and "spec.policy" in result.stderr
    batch = yaml.safe_load((REPO / "examples" / "batch.yaml").read_text())
    batch["spec"]["output"]["persistentVolumeClaim"]["path"] = "."
    result = run("render", "-f", "-", input=yaml.safe_dump(batch))
    assert result.returncode == 2 and "LLMBatch" in result.stderr and "persistentVolumeClaim.path" in result.stderr


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
                    "--leader-election-namespace", "--leader-election-id", "--lease-seconds", "--read-pod-logs"}
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
