"""`make demo`: the local plane with its real node, the CRD, the operator, and the CPU RAG stack
(examples/cpu-rag-stack.yaml) serving real requests, also through an LLMGateway (examples/gateway.yaml)
with its chat page (Open WebUI) for the browser.

    python e2e/demo.py up     (after `make cluster-up`) leave the stack serving; print how to reach it
    python e2e/demo.py down   stop the operator and the hub (the Makefile then stops the plane)

The three models are tiny random ones generated here (e2e/cluster/tiny_models.py) and served by a
local ModelScope hub under the example's repository names, so their answers are noise: what the
demo shows is the path from `kubectl apply` to answers through each Service.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

import plane  # `python e2e/demo.py` puts e2e/ first on sys.path
import serving
from operator_process import REPO, OperatorProcess, eventually
from workloads import wait_established

NAMESPACE = "demo"
API_KEY = "demo-key-change-me"
GATEWAY_KEY = "demo-gateway-key-change-me"
GATEWAY_LABEL = {"gateway": "shared"}  # what examples/gateway.yaml selects
CHAT_ADMIN = {"email": "admin@example.com", "password": "demo-chat-password-change-me"}
CHAT_PAGE_LOCAL_PORT = 3000
METRICS = "127.0.0.1:19090"
HEALTH = "127.0.0.1:18080"
READY_TIMEOUT = 1200


def kubectl(cfg: plane.Config, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run([str(plane.find_binary("kubectl")), f"--kubeconfig={cfg.kubeconfig}", *args],
                            input=input, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        sys.exit(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result


def _pid_file(cfg: plane.Config, what: str) -> Path:
    return cfg.state_dir / f"demo-{what}.pid"


def _alive(pid: int) -> bool:
    try:
        # A demo operator that the tests restarted (see no_other_operator) is a
        # child of the test process: once stopped it stays a zombie, which kill(pid, 0) still finds,
        # until it is reaped here.
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: `make demo` started it
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _start(cfg: plane.Config, what: str, argv: list[str], ready) -> None:
    """Start a background process of the demo (unless it runs) and wait until `ready()`."""
    pid_file = _pid_file(cfg, what)
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        print(f"The demo's {what} already runs (pid {pid_file.read_text().strip()})")
        return
    log_path = cfg.logs_dir / f"demo-{what}.log"
    with open(log_path, "a", encoding="utf-8") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO,
                                   env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
    pid_file.write_text(str(process.pid))

    def check():
        if process.poll() is not None:
            sys.exit(f"The demo's {what} exited ({process.returncode}); see {log_path}")
        return ready()

    eventually(check, 60, what=f"the demo's {what}")
    print(f"Started the demo's {what} (pid {process.pid}), log {log_path}")


def _stop(cfg: plane.Config, what: str) -> None:
    pid_file = _pid_file(cfg, what)
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        eventually(lambda: not _alive(pid), 20, what=f"{what} exit")
        print(f"Stopped the demo's {what} (pid {pid})")
    pid_file.unlink()


def start_hub(cfg: plane.Config, repos: dict[str, Path]) -> None:
    """The ModelScope hub the demo's init containers download the tiny models from."""
    url = serving.hub_endpoints(cfg.node_ip)["modelscope"]
    _start(cfg, "hub", [sys.executable, "-m", "tests.hubs.server", "--host", cfg.node_ip,
                        "--port", str(serving.HUB_PORTS["modelscope"]),
                        *[f"--repo={repo}={directory}" for repo, directory in repos.items()]],
           lambda: _http_ok(f"{url}/api/v1/models/{next(iter(repos))}"))


def start_operator(cfg: plane.Config) -> None:
    _start(cfg, "operator", [str(Path(sys.executable).parent / "llm-operator"), "run", f"--kubeconfig={cfg.kubeconfig}",
                             f"--metrics-address={METRICS}", f"--health-address={HEALTH}",
                             *serving.operator_render_flags(cfg), "--read-pod-logs"],
           lambda: _http_ok(f"http://{HEALTH}/healthz"))


def running(cfg: plane.Config, what: str) -> bool:
    """Whether the demo's `what` ("hub" or "operator") is running."""
    pid_file = _pid_file(cfg, what)
    return pid_file.exists() and _alive(int(pid_file.read_text()))


