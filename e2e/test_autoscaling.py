"""Autoscaling on vLLM's own queue, end to end on the real node: the operator's ScaledObject, the
plane's Prometheus and KEDA, the real HPA in kube-controller-manager, and real vLLM (CPU build)
serving the tiny chat model behind an LLMGateway.

The tests build on one another, in order: bounded load (a few threads on this machine only) grows
the role from 1 pod to 2, the new pod loads from the cache; the load stops and after the scale-down
delay it is 1 pod again; with `minReplicas: 0` it goes to zero and is Idle; one request through the
gateway to the role's Service (not its router) wakes it. Each step's time is printed. All along, the operator never writes `replicas`.

vLLM runs with `--max-num-seqs 1`, so that a few concurrent requests are enough to queue
(`vllm:num_requests_waiting`) on two cores. The load is a burst that ends once the autoscaler has
asked for the second pod: while it runs, the first pod's engine keeps the two cores so busy that a
second pod took 7 minutes to start. The scale-down delay (DELAY) is what keeps the second pod while
it starts, as it would in production.
"""

from __future__ import annotations

import datetime
import json
import threading
import time

import pytest

import serving
from llm_operator.api.llmdeployment import MAX_NAME_LENGTH
from operator_process import OPERATOR_USER, audit_lines, audit_writes, eventually
from rag_stack import (
    API_KEY,
    GATEWAY,
    GATEWAY_KEY,
    GATEWAY_LABEL,
    Stack,
    gateway_ready,
    gateway_status,
    gateway_url,
    init_log,
    new_namespace,
)
from tests.hubs import TinyModel
from workloads import get

pytestmark = pytest.mark.usefixtures("real_node")

# As long as the CRD allows (MAX_NAME_LENGTH): the API server cuts the pods' generated names, so the
# ScaledObject must find its pods by their labels.
NAME = "autoscaled-chat-with-a-name-as-long-as-the-crd-allows"
# scaleDownDelaySeconds while growing: the second pod starts after the burst, on cores the first pod no
# longer keeps busy, from the weights and compiled files in the cache, and must be ready before the
# delay is over.
DELAY = 90
ZERO_DELAY = 30  # scaleDownDelaySeconds of the scale-to-zero step: short enough for CI
LOAD_THREADS = 3  # with --max-num-seqs 1: one running, two waiting, twice the target of 1
LOAD_MAX_SECONDS = 240  # the load stops by itself after this, whatever happens
TIMES: dict[str, float] = {}
SECOND_ASKED: list[float] = []  # when the autoscaler was seen asking for the second pod (time.monotonic())


def _manifest(**overrides) -> dict:
    manifest = serving.on_real_node(serving.load_example())
    manifest["metadata"] = {"name": NAME, "labels": dict(GATEWAY_LABEL)}
    del manifest["spec"]["embedding"], manifest["spec"]["rerank"]
    llm = manifest["spec"]["llm"]
    llm["engine"] = {**llm.get("engine", {}), "extraArgs": ["--max-num-seqs", "1"]}
    llm["autoscaling"] = {"minReplicas": 1, "maxReplicas": 2, "target": "1", "scaleDownDelaySeconds": DELAY,
                          **overrides}
    return manifest


@pytest.fixture(scope="module")
def scaled(cluster, operator, pod_hubs, cpu_image, gateway_image, autoscaling):
    """The chat role, autoscaled, behind a gateway, in a namespace of its own; the audit log line
    from which the operator's writes are counted."""
    assert len(NAME) == MAX_NAME_LENGTH
    models = serving.tiny_models()
    manifest = _manifest()
    for repo, directory in serving.hub_repos(manifest, models).items():
        pod_hubs.modelscope.repos[repo] = {"master": TinyModel.from_directory(directory)}
    namespace = new_namespace(cluster, "e2e-autoscaling")
    stack = Stack(cluster, namespace, manifest, models, pod_hubs.modelscope)
    stack.kubectl("create", "secret", "generic", "llm-api-key", f"--from-literal=api-key={API_KEY}")
    stack.kubectl("create", "secret", "generic", "gateway-key", f"--from-literal=api-key={GATEWAY_KEY}")
    started = time.monotonic()
    stack.apply(manifest)
    stack.apply(GATEWAY)
    stack.wait_ready()
    gateway_ready(stack)
    TIMES["first Ready"] = time.monotonic() - started
    eventually(lambda: get(cluster, namespace, "scaledobject", f"{NAME}-llm"), 30, what="the ScaledObject")
    # From here on, the operator has made every write it needs: none may touch replicas.
    stack.audit_from = audit_lines(cluster.audit_log)
    yield stack
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _seconds(since: str, until: str) -> float:
    """Seconds between two of the API server's timestamps (whole seconds, UTC)."""
    api_time = "%Y-%m-%dT%H:%M:%SZ"
    return (datetime.datetime.strptime(until, api_time) - datetime.datetime.strptime(since, api_time)).total_seconds()


