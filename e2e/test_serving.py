"""Serve for real: the CPU RAG stack from a custom resource to answers, on the plane's real node.

Real parts only: the operator process renders the pods; the kubelet runs them in containerd from
the CPU runtime image built by runtime/cpu-image.sh; the init containers download tiny generated
models from the local ModelScope hub (the real SDK) into a local PersistentVolume; vLLM (CPU
build) serves them; requests go through each Service's ClusterIP (kube-proxy). The models are
random, so only the shape of each answer is checked, never its text.

The stack is also served through an LLMGateway, with a second chat model beside it: Envoy and one
vLLM router per model from the gateway image (runtime/gateway-image.sh), the routers finding the
ready pods with their own Kubernetes service discovery (through the `kubernetes` Service, which the
plane relays to the API server).

The gateway then gets its chat page (Open WebUI, from runtime/chat-page-image.sh), and Debian's
Chromium, headless, signs in through `kubectl port-forward`, picks the chat model and gets an answer
from it (e2e/browser.py).

The tests build on one another (one stack, the gateway, then a restart, a second replica,
failures), in file order. They need root, the real node and a few GiB of memory per vLLM server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml

import browser
import plane
import serving
from llm_operator.render.gateway.deployment import DRAIN_SECONDS
from llm_operator.render.meta import upstream_stat_name
from monitoring import MONITORING_VALUES, exposed_families, vllm_metrics_used
from operator_process import eventually
from rag_stack import (
    API_KEY,
    GATEWAY,
    GATEWAY_KEY,
    GATEWAY_LABEL,
    READY_TIMEOUT,
    Stack,
    gateway_ready,
    gateway_status,
    gateway_url,
    init_log,
    new_namespace,
)
from tests.hubs import TinyModel
from workloads import condition, get

SECOND_CHAT = "tiny-chat-2"
ROLES = ("llm", "embedding", "rerank")  # of the RAG stack
RATE = 1.5 * 1024 * 1024  # hub bytes/s per file: each model downloads for a few seconds, so Downloading is seen
METRICS = ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc")

pytestmark = pytest.mark.usefixtures("real_node")


@pytest.fixture(scope="module")
def stack(cluster, operator, pod_hubs, cpu_image):
    """The CPU RAG stack example, aimed at the real node, in a namespace of its own."""
    models = serving.tiny_models()
    manifest = serving.on_real_node(serving.load_example())
    for repo, directory in serving.hub_repos(manifest, models).items():
        pod_hubs.modelscope.repos[repo] = {"master": TinyModel.from_directory(directory)}
    namespace = new_namespace(cluster, "e2e-serving")
    cluster.kubectl("-n", namespace, "create", "secret", "generic", "llm-api-key", f"--from-literal=api-key={API_KEY}")
    yield Stack(cluster, namespace, manifest, models, pod_hubs.modelscope)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


class PhaseRecorder:
    """The phases status goes through, as `kubectl get -w` sees them, with the time of each."""

    def __init__(self, stack: Stack):
        self.seen: list[tuple[float, str]] = []
        self.process = subprocess.Popen(
            [str(stack.cluster.bin("kubectl")), f"--kubeconfig={stack.cluster.kubeconfig}", "-n", stack.namespace,
             "get", "llmd", stack.name, "--watch", "--no-headers", "-o", "custom-columns=PHASE:.status.phase"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.started = time.monotonic()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.process.stdout:
            phase = line.strip()
            if phase and phase != "<none>" and (not self.seen or self.seen[-1][1] != phase):
                self.seen.append((time.monotonic() - self.started, phase))

    def stop(self, last: str | None = None, timeout: float = 30) -> list[str]:
        """Stop watching, once the watch has shown `last` (if given): `kubectl wait` has its own
        watch, which may see a change moments before this one does."""
        deadline = time.monotonic() + timeout
        while last and (not self.seen or self.seen[-1][1] != last) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.process.terminate()
        self.process.wait(10)
        return [phase for _, phase in self.seen]


def _in_order(seen: list[str], expected: list[str]) -> bool:
    """`expected` appears in `seen` as a subsequence."""
    it = iter(seen)
    return all(phase in it for phase in expected)


# ------------------------------------------------------------------ the stack serves


def test_rag_stack_goes_from_apply_to_answers(stack):
    stack.hub.rate = RATE
    stack.hub.reset_counts()
    started = time.monotonic()
    stack.apply(stack.manifest)
    recorder = PhaseRecorder(stack)  # a watch lists the current state first: nothing is missed
    waited = stack.wait_ready()
    stack.times["first Ready"] = time.monotonic() - started
    stack.first_pods = {role: stack.pods(role) for role in ROLES}
    phases = recorder.stop(last="Ready")
    stack.hub.rate = None
    print(f"\nApply to Ready (cold pods, downloads at {RATE / 2**20:.1f} MiB/s per file): "
          f"{stack.times['first Ready']:.1f}s; phases {recorder.seen}")

    # `kubectl wait` returned when, and only when, every role serves.
    for role in ("llm", "embedding", "rerank"):
        deployment = get(stack.cluster, stack.namespace, "deployment", f"{stack.name}-{role}")
        assert deployment["status"].get("readyReplicas") == 1, role
    assert waited > 5
    assert _in_order(phases, ["Downloading", "Starting", "Ready"]), phases
    assert set(phases) <= {"Pending", "Downloading", "Starting", "Ready"}, phases
    # The init containers really downloaded every file of the three models.
    downloaded = set(stack.hub.file_requests())
    for directory in serving.hub_repos(stack.manifest, stack.models).values():
        assert {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()} <= downloaded

    answers = serving.ask_every_role(stack.base_urls(), stack.served_names(), API_KEY)
    status, chat = answers["llm"]
    assert status == 200, chat
    assert chat["usage"]["completion_tokens"] > 0 and isinstance(chat["choices"][0]["message"]["content"], str)
    status, embeddings = answers["embedding"]
    assert status == 200, embeddings
    hidden = json.loads((stack.models / "embedding" / "config.json").read_text())["hidden_size"]
    assert [len(item["embedding"]) for item in embeddings["data"]] == [hidden, hidden]
    status, rerank = answers["rerank"]
    assert status == 200, rerank
    assert sorted(r["index"] for r in rerank["results"]) == [0, 1, 2]
    assert all(isinstance(r["relevance_score"], float) for r in rerank["results"])
    print(f"Chat answered (noise from a random model): {chat['choices'][0]['message']['content']!r}")


def test_api_key_is_enforced(stack):
    urls, served = stack.base_urls(), stack.served_names()
    body = {"model": served["llm"], "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}
    assert serving.post_json(urls["llm"] + "/v1/chat/completions", body)[0] == 401
    assert serving.post_json(urls["llm"] + "/v1/chat/completions", body, "wrong-key")[0] == 401
    assert serving.post_json(urls["llm"] + "/v1/chat/completions", body, API_KEY)[0] == 200
    for role, path, request in (("embedding", "/v1/embeddings", {"model": served["embedding"], "input": "x"}),
                                ("rerank", "/v1/rerank", {"model": served["rerank"], "query": "q", "documents": ["d"]})):
        assert serving.post_json(urls[role] + path, request)[0] == 401, role
        assert serving.post_json(urls[role] + path, request, API_KEY)[0] == 200, role


# ------------------------------------------------------------------ one endpoint for every model


def _get_json(url, key=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _chat(url, model, key=GATEWAY_KEY):
    return serving.post_json(url + "/v1/chat/completions", {
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Which node has GPUs?"}]}, key)


def _served_requests(pod) -> float:
    """Requests this vLLM pod finished, from its own /metrics (no key needed there)."""
    text = serving.get_text(f"http://{pod['status']['podIP']}:8000/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("vllm:request_success_total{"))


def test_gateway_serves_every_model_behind_one_key(stack, gateway_image):
    """The RAG stack (with its own key) and a second chat model (without one) behind one LLMGateway."""
    labelled = json.loads(json.dumps(stack.manifest))
    labelled["metadata"]["labels"] = dict(GATEWAY_LABEL)
    stack.apply(labelled)
    stack.manifest = labelled
    chat_spec = stack.manifest["spec"]["llm"]
    stack.apply(serving.on_real_node({
        "apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment",
        "metadata": {"name": "second-chat", "labels": dict(GATEWAY_LABEL)},
        # The stack's claim: the weights and compiled files are there already.
        "spec": {"llm": {**chat_spec, "model": {**chat_spec["model"], "servedName": SECOND_CHAT}},
                 "cache": {"existingClaim": f"{stack.name}-cache"}}}))
    stack.kubectl("create", "secret", "generic", "gateway-key", f"--from-literal=api-key={GATEWAY_KEY}")
    started = time.monotonic()
    stack.apply(GATEWAY)
    stack.kubectl("wait", "--for=condition=Ready", "llmd/second-chat", f"--timeout={READY_TIMEOUT}s",
                  timeout=READY_TIMEOUT + 30)
    gateway_ready(stack)
    print(f"\nLLMGateway Ready {time.monotonic() - started:.1f}s after apply (with a second chat model starting)")

    names = stack.served_names()
    status = gateway_status(stack)
    assert status["url"] == f"http://shared-gateway.{stack.namespace}.svc:8000/v1"
    assert status["models"] == {
        **{name: {"llmDeployment": stack.name, "role": role, "readyReplicas": 1} for role, name in names.items()},
        SECOND_CHAT: {"llmDeployment": "second-chat", "role": "llm", "readyReplicas": 1}}
    url = gateway_url(stack)
    code, listing = _get_json(url + "/v1/models", GATEWAY_KEY)
    assert code == 200 and listing["object"] == "list"
    assert sorted(m["id"] for m in listing["data"]) == sorted([*names.values(), SECOND_CHAT])

    # The routers find their pods by themselves: the first requests may come before they have.
    answers = eventually(lambda: (lambda a: a if all(code == 200 for code, _ in a.values()) else None)(
        serving.ask_every_role({role: url for role in names}, names, GATEWAY_KEY)), 120, interval=2,
        what="every role answering through the gateway")
    assert answers["llm"][1]["usage"]["completion_tokens"] > 0
    hidden = json.loads((stack.models / "embedding" / "config.json").read_text())["hidden_size"]
    assert [len(item["embedding"]) for item in answers["embedding"][1]["data"]] == [hidden, hidden]
    assert sorted(r["index"] for r in answers["rerank"][1]["results"]) == [0, 1, 2]
    code, second = _chat(url, SECOND_CHAT)
    assert code == 200, second
    assert second["model"] == SECOND_CHAT and second["usage"]["completion_tokens"] > 0


def test_gateway_reads_the_model_whatever_the_case_and_parameters_of_the_json_media_type(stack):
    """As OkHttp, axios and .NET's StringContent send it, and as vLLM accepts it."""
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        code, answer = serving.post_json(gateway_url(stack) + "/v1/chat/completions", {
            "model": SECOND_CHAT, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
            GATEWAY_KEY, content_type=content_type)
        assert code == 200 and answer["model"] == SECOND_CHAT, (content_type, code, answer)


def test_gateway_streams(stack):
    request = urllib.request.Request(gateway_url(stack) + "/v1/chat/completions", method="POST", data=json.dumps({
        "model": SECOND_CHAT, "max_tokens": 6, "stream": True,
        "messages": [{"role": "user", "content": "Count to three."}]}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {GATEWAY_KEY}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.headers.get_content_type() == "text/event-stream"
        events = [line for line in response.read().decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in events[:-1]]
    assert chunks and all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)


def test_gateway_refuses_wrong_keys_unknown_models_and_router_paths(stack):
    url, chat = gateway_url(stack), stack.served_names()["llm"]
    for key in (None, "wrong", API_KEY):  # the model's own key is not the gateway's
        code, body = _chat(url, chat, key=key)
        assert code == 401 and body["error"]["code"] == "invalid_api_key", (key, body)
    code, body = _chat(url, "no-such-model")
    assert code == 404, body
    assert body["error"] == {
        "message": "The model 'no-such-model' does not exist here: GET /v1/models lists the models this gateway serves.",
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}
    code, body = serving.post_json(url + "/v1/chat/completions", {"messages": []}, GATEWAY_KEY)
    assert code == 400 and body["error"]["code"] == "model_required"
    # The router's own admin API is not reachable through the gateway, whatever the body says.
    code, body = serving.post_json(url + "/workers", {"model": chat, "url": "http://127.0.0.1:1"}, GATEWAY_KEY)
    assert code == 404, body


def test_gateway_drops_a_deleted_model(stack):
    stack.kubectl("delete", "llmd", "second-chat", "--wait=true", timeout=120)
    eventually(lambda: SECOND_CHAT not in gateway_status(stack).get("models", {}), 60,
               what="the gateway without the second chat model")
    gateway_ready(stack)
    # The routing table changed, so the gateway rolled: the old pod keeps answering with the old table
    # for its drain (DRAIN_SECONDS) until kube-proxy stops sending to it, and there the deleted model
    # has no replica left (503). Within that window plus kube-proxy's sync, the model is gone.
    codes = []

    def model_not_found():
        code, body = _chat(gateway_url(stack), SECOND_CHAT)
        codes.append(code)
        return code == 404 and body["error"]["code"] == "model_not_found"

    eventually(model_not_found, DRAIN_SECONDS + 30, interval=1, what=f"404 model_not_found for {SECOND_CHAT}")
    assert set(codes) <= {503, 404}, codes
    assert _chat(gateway_url(stack), stack.served_names()["llm"])[0] == 200


def test_a_gateway_whose_key_secret_is_missing_names_it_then_recovers(stack, gateway_image):
    """The key is a Secret volume (it rotates without a restart): the pod waits for it, and only the
    kubelet's FailedMount Event says which Secret, which the gateway's status quotes."""
    manifest = json.loads(json.dumps(GATEWAY))
    manifest["metadata"]["name"] = "keyless"
    manifest["spec"]["selector"] = {"matchLabels": {"gateway": "keyless"}}  # no model: this is about the pod
    manifest["spec"]["apiKeySecretRef"] = {"name": "keyless-key", "key": "api-key"}
    stack.apply(manifest)

    def degraded_for(reason):
        status = (get(stack.cluster, stack.namespace, "llmgw", "keyless") or {}).get("status") or {}
        found = next((c for c in status.get("conditions") or [] if c["type"] == "Degraded"), {})
        return found if found.get("reason") == reason else None

    missing = eventually(lambda: degraded_for("SecretMissing"), 120, interval=1, what="SecretMissing on the gateway")
    print(f"\nGateway SecretMissing: {missing['message']}")
    assert 'secret "keyless-key" not found' in missing["message"] and "spec.apiKeySecretRef" in missing["message"]
    stack.kubectl("create", "secret", "generic", "keyless-key", "--from-literal=api-key=late")
    eventually(lambda: degraded_for("NoModels"), 180, interval=1, what="SecretMissing cleared once the Secret exists")
    stack.kubectl("delete", "llmgw", "keyless", "--wait=false")


CHAT_ADMIN = {"email": "admin@example.com", "password": "e2e-chat-page-password"}
# Where the browser test leaves its screenshot (CI keeps it as an artifact).
ARTIFACTS = Path(os.environ.get("LLMOPS_ARTIFACTS_DIR", plane.REPO_DIR / "e2e" / ".artifacts"))


@pytest.fixture(scope="module")
def chat_page_image(cluster):
    problem = browser.chromium_problem()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser cannot run: {problem}", pytrace=False)
        pytest.skip(f"{problem}; then the chat page test runs")
    name, archive = serving.chat_page_image()
    cluster.plane.import_image(archive, name)
    return name


@contextlib.contextmanager
def port_forward(stack, service: str, port: int):
    """`kubectl port-forward` to a Service, as a user opens the chat page: yields its local origin."""
    process = subprocess.Popen(
        [str(stack.cluster.bin("kubectl")), f"--kubeconfig={stack.cluster.kubeconfig}", "-n", stack.namespace,
         "port-forward", "--address", "127.0.0.1", f"service/{service}", f":{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = process.stdout.readline()  # "Forwarding from 127.0.0.1:<local> -> <port>"
        match = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert match, f"kubectl port-forward said: {line}{process.stdout.read() if process.poll() is not None else ''}"
        yield f"http://127.0.0.1:{match.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_chat_page_answers_in_a_real_browser(stack, chat_page_image):
    """The gateway's chat page: only its chat model listed, and an answer from the tiny model in
    Chromium, through kubectl port-forward and the page's Service."""
    stack.kubectl("create", "secret", "generic", "chat-admin", *(f"--from-literal={k}={v}" for k, v in CHAT_ADMIN.items()))
    with_page = json.loads(json.dumps(GATEWAY))
    with_page["spec"]["chatPage"] = {"adminSecretRef": {"name": "chat-admin"}, "imagePullPolicy": "Never",
                                     "storage": {"size": "1Gi", "storageClassName": plane.LOCAL_STORAGE_CLASS}}
    started = time.monotonic()
    stack.apply(with_page)
    eventually(lambda: (gateway_status(stack).get("chatPage") or {}).get("ready"), 300, interval=2,
               what="the chat page's pod ready")
    gateway_ready(stack)
    print(f"\nChat page ready {time.monotonic() - started:.1f}s after apply")
    chat_model = stack.served_names()["llm"]
    page_status = gateway_status(stack)["chatPage"]
    assert page_status["url"] == f"http://shared-chat.{stack.namespace}.svc:8080"
    assert page_status["models"] == [chat_model]  # the embedding and rerank models are not chat models

    chat_pod = stack.pods("llm")[0]
    served_before = _served_requests(chat_pod)
    with port_forward(stack, "shared-chat", 8080) as origin:
        page = browser.ChatPage(origin)
        try:
            # Open WebUI hands its admins the connection's key (GET /openai/config); a visitor who has
            # not signed in must get nothing.
            status, body = page.visitor_get("/openai/config")
            assert status in (401, 403) and GATEWAY_KEY not in body, (status, body[:200])
            asked = time.monotonic()
            page.sign_in(CHAT_ADMIN["email"], CHAT_ADMIN["password"])
            admin_view = page.signed_in_get("/openai/config")  # an admin does read it
            assert admin_view[0] == 200 and GATEWAY_KEY in admin_view[1], admin_view[0]
            assert page.model_ids() == [chat_model]
            answer = page.ask(chat_model, "Which node has GPUs?")
            print(f"Answer in the browser {time.monotonic() - asked:.1f}s after opening the page: {answer[:80]!r}")
            shot = page.screenshot(ARTIFACTS / "chat-page.png")
            print(f"Screenshot: {shot}")
        finally:
            page.close()
    assert answer
    assert page.blocked == [], f"the page asked for addresses beyond its own: {page.blocked}"
    # A page without sign-in would make every visitor an admin who can read that key: on a gateway
    # with a key, the API server refuses it.
    open_page = json.loads(json.dumps(with_page))
    del open_page["spec"]["chatPage"]["adminSecretRef"]
    open_page["spec"]["chatPage"]["allowUnauthenticated"] = True
    refused = stack.kubectl("apply", "-f", "-", input=json.dumps(open_page), check=False)
    assert refused.returncode != 0 and "/openai/config" in refused.stderr, refused.stderr
    # The answer came from the tiny model's vLLM server, through the gateway.
    assert _served_requests(chat_pod) > served_before


def test_pod_metrics_are_where_the_pod_monitor_looks(stack, cluster):
    """The chart's PodMonitor selects pods by label and scrapes the port named in it: follow it."""
    rendered = subprocess.run([str(cluster.bin("helm")), "template", "x", str(plane.REPO_DIR / "charts" / "llm-operator"),
                               "--set", "vllmPodMonitor.enabled=true"], capture_output=True, text=True, check=True).stdout
    monitor = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PodMonitor"
                   and d["metadata"]["name"].endswith("-vllm"))
    selector = ",".join(f"{k}={v}" for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    pods = json.loads(stack.kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
    assert {p["metadata"]["labels"]["llmops.dev/role"] for p in pods} == {"llm", "embedding", "rerank"}
    for pod in pods:
        vllm = next(c for c in pod["spec"]["containers"] if c["name"] == "vllm")
        port = next(p["containerPort"] for p in vllm["ports"] if p["name"] == endpoint["port"])
        text = serving.get_text(f"http://{pod['status']['podIP']}:{port}{endpoint['path']}")
        for metric in METRICS:
            assert f"\n{metric}{{" in text, f"{metric} missing from {pod['metadata']['name']}"
    llm_pod = next(p for p in pods if p["metadata"]["labels"]["llmops.dev/role"] == "llm")
    text = serving.get_text(f"http://{llm_pod['status']['podIP']}:8000/metrics")
    generated = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                 if line.startswith("vllm:generation_tokens_total{")]
    assert generated and sum(generated) > 0  # the chat request of the first test was counted


def test_gateway_statistics_are_where_the_gateway_pod_monitor_and_scaled_objects_look(stack, cluster):
    """The chart's second PodMonitor scrapes LLMGateway pods on their "metrics" port; a ScaledObject
    that wakes a role from zero reads the requests counted there under the role's stat name."""
    rendered = subprocess.run([str(cluster.bin("helm")), "template", "x", str(plane.REPO_DIR / "charts" / "llm-operator"),
                               "--set", "vllmPodMonitor.enabled=true"], capture_output=True, text=True, check=True).stdout
    monitor = next(d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "PodMonitor"
                   and d["metadata"]["name"].endswith("-gateway"))
    selector = ",".join(f"{k}={v}" for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert _chat(gateway_url(stack), stack.served_names()["llm"])[0] == 200
    # Pods of an earlier rollout may still be draining; the Service sends only to the current ones.
    pods = [p for p in json.loads(stack.kubectl("get", "pods", "-l", selector, "-o", "json").stdout)["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert pods, f"no running pod matches the gateway PodMonitor's selector {selector}"
    stat = upstream_stat_name(stack.name, "llm")
    sent = 0.0
    for pod in pods:
        envoy = next(c for c in pod["spec"]["containers"] if c["name"] == "envoy")
        port = next(p["containerPort"] for p in envoy["ports"] if p["name"] == endpoint["port"])
        base = f"http://{pod['status']['podIP']}:{port}"
        text = serving.get_text(base + endpoint["path"])
        sent += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith(f'envoy_cluster_upstream_rq_total{{envoy_cluster_name="{stat}"}}'))
        assert "envoy_cluster_upstream_rq_active{" in text
        # Only the statistics: Envoy's admin API is not reachable from outside the pod.
        for path in ("/stats", "/config_dump", "/quitquitquit"):
            try:
                urllib.request.urlopen(base + path, timeout=5)
                raise AssertionError(f"{path} answered")
            except urllib.error.HTTPError as error:
                assert error.code == 404, path
    assert sent > 0, f"no requests counted for {stat}"  # at least the chat request just sent


def test_every_vllm_series_the_chart_and_autoscaling_query_is_served(stack, cluster):
    """The dashboard, the alerts and the ScaledObjects name vLLM series in strings: a vLLM upgrade
    that renames one leaves a panel empty, an alert silent or a role unscaled, with no error
    anywhere. Each must be on the real LLM pod's /metrics (tests/monitoring.py extracts them;
    tests/test_chart_monitoring.py checks the extraction against the chart)."""
    rendered = subprocess.run([str(cluster.bin("helm")), "template", "x", str(plane.REPO_DIR / "charts" / "llm-operator"),
                               *MONITORING_VALUES], capture_output=True, text=True, check=True).stdout
    used = vllm_metrics_used(doc for doc in yaml.safe_load_all(rendered) if doc)
    llm_pod = stack.pods("llm")[0]
    text = serving.get_text(f"http://{llm_pod['status']['podIP']}:8000/metrics")
    missing = used - exposed_families(text)
    assert not missing, f"queried but not served by {llm_pod['metadata']['name']}: {sorted(missing)}"


# ------------------------------------------------------------------ the cache


def _ready_seconds(pod: dict) -> float | None:
    """From the pod's creation to its Ready condition, by the API server's clock (whole seconds);
    None while it is not ready."""
    ready = next((c for c in (pod.get("status") or {}).get("conditions") or []
                  if c["type"] == "Ready" and c["status"] == "True"), None)
    if not ready:
        return None
    return (datetime.fromisoformat(ready["lastTransitionTime"])
            - datetime.fromisoformat(pod["metadata"]["creationTimestamp"])).total_seconds()


def _start_of_each_role(stack: Stack, change, timeout: float = READY_TIMEOUT) -> dict[str, dict]:
    """Makes `change()`, then waits for one new pod of every role to be ready; by role, that pod."""
    before = {p["metadata"]["uid"] for role in ROLES for p in stack.pods(role)}
    stack.hub.reset_counts()
    change()

    def new_and_ready():
        found = {role: next((p for p in stack.pods(role) if p["metadata"]["uid"] not in before and _ready_seconds(p)),
                            None) for role in ROLES}
        return found if all(found.values()) else None
    return eventually(new_and_ready, timeout, interval=2, what="a new ready pod of every role")


def _with_roles(stack: Stack, replicas: int, compile_cache: bool) -> dict:
    manifest = json.loads(json.dumps(stack.manifest))
    for role in ROLES:
        manifest["spec"][role]["replicas"] = replicas
    manifest["spec"]["cache"]["compileCache"] = compile_cache
    return manifest


def test_restarts_and_second_replicas_skip_the_download_and_with_the_compile_cache_the_compilation(stack, measured):
    """Pod creation to Ready of every role, for a first start (the stack's), a new pod of a role at one
    replica ("restart") and a second replica beside a ready one, each with the compile cache on the
    model volume and without it, all roles at once as in the first start. Every start after the first
    downloads nothing; with the compile cache, status says the compiled files were reused. The table
    is printed at the end of the run (the goal: a start with both caches in at most 30 % of the first
    start's time)."""
    table = {"first start": {role: _ready_seconds(pod) for role, (pod,) in stack.first_pods.items()}}

    def new_pods_timed(case, manifest):
        pods = _start_of_each_role(stack, lambda: stack.apply(manifest))
        table[case] = {role: _ready_seconds(pod) for role, pod in pods.items()}
        assert stack.hub.file_requests() == [], case  # zero bytes downloaded
        for role, pod in pods.items():
            assert "skipped download" in init_log(stack, pod), (case, role)
        eventually(lambda: stack.status().get("phase") == "Ready", 120, what=f"Ready after {case}")
        return pods

    # Without the compile cache first: turning it off rolls every role to a new pod.
    new_pods_timed("restart, no compile cache", _with_roles(stack, 1, compile_cache=False))
    eventually(lambda: all("compileCache" not in info for info in stack.status()["roles"].values()), 30,
               what="status without compile cache results")
    new_pods_timed("second replica, no compile cache", _with_roles(stack, 2, compile_cache=False))
    # Turning it on again rolls every role to one new pod, which finds what the first start stored.
    new_pods_timed("restart, compile cache", _with_roles(stack, 1, compile_cache=True))
    pods = new_pods_timed("second replica, compile cache", _with_roles(stack, 2, compile_cache=True))

    def reused():
        roles = stack.status()["roles"]
        return all(roles[role].get("compileCache", {}).get("pod") == pods[role]["metadata"]["name"] for role in ROLES)
    eventually(reused, 60, what="status telling of the second replicas' starts")
    for role, info in stack.status()["roles"].items():
        assert info["compileCache"]["result"] == "Reused", (role, info["compileCache"])

    measured("Pod creation to Ready on the real node (s), downloads at "
             f"{RATE / 2**20:.1f} MiB/s per file in the first start; % of the first start:")
    measured(f"{'':34}" + "".join(f"{role:>16}" for role in ROLES))
    for case, seconds in table.items():
        measured(f"{case:34}" + "".join(
            f"{seconds[role]:>8.0f} {100 * seconds[role] / table['first start'][role]:>5.0f} %" for role in ROLES))

    # Back to what the tests below expect: two chat replicas, nothing else (only the LLM from here
    # on: more vLLM servers would not fit next to them on this machine).
    manifest = _with_roles(stack, 2, compile_cache=True)
    del manifest["spec"]["embedding"], manifest["spec"]["rerank"]
    stack.apply(manifest)
    eventually(lambda: len(stack.pods("llm")) == 2 and not stack.pods("embedding") and not stack.pods("rerank"), 120,
               what="2 LLM pods, no others")
    stack.wait_ready()


def test_gateway_routes_to_a_replacement_pod_once_ready(stack):
    """With two chat replicas behind the gateway, one is deleted: until its replacement is ready,
    every request is answered, by the other; then round robin reaches both again."""
    url, chat = gateway_url(stack), stack.served_names()["llm"]
    kept, deleted = stack.pods("llm")
    stack.kubectl("delete", "pod", deleted["metadata"]["name"], "--wait=false")
    (new,) = eventually(lambda: [p for p in stack.pods("llm")
                                 if p["metadata"]["uid"] not in (kept["metadata"]["uid"], deleted["metadata"]["uid"])],
                        60, what="the replacement chat pod")
    before = _served_requests(kept)
    sent, reasons = 0, set()
    while not any(c["type"] == "Ready" and c["status"] == "True"
                  for c in ((get(stack.cluster, stack.namespace, "pod", new["metadata"]["name"]) or {})
                            .get("status") or {}).get("conditions", [])):
        code, body = _chat(url, chat)
        assert code == 200, body
        sent += 1
        ready = condition({"status": gateway_status(stack)}, "Ready")
        if ready.get("status") == "False":
            reasons.add((ready["reason"], f"LLMDeployment {stack.name} " in ready["message"]))
        time.sleep(1)
    assert sent >= 3, "the replacement was ready too soon to see requests held back from it"
    assert _served_requests(kept) - before == sent
    assert ("LLMDeploymentNotReady", True) in reasons, reasons
    new = next(p for p in stack.pods("llm") if p["metadata"]["uid"] == new["metadata"]["uid"])

    def both_serve():
        counts = [_served_requests(pod) for pod in (kept, new)]
        for _ in range(4):
            assert _chat(url, chat)[0] == 200
        return all(_served_requests(pod) > count for pod, count in zip((kept, new), counts, strict=True))
    eventually(both_serve, 90, interval=2, what="requests reaching both chat replicas")
    gateway_ready(stack)
    assert gateway_status(stack)["models"][chat]["readyReplicas"] == 2
    print(f"\n{sent} requests answered by the remaining pod while its peer restarted; then both served")


# ------------------------------------------------------------------ failures a user must see


def _failing(stack, name, role_spec):
    manifest = {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name},
                "spec": {"llm": role_spec}}
    stack.apply(serving.on_real_node(manifest))


def _degraded(stack, name, reason, timeout=300):
    """Waits for one read of the resource that is Degraded for `reason`, in condition and phase.

    A failing init container is restarted by the kubelet, and while the retry runs the
    resource is Downloading again; so both are judged in the same read, never one after
    the other.
    """
    def check():
        llmd = get(stack.cluster, stack.namespace, "llmd", name) or {}
        found = condition(llmd, "Degraded")
        in_phase = llmd.get("status", {}).get("phase") == "Degraded"
        return found if found.get("reason") == reason and in_phase else None
    return eventually(check, timeout, interval=1, what=f"Degraded reason {reason} on {name}")


def test_models_the_hub_refuses_end_in_download_failed(stack, pod_hubs):
    tiny = TinyModel.from_directory(stack.models / "chat")
    pod_hubs.hf.repos["llmops-e2e/gated-chat"] = {"main": tiny}
    pod_hubs.hf.token = "only-for-the-owner"  # no credentialsSecretRef: the download gets 401
    try:
        _failing(stack, "missing", {"device": "CPU", "model": {"source": "modelscope://llmops-e2e/no-such-model"}})
        _failing(stack, "gated", {"device": "CPU", "model": {"source": "hf://llmops-e2e/gated-chat"}})
        missing = _degraded(stack, "missing", "DownloadFailed")
        gated = _degraded(stack, "gated", "DownloadFailed")
    finally:
        pod_hubs.hf.token = None
    print(f"\nmissing: {missing['message']}\ngated: {gated['message']}")
    # The hub's own words reach status, through a real init container that failed.
    assert "model llmops-e2e/no-such-model not found" in missing["message"]
    assert "401" in gated["message"] or "credentials" in gated["message"].lower()
    for name in ("missing", "gated"):
        pod = json.loads(stack.kubectl("get", "pods", "-l", f"llmops.dev/deployment={name}", "-o", "json").stdout)["items"][0]
        init = pod["status"]["initContainerStatuses"][0]
        terminated = init["state"].get("terminated") or init["lastState"].get("terminated")
        assert terminated and terminated["exitCode"] != 0
        stack.kubectl("delete", "llmd", name, "--wait=false")


def test_engine_that_exits_is_engine_crash_loop(stack):
    # Accepted by vLLM's argument parser, refused by the engine once it reads the model's config.
    chat_source = stack.manifest["spec"]["llm"]["model"]["source"]
    _failing(stack, "crashing", {"device": "CPU", "model": {"source": chat_source}, "engine": {"maxModelLen": 1048576}})
    crashed = _degraded(stack, "crashing", "EngineCrashLoop", timeout=400)
    print(f"\nEngineCrashLoop: {crashed['message']}")
    assert "max_model_len" in crashed["message"].lower() or "max-model-len" in crashed["message"].lower()
    stack.kubectl("delete", "llmd", "crashing", "--wait=false")


def test_missing_secret_is_reported_from_the_pod_then_recovers(stack):
    """The operator may not read Secrets: the kubelet's CreateContainerConfigError names the missing one."""
    chat_source = stack.manifest["spec"]["llm"]["model"]["source"]
    manifest = {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "keyless"},
                "spec": {"llm": {"device": "CPU", "model": {"source": chat_source}},
                         "apiKeySecretRef": {"name": "not-yet", "key": "api-key"}}}
    stack.apply(serving.on_real_node(manifest))
    missing = _degraded(stack, "keyless", "SecretMissing")
    print(f"\nSecretMissing: {missing['message']}")
    assert 'secret "not-yet" not found' in missing["message"]
    stack.kubectl("create", "secret", "generic", "not-yet", "--from-literal=api-key=late")
    eventually(lambda: condition(get(stack.cluster, stack.namespace, "llmd", "keyless"), "Degraded").get("status") == "False",
               180, interval=1, what="SecretMissing cleared once the Secret exists")
    stack.kubectl("delete", "llmd", "keyless", "--wait=false")
