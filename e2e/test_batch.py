"""LLMBatch end to end on the real node: the operator's Job, the model downloaded by the same init
container as serving into a cache claim, the real `vllm run-batch` (CPU build) over the tiny chat
model, the answers on a PersistentVolumeClaim, and the counts in status.

The tests build on one another, in file order: a 20-request batch downloads the model into the claim
and answers every request; a second batch with malformed lines finds the model in the claim (no
download), sets the bad lines aside by line number and answers the rest; a batch vLLM refuses to
start is retried, then Failed with vLLM's own words. That last one runs beside the second (it only
needs the model in the claim): the two share the node's cores instead of taking turns.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import plane
import serving
from operator_process import eventually
from rag_stack import init_log, new_namespace
from tests.hubs import TinyModel
from workloads import get

pytestmark = pytest.mark.usefixtures("real_node")

REPO_ID = "Qwen/Qwen2.5-0.5B-Instruct"
SERVED = "tiny-chat"
CLAIM = "batch-data"
FINISH_TIMEOUT = 900  # a cold vLLM start on 2 cores, beside whatever else the suite left running


@pytest.fixture(scope="module")
def batches(cluster, operator, pod_hubs, cpu_image):
    """A namespace with one claim on the real node's local volumes, used as the weights cache and for
    the answers; the tiny chat model on the local ModelScope hub."""
    models = serving.tiny_models()
    pod_hubs.modelscope.repos[REPO_ID] = {"master": TinyModel.from_directory(models / "chat")}
    namespace = new_namespace(cluster, "e2e-batch")
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": CLAIM},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": plane.LOCAL_STORAGE_CLASS,
                 "resources": {"requests": {"storage": "5Gi"}}}}))
    yield Batches(cluster, namespace, pod_hubs.modelscope)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


class Batches:
    def __init__(self, cluster, namespace, hub):
        self.cluster, self.namespace, self.hub = cluster, namespace, hub
        self.submitted: set[str] = set()

    def kubectl(self, *args, **kwargs):
        return self.cluster.kubectl("-n", self.namespace, *args, **kwargs)

    def submit(self, name: str, lines: list[str], **spec) -> None:
        """The requests as a ConfigMap, and an LLMBatch that runs the tiny chat model over them
        (once: a batch submitted already is left as it is)."""
        if name in self.submitted:
            return
        self.submitted.add(name)
        self.kubectl("create", "configmap", f"{name}-requests", f"--from-literal=requests.jsonl={''.join(lines)}")
        manifest = {
            "apiVersion": "llmops.dev/v1alpha1", "kind": "LLMBatch", "metadata": {"name": name},
            "spec": {
                "model": {"source": f"modelscope://{REPO_ID}", "servedName": SERVED},
                "device": "CPU", "kvCacheSize": "1Gi", "engine": {"maxModelLen": 512},
                "scheduling": {"nodeSelector": dict(plane.REAL_NODE_SELECTOR),
                               "tolerations": list(plane.REAL_NODE_TOLERATIONS)},
                "input": {"configMap": {"name": f"{name}-requests", "key": "requests.jsonl"}},
                "output": {"persistentVolumeClaim": {"claimName": CLAIM, "path": f"{name}/answers.jsonl"}},
                "cache": {"existingClaim": CLAIM},
                **spec,
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(manifest))

    def status(self, name: str) -> dict:
        return (get(self.cluster, self.namespace, "llmbatch", name) or {}).get("status") or {}

    def finished(self, name: str, timeout: float = FINISH_TIMEOUT) -> dict:
        """The status once Succeeded or Failed; the phases seen on the way are in status["seen"], and
        the (completed, total) a Running status showed in status["progress"]."""
        seen: list[str] = []
        progress: list[tuple[int, int]] = []

        def done():
            status = self.status(name)
            if status.get("phase") and status["phase"] not in seen:
                seen.append(status["phase"])
            if status.get("phase") == "Running" and "completed" in status:
                progress.append((status["completed"], status["total"]))
            return status if status.get("phase") in ("Succeeded", "Failed") else None

        status = eventually(done, timeout, interval=1, what=f"LLMBatch {name} to finish")
        return {**status, "seen": seen, "progress": progress}

    def answers(self, name: str) -> list[dict]:
        """The output file, read where the claim's local volume is on this machine."""
        claim = get(self.cluster, self.namespace, "pvc", CLAIM)
        volume = json.loads(self.cluster.kubectl("get", "pv", claim["spec"]["volumeName"], "-o", "json").stdout)
        path = Path(volume["spec"]["local"]["path"]) / name / "answers.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def pods(self, name: str) -> list[dict]:
        out = self.kubectl("get", "pods", "-l", f"llmops.dev/batch={name}", "-o", "json").stdout
        return json.loads(out)["items"]