def _gateway_ready_or_why(stack):
    """True when the LLMGateway is Ready, else its Ready condition (what a failed wait reports)."""
    status = gateway_status(stack)
    return True if status.get("phase") == "Ready" else next(
        (c for c in status.get("conditions") or [] if c["type"] == "Ready"), status)


def _replicas(stack) -> int:
    return get(stack.cluster, stack.namespace, "deployment", f"{NAME}-llm")["spec"].get("replicas", 1)


def _ready_pods(stack) -> list[dict]:
    return [p for p in stack.pods("llm")
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))]


class Load:
    """LOAD_THREADS clients asking the chat model through the gateway, one request after another,
    until stopped or LOAD_MAX_SECONDS have passed. Counts answers by HTTP status."""

    def __init__(self, url: str, model: str):
        self.url, self.model = url, model
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + LOAD_MAX_SECONDS
        self.codes: list[dict[int, int]] = [{} for _ in range(LOAD_THREADS)]  # one per thread: no shared dict
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(LOAD_THREADS)]

    def _run(self, index: int) -> None:
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            code, _ = serving.post_json(self.url + "/v1/chat/completions", {
                "model": self.model, "max_tokens": 48, "ignore_eos": True,
                "messages": [{"role": "user", "content": "Count slowly."}]}, GATEWAY_KEY, timeout=120)
            self.codes[index][code] = self.codes[index].get(code, 0) + 1

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=150)

    def counts(self) -> dict[int, int]:
        total: dict[int, int] = {}
        for codes in self.codes:
            for code, count in codes.items():
                total[code] = total.get(code, 0) + count
        return total


def test_a_queue_grows_the_role_to_two_pods_that_load_from_the_cache(scaled):
    assert _replicas(scaled) == 1
    scaled.hub.reset_counts()
    (first,) = scaled.pods("llm")
    with Load(gateway_url(scaled), scaled.served_names()["llm"]) as load:
        started = time.monotonic()
        eventually(lambda: _replicas(scaled) == 2, 180, interval=1, what="the autoscaler asking for 2 pods")
        SECOND_ASKED.append(time.monotonic())
        TIMES["load -> 2 replicas asked"] = SECOND_ASKED[0] - started
    TIMES["load stopped"] = time.monotonic() - started
    # The autoscaler keeps the second pod for DELAY after it last wanted it.
    eventually(lambda: len(_ready_pods(scaled)) == 2, DELAY, interval=1, what="2 ready pods")
    TIMES["load -> 2 pods ready"] = time.monotonic() - started
    print(f"\nLoad answers by HTTP status: {load.counts()}")
    assert set(load.counts()) == {200}
    (new,) = [p for p in scaled.pods("llm") if p["metadata"]["uid"] != first["metadata"]["uid"]]
    assert scaled.hub.file_requests() == []  # zero bytes downloaded
    ready_at = next(c["lastTransitionTime"] for c in new["status"]["conditions"] if c["type"] == "Ready")
    TIMES["new pod created -> Ready (cache hit)"] = _seconds(new["metadata"]["creationTimestamp"], ready_at)
    assert "skipped download" in init_log(scaled, new)
    eventually(lambda: scaled.status()["roles"]["llm"]["replicas"] == 2, 30,
               what="status following the autoscaler: 2 replicas")


