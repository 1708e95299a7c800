"""`make demo`: the local control plane, the CRD, the operator, and the RAG-stack example until Ready.

`python e2e/demo.py up` leaves the plane and the operator running and prints how to reach them;
`python e2e/demo.py down` stops the operator (the Makefile then stops the plane).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plane  # noqa: E402
from operator_process import REPO, eventually  # noqa: E402

NAMESPACE = "demo"
EXAMPLE = REPO / "examples" / "rag-stack.yaml"
METRICS = "127.0.0.1:19090"
HEALTH = "127.0.0.1:18080"


def kubectl(cfg: plane.Config, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(plane.find_binary("kubectl")), f"--kubeconfig={cfg.kubeconfig}", *args],
                            input=input, capture_output=True, text=True)
    if check and result.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result


def operator_pid_file(cfg: plane.Config) -> Path:
    return cfg.state_dir / "operator.pid"


def start_operator(cfg: plane.Config) -> None:
    pid_file = operator_pid_file(cfg)
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        print(f"Operator already running (pid {pid_file.read_text().strip()})")
        return
    log = open(cfg.logs_dir / "operator.log", "a", encoding="utf-8")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "llm-operator"), "run", f"--kubeconfig={cfg.kubeconfig}",
         f"--metrics-address={METRICS}", f"--health-address={HEALTH}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
        env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
    pid_file.write_text(str(process.pid))
    import urllib.request

    def healthy():
        if process.poll() is not None:
            sys.exit(f"The operator exited ({process.returncode}); see {cfg.logs_dir / 'operator.log'}")
        with urllib.request.urlopen(f"http://{HEALTH}/healthz", timeout=2) as response:
            return response.status == 200

    eventually(healthy, 30, what="operator health")
    print(f"Started operator (pid {process.pid}), log {cfg.logs_dir / 'operator.log'}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def up() -> None:
    cfg = plane.Config.from_env()
    kubectl(cfg, "apply", "--server-side", "-f", str(REPO / "crds"))
    kubectl(cfg, "wait", "--for=condition=Established", "crd/llmdeployments.llmops.dev", "--timeout=60s")
    start_operator(cfg)

    kubectl(cfg, "create", "namespace", NAMESPACE, check=False)
    kubectl(cfg, "-n", NAMESPACE, "create", "secret", "generic", "llm-api-key",
            "--from-literal=api-key=demo-key-change-me", check=False)
    # The example asks for a 200Gi ReadWriteMany claim of class "nfs": give it a volume to bind.
    kubectl(cfg, "apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "demo-model-cache"},
        "spec": {"capacity": {"storage": "200Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "nfs",
                 "hostPath": {"path": "/tmp/llm-operator-demo"},
                 "claimRef": {"namespace": NAMESPACE, "name": "rag-stack-cache"}}}))

    started = time.monotonic()
    kubectl(cfg, "-n", NAMESPACE, "apply", "-f", str(EXAMPLE))
    print(f"Applied {EXAMPLE.relative_to(REPO)} in namespace {NAMESPACE}; waiting for Ready ...")
    waited = kubectl(cfg, "-n", NAMESPACE, "wait", "--for=condition=Ready", "llmd/rag-stack", "--timeout=180s",
                     check=False)
    if waited.returncode != 0:
        print(kubectl(cfg, "-n", NAMESPACE, "get", "llmd", "rag-stack", "-o", "yaml").stdout)
        sys.exit("rag-stack did not become Ready; its status above says why")
    print(f"rag-stack is Ready after {time.monotonic() - started:.1f}s\n")

    print(kubectl(cfg, "-n", NAMESPACE, "get", "llmd,deploy,svc,pods", "-o", "wide").stdout)
    status = json.loads(kubectl(cfg, "-n", NAMESPACE, "get", "llmd", "rag-stack", "-o", "json").stdout)["status"]
    print("Endpoints (in-cluster, OpenAI-compatible; send the API key as a Bearer token):")
    for role, info in status["roles"].items():
        print(f"  {role:<10} {info['url']:<50} model={info['servedName']}")
    print(f"""
Try it:
  export KUBECONFIG={cfg.kubeconfig}
  kubectl -n {NAMESPACE} get llmd
  kubectl -n {NAMESPACE} patch llmd rag-stack --type=merge -p '{{"spec":{{"llm":{{"gpus":16}}}}}}'   # watch it report the GPU shortage
  curl -s http://{METRICS}/metrics | grep llmops_
Stop everything with: make demo-down""")


def down() -> None:
    cfg = plane.Config.from_env()
    pid_file = operator_pid_file(cfg)
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            eventually(lambda: not _alive(pid), 20, what="operator exit")
            print(f"Stopped operator (pid {pid})")
        pid_file.unlink()


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1] if len(sys.argv) > 1 else "up"]()
