"""The Argo CD health check in docs/gitops.md, run by a real Lua interpreter on statuses the
operator's own status code produces."""

import re

import pytest
import yaml
from lupa import LuaRuntime

from llm_operator.controllers.llmbatch.status import compute_batch_status
from llm_operator.controllers.llmdeployment.status import Observed, compute_status
from llm_operator.controllers.llmgateway.status import compute_gateway_status
from llm_operator.controllers.shared import invalid_spec_status
from llm_operator.render.gateway.routes import GatewayRoute
from support import REPO, gateway, llmd

SPEC = {"llm": {"model": {"source": "hf://Qwen/Qwen3-8B"}}}
READY_DEPLOYMENT = {"metadata": {"generation": 1},
                    "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
UNSCHEDULABLE_POD = {"metadata": {"name": "p"}, "status": {"conditions": [{
    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
    "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}]}}


def health_check(kind: str = "LLMDeployment") -> str:
    text = (REPO / "docs" / "gitops.md").read_text()
    block = re.search(r"```yaml\n(data:\n  resource\.customizations\.health\.llmops\.dev_LLMDeployment:.*?)```", text, re.S)
    assert block, "the health check block is missing from docs/gitops.md"
    return yaml.safe_load(block[1])["data"][f"resource.customizations.health.llmops.dev_{kind}"]


def assess(obj, kind="LLMDeployment"):
    lua = LuaRuntime(unpack_returned_tuples=True)
    function = lua.eval("function(obj)\n" + health_check(kind) + "\nend")
    result = function(lua.table_from(obj, recursive=True))
    return result["status"], result["message"]


def resource(status, generation=2):
    return {"metadata": {"name": "x", "generation": generation}, "status": status}


def status_of(observed, generation=2):
    return compute_status(llmd(SPEC, name="x", namespace="ai", generation=generation), observed, "nvidia.com/gpu")


@pytest.mark.parametrize("obj,expected", [
    (resource(status_of(Observed(deployments={"llm": READY_DEPLOYMENT}))), "Healthy"),
    (resource(status_of(Observed(deployments={"llm": READY_DEPLOYMENT}), generation=1)), "Progressing"),  # old spec
    (resource(status_of(Observed())), "Progressing"),
    (resource(status_of(Observed(pods={"llm": [UNSCHEDULABLE_POD]}))), "Degraded"),
    (resource(invalid_spec_status(2, ["spec.llm.gpus: bad"])), "Degraded"),
    ({"metadata": {"name": "x", "generation": 1}}, "Progressing"),  # the operator has not looked yet
])
def test_argo_cd_health(obj, expected):
    status, message = assess(obj)
    assert status == expected, message
    if expected == "Degraded":
        assert "Insufficient nvidia.com/gpu" in message or "spec.llm.gpus" in message


GATEWAY_DEPLOYMENT = {"metadata": {"generation": 1}, "spec": {"replicas": 1},
                      "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
ROUTE = GatewayRoute("chat-a", "chat", "llm", None)


def gateway_health(llmd_phase, deployment=GATEWAY_DEPLOYMENT, generation=1):
    llmds = {"chat": {"status": {"phase": llmd_phase, "roles": {"llm": {"replicas": 1, "readyReplicas": 0}}}}}
    status = compute_gateway_status(gateway(generation=generation), [ROUTE], [], llmds, deployment)
    return assess({"metadata": {"name": "shared", "generation": generation}, "status": status}, "LLMGateway")


@pytest.mark.parametrize("llmd_phase,deployment,expected", [
    ("Ready", GATEWAY_DEPLOYMENT, "Healthy"),
    ("Ready", None, "Progressing"),  # its own pods are starting
    ("Downloading", GATEWAY_DEPLOYMENT, "Progressing"),  # a model on its way: not broken
    ("Degraded", GATEWAY_DEPLOYMENT, "Degraded"),
    ("Failed", GATEWAY_DEPLOYMENT, "Degraded"),
])
def test_argo_cd_health_of_a_gateway(llmd_phase, deployment, expected):
    status, message = gateway_health(llmd_phase, deployment)
    assert status == expected, message
    if llmd_phase != "Ready":
        assert "LLMDeployment chat is " + llmd_phase in message


def batch_health(job_status, pods=()):
    from support import batch, job

    status = compute_batch_status(batch(), job(**job_status), list(pods))
    return assess({"metadata": {"name": "tag-docs", "generation": 1}, "status": status}, "LLMBatch")


@pytest.mark.parametrize("job_status,expected", [
    ({"active": 1}, "Progressing"),  # waiting for its pod, or running
    ({"conditions": [("Complete", "")], "succeeded": 1}, "Healthy"),
    ({"conditions": [("Failed", "BackoffLimitExceeded")], "failed": 3}, "Degraded"),
])
def test_argo_cd_health_of_a_batch(job_status, expected):
    status, message = batch_health(job_status)
    assert status == expected, message