@contextlib.contextmanager
def no_other_operator(cluster):
    """Stop every running operator (the tests' own and a running `make demo`'s, both cluster-admin
    over every namespace) for a test that must see only the operators it starts; start them again
    afterwards."""
    processes = list(OperatorProcess.running)
    demo_was_running = running(cluster.plane.cfg, "operator")
    try:  # from the first stop on: whatever fails, what was running runs again afterwards
        for process in processes:
            process.stop()
        if demo_was_running:
            stop(cluster.plane.cfg, "operator")
        yield
    finally:
        for process in processes:
            process.start()
        if demo_was_running:
            start_operator(cluster.plane.cfg)


def demo_repos() -> dict[str, Path]:
    return serving.hub_repos(serving.on_real_node(serving.load_example()), serving.tiny_models())


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def up() -> None:
    cfg = plane.Config.from_env()
    if not cfg.real_node:
        sys.exit("The demo serves on the plane's real node: unset LLMOPS_REAL_NODE and run `make demo` again")
    started = time.monotonic()
    kubectl(cfg, "apply", "--server-side", "-f", str(REPO / "crds"))
    for crd in ("llmdeployments.llmops.dev", "llmgateways.llmops.dev", "llmbatches.llmops.dev"):
        wait_established(functools.partial(kubectl, cfg), crd)

    print("Building (or reusing) the CPU runtime, gateway and chat page images and the tiny models ...", flush=True)
    for image, archive in (serving.cpu_runtime_image(), serving.gateway_image(), serving.chat_page_image()):
        if plane.import_image(cfg, archive, image):
            print(f"Imported {image} into the real node's containerd")
    manifest = serving.on_real_node(serving.load_example())
    manifest["metadata"]["labels"] = dict(GATEWAY_LABEL)  # served by the gateway too
    repos = demo_repos()

    start_hub(cfg, repos)
    start_operator(cfg)

    kubectl(cfg, "create", "namespace", NAMESPACE, check=False)
    kubectl(cfg, "-n", NAMESPACE, "create", "secret", "generic", "llm-api-key", f"--from-literal=api-key={API_KEY}",
            check=False)
    kubectl(cfg, "-n", NAMESPACE, "create", "secret", "generic", "gateway-key", f"--from-literal=api-key={GATEWAY_KEY}",
            check=False)
    kubectl(cfg, "-n", NAMESPACE, "create", "secret", "generic", "chat-admin",
            *(f"--from-literal={key}={value}" for key, value in CHAT_ADMIN.items()), check=False)
    applied = time.monotonic()
    kubectl(cfg, "-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    print(f"Applied {serving.CPU_EXAMPLE.relative_to(REPO)} (scheduled onto the real node) in namespace "
          f"{NAMESPACE}; waiting until it is Ready (download, then vLLM loading) ...", flush=True)
    waited = kubectl(cfg, "-n", NAMESPACE, "wait", "--for=condition=Ready", f"llmd/{name}",
                     f"--timeout={READY_TIMEOUT}s", check=False, timeout=READY_TIMEOUT + 30)
    if waited.returncode != 0:
        print(kubectl(cfg, "-n", NAMESPACE, "get", "llmd", name, "-o", "yaml").stdout)
        sys.exit(f"{name} did not become Ready; its status above says why")
    print(f"{name} is Ready {time.monotonic() - applied:.0f}s after apply "
          f"({time.monotonic() - started:.0f}s for the whole demo)\n")
    print(kubectl(cfg, "-n", NAMESPACE, "get", "llmd,deploy,svc,pods", "-o", "wide").stdout)

    status = json.loads(kubectl(cfg, "-n", NAMESPACE, "get", "llmd", name, "-o", "json").stdout)["status"]
    urls = {}
    for role in status["roles"]:
        service = json.loads(kubectl(cfg, "-n", NAMESPACE, "get", "service", f"{name}-{role}", "-o", "json").stdout)
        urls[role] = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    served = {role: info["servedName"] for role, info in status["roles"].items()}
    print("One request to each endpoint, through its Service's ClusterIP (the models are tiny and random: "
          "the text and numbers are noise, their shape is the point):")
    for role, (code, body) in serving.ask_every_role(urls, served, API_KEY).items():
        print(f"  {role:<10} {urls[role]}  HTTP {code}: {_summary(role, body)}")
    gateway_url = serve_gateway(cfg, served)
    print(f"""
In-cluster URLs (status.roles): {', '.join(info['url'] for info in status['roles'].values())}
Try it:
  export KUBECONFIG={cfg.kubeconfig}
  kubectl -n {NAMESPACE} get llmd
  curl -s {urls['llm']}/v1/chat/completions -H 'Authorization: Bearer {API_KEY}' -H 'Content-Type: application/json' \\
    -d '{{"model": "{served['llm']}", "messages": [{{"role": "user", "content": "Hello"}}], "max_tokens": 16}}'
  curl -s {gateway_url}/v1/models -H 'Authorization: Bearer {GATEWAY_KEY}'
  curl -s http://{METRICS}/metrics | grep llmops_
The chat page (Open WebUI) for the gateway's chat model, in your browser:
  kubectl -n {NAMESPACE} port-forward service/shared-chat {CHAT_PAGE_LOCAL_PORT}:8080
  then open http://127.0.0.1:{CHAT_PAGE_LOCAL_PORT} and sign in as {CHAT_ADMIN['email']} / {CHAT_ADMIN['password']}
Stop everything with: make demo-down""")