def chat_request(custom_id: str, text: str) -> str:
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                       "body": {"model": SERVED, "max_tokens": 8,
                                "messages": [{"role": "user", "content": text}]}}) + "\n"


def test_twenty_requests_give_twenty_answers_with_matching_custom_ids(batches):
    ids = [f"doc-{i:02d}" for i in range(20)]
    batches.hub.reset_counts()
    started = time.monotonic()
    batches.submit("first", [chat_request(i, f"Tag document {i}.") for i in ids])
    status = batches.finished("first")
    print(f"\n20-request batch: {time.monotonic() - started:.1f}s from apply to Succeeded; phases {status['seen']}")

    assert status["phase"] == "Succeeded", status
    assert (status["total"], status["completed"], status["succeeded"], status["failed"]) == (20, 20, 20, 0)
    assert status["output"] == f"pvc://{CLAIM}/first/answers.jsonl"
    assert "malformed" not in status
    answers = batches.answers("first")
    assert [a["custom_id"] for a in answers] == ids
    for answer in answers:
        assert answer["response"]["status_code"] == 200, answer
        assert isinstance(answer["response"]["body"]["choices"][0]["message"]["content"], str)
    # The model came from the hub through the init container, into the claim.
    assert batches.hub.file_requests(), "the init container downloaded nothing"
    events = batches.kubectl("get", "events", "--field-selector", "involvedObject.name=first", "-o", "json").stdout
    assert any(e["reason"] == "Completed" for e in json.loads(events)["items"])


def test_a_malformed_line_is_reported_by_its_line_number_and_the_rest_complete(batches):
    lines = [chat_request(f"q-{i:02d}", f"Question {i}?") for i in range(20)]
    lines.insert(6, "{this is not json\n")  # line 7
    # Line 15: a valid envelope whose body vLLM's own parser refuses (a chat request needs messages).
    lines.insert(14, json.dumps({"custom_id": "no-messages", "method": "POST", "url": "/v1/chat/completions",
                                 "body": {"model": SERVED}}) + "\n")
    batches.hub.reset_counts()
    batches.submit("second", lines)
    submit_refused(batches)  # checked by the last test
    status = batches.finished("second")

    assert status["phase"] == "Succeeded", status
    print(f"\nProgress seen while Running (completed, total): {sorted(set(status['progress']))}")
    # What status showed on the way (the run may be too short to show any): never more than done.
    assert all(total == 22 and 0 <= done <= 22 for done, total in status["progress"]), status["progress"]
    assert [done for done, _ in status["progress"]] == sorted(done for done, _ in status["progress"])
    assert (status["total"], status["succeeded"], status["failed"]) == (22, 20, 2)
    assert [m["line"] for m in status["malformed"]] == [7, 15]
    assert status["malformed"][0]["error"].startswith("not JSON")
    assert status["malformed"][1]["error"].startswith("refused by vLLM") and "messages" in status["malformed"][1]["error"]
    answers = batches.answers("second")
    assert len(answers) == 22
    assert [a["custom_id"] for a in answers if not a.get("error")] == [f"q-{i:02d}" for i in range(20)]
    assert answers[6]["error"]["message"].startswith("line 7: ")
    assert answers[14]["custom_id"] == "no-messages" and answers[14]["error"]["message"].startswith("line 15: ")
    # The second batch found the weights the first one downloaded into the same claim.
    [pod] = batches.pods("second")
    assert "skipped download" in init_log(batches, pod)
    assert batches.hub.file_requests() == []


def submit_refused(batches):
    # A context longer than the model's is refused by vLLM while it starts, before any request.
    batches.submit("refused", [chat_request("only", "Hello")], engine={"maxModelLen": 1_000_000}, backoffLimit=1)


def test_a_batch_vllm_refuses_is_retried_then_failed_with_vllm_s_error(batches):
    submit_refused(batches)  # by the test before, unless it was not run
    status = batches.finished("refused")
    assert status["phase"] == "Failed", status
    assert status["attempts"] == 2
    message = next(c for c in status["conditions"] if c["type"] == "Failed")["message"]
    print(f"\nFailed batch: {message}")
    assert "after 2 attempts" in message and "vllm run-batch exited with code" in message
    assert "max_model_len" in message or "max-model-len" in message
    assert len(batches.pods("refused")) == 2