def test_without_load_it_returns_to_one_pod_after_the_delay(scaled):
    (asked,) = SECOND_ASKED
    eventually(lambda: _replicas(scaled) == 1, DELAY + 180, interval=1, what="back to 1 pod")
    TIMES["2 replicas asked -> 1 replica"] = time.monotonic() - asked
    # The HPA wanted 2 when it was seen asking for them (a poll of 1 s after it): its stabilisation
    # window holds 2 for at least DELAY from then, whenever the queue emptied.
    assert TIMES["2 replicas asked -> 1 replica"] >= DELAY - 5
    eventually(lambda: scaled.status().get("phase") == "Ready", 120, what="Ready with 1 pod")


def test_with_min_zero_it_goes_idle(scaled):
    manifest = _manifest(minReplicas=0, scaleDownDelaySeconds=ZERO_DELAY)
    started = time.monotonic()
    scaled.apply(manifest)
    # The gateway now holds this model's requests while it wakes: its new configuration rolls out.
    eventually(lambda: "x-llm-gateway-upstream" in json.dumps(json.loads(get(
        scaled.cluster, scaled.namespace, "configmap", "shared-gateway")["data"]["envoy.json"])["static_resources"]
        ["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["route_config"]["virtual_hosts"][0]
        ["routes"][0]["match"]), 60, what="the gateway's hold route")
    scaled.kubectl("rollout", "status", "deployment/shared-gateway", "--timeout=180s", timeout=210)
    eventually(lambda: _replicas(scaled) == 0, 60 + ZERO_DELAY + 180, interval=1, what="scaled to zero")
    TIMES["min 0 -> 0 replicas"] = time.monotonic() - started
    eventually(lambda: scaled.status().get("phase") == "Idle", 60, what="phase Idle")
    ready = next(c for c in scaled.status()["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["reason"] == "Idle"
    # An idle model is no problem of the gateway's (it follows the LLMDeployment's status in a moment).
    deadline = time.monotonic() + 60
    while (why := _gateway_ready_or_why(scaled)) is not True and time.monotonic() < deadline:
        time.sleep(1)
    assert why is True, f"the LLMGateway is not Ready with an idle model: {why}"
    eventually(lambda: not scaled.pods("llm"), 120, what="the last pod gone")


def test_a_request_through_the_gateway_wakes_it(scaled):
    """At zero, one request to an API the gateway sends to the role's Service, not its router (here
    /tokenize; /v1/rerank and /v1/score go the same way), wakes the role by itself: at zero pods its
    connection fails, so only its retries count as demand. A chat request sent while the pod starts
    is held by the router path and answered too."""
    scaled.hub.reset_counts()
    url, model = gateway_url(scaled), scaled.served_names()["llm"]
    started, answers = time.monotonic(), {}
    waking = threading.Thread(target=lambda: answers.update(tokenize=serving.post_json(
        url + "/tokenize", {"model": model, "prompt": "Awake?"}, GATEWAY_KEY, timeout=400)), daemon=True)
    waking.start()
    eventually(lambda: _replicas(scaled) == 1, 180, interval=1, what="the autoscaler waking the role for /tokenize")
    TIMES["request to the Service at zero -> 1 replica asked"] = time.monotonic() - started
    code, body = serving.post_json(url + "/v1/chat/completions", {
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Awake?"}]}, GATEWAY_KEY, timeout=400)
    waking.join(400)
    TIMES["request at zero -> answer (cold start)"] = time.monotonic() - started
    assert code == 200, body
    assert body["choices"][0]["message"]["content"] is not None
    tokenize_code, tokens = answers["tokenize"]
    assert tokenize_code == 200 and tokens["count"] > 0, tokens
    assert _replicas(scaled) == 1 and scaled.hub.file_requests() == []
    eventually(lambda: scaled.status().get("phase") == "Ready", 120, what="Ready again")


def test_the_operator_never_wrote_replicas(scaled, measured):
    writes = {k: v for k, v in audit_writes(scaled.cluster.audit_log, OPERATOR_USER, since_line=scaled.audit_from,
                                            namespace=scaled.namespace, name=f"{NAME}-llm").items()
              if k.split(" ", 1)[1].startswith("deployments")}
    measured("Autoscaling, step by step (s): " + json.dumps({k: round(v, 1) for k, v in TIMES.items()}))
    assert writes == {}, f"the operator wrote Deployments while the autoscaler owned them: {writes}"