def serve_gateway(cfg: plane.Config, served: dict[str, str]) -> str:
    """examples/gateway.yaml over the stack, with its chat page; one request through it, and the
    page's health through its Service. Returns the gateway's base URL."""
    gateway = serving.gateway_on_real_node(GATEWAY_LABEL)
    gateway["spec"]["chatPage"] = {"adminSecretRef": {"name": "chat-admin"},
                                   "storage": {"size": "1Gi", "storageClassName": plane.LOCAL_STORAGE_CLASS}}
    kubectl(cfg, "-n", NAMESPACE, "apply", "-f", "-", input=yaml.safe_dump(gateway))
    name = gateway["metadata"]["name"]
    waited = kubectl(cfg, "-n", NAMESPACE, "wait", "--for=condition=Ready", f"llmgw/{name}", "--timeout=300s",
                     check=False, timeout=330)
    if waited.returncode != 0:
        print(kubectl(cfg, "-n", NAMESPACE, "get", "llmgw", name, "-o", "yaml").stdout)
        sys.exit(f"LLMGateway {name} did not become Ready; its status above says why")
    service = json.loads(kubectl(cfg, "-n", NAMESPACE, "get", "service", f"{name}-gateway", "-o", "json").stdout)
    url = f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    request = {"model": served["llm"], "max_tokens": 12, "messages": [{"role": "user", "content": "What is a GPU?"}]}
    # Its router finds the pods by itself, moments after the gateway is Ready.
    code, body = eventually(lambda: (lambda r: r if r[0] == 200 else None)(
        serving.post_json(url + "/v1/chat/completions", request, GATEWAY_KEY)), 60, interval=1,
        what="an answer through the gateway")
    print(f"\nOne request through LLMGateway {name} ({', '.join(served.values())} behind one key): "
          f"{url}  HTTP {code}: {_summary('llm', body)}")
    page = json.loads(kubectl(cfg, "-n", NAMESPACE, "get", "service", f"{name}-chat", "-o", "json").stdout)["spec"]
    page_url = f"http://{page['clusterIP']}:{page['ports'][0]['port']}"
    try:
        health = "healthy" if _http_ok(page_url + "/health") else "unhealthy"
    except OSError as error:
        health = f"not answering /health ({error})"
    print(f"Its chat page {page_url}: {health}, "
          f"listing {', '.join(status_of(cfg, name)['chatPage']['models'])}")
    return url


def status_of(cfg: plane.Config, gateway: str) -> dict:
    return json.loads(kubectl(cfg, "-n", NAMESPACE, "get", "llmgw", gateway, "-o", "json").stdout)["status"]


def _summary(role: str, body) -> str:
    if not isinstance(body, dict):
        return str(body)[:200]
    if role == "llm" and body.get("choices"):
        return f"{body['choices'][0]['message']['content']!r} ({body['usage']['completion_tokens']} tokens)"
    if role == "embedding" and body.get("data"):
        return f"{len(body['data'])} vectors of {len(body['data'][0]['embedding'])} numbers"
    if role == "rerank" and body.get("results"):
        return "scores " + ", ".join(f"doc {r['index']}: {r['relevance_score']:.3f}" for r in body["results"])
    return json.dumps(body)[:200]


def stop(cfg: plane.Config, what: str) -> None:
    _stop(cfg, what)


def down() -> None:
    cfg = plane.Config.from_env()
    for what in ("operator", "hub"):
        _stop(cfg, what)


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1] if len(sys.argv) > 1 else "up"]()
