"""Helpers shared by the unit tests."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
import yaml
from kubernetes.utils.quantity import parse_quantity

from llm_operator.api import parse_llmdeployment
from llm_operator.api.llmbatch import LLMBatch
from llm_operator.api.llmgateway import LLMGateway
from llm_operator.api.meta import SecretKeySelector
from llm_operator.render.gateway.routes import GatewayRoute

REPO = Path(__file__).resolve().parent.parent


def crd_hand_over_commands() -> list[str]:
    """The commands of docs/gitops.md that hand `kubectl apply -f crds/`'s CRDs to a Helm release
    named and namespaced `llm-operator`, one per line, run from the repository's root."""
    text = (REPO / "docs" / "gitops.md").read_text()
    block = re.search(r"## Moving from `kubectl apply -f crds/` to the chart.*?```bash\n(.*?)```", text, re.S)
    assert block, "the hand-over block is missing from docs/gitops.md"
    return [line for line in block[1].replace("\\\n", " ").splitlines() if line.startswith("kubectl ")]
# The LLMDeployment examples; examples/gateway.yaml is an LLMGateway (tests/test_gateway_render.py).
EXAMPLES = [path for path in sorted((REPO / "examples").glob("*.yaml"))
            if yaml.safe_load(path.read_text()).get("kind") == "LLMDeployment"]


def load_example(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "examples" / name).read_text())


def llmd(spec: dict[str, Any], name: str = "test", **metadata: Any):
    return parse_llmdeployment(manifest(spec, name, **metadata))


def manifest(spec: dict[str, Any], name: str = "test", **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "llmops.dev/v1alpha1",
        "kind": "LLMDeployment",
        "metadata": {"name": name, **metadata},
        "spec": copy.deepcopy(spec),
    }


def by_kind_and_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(obj["kind"], obj["metadata"]["name"]): obj for obj in objects}


def container(deployment: dict[str, Any], name: str = "vllm") -> dict[str, Any]:
    pod = deployment["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] + pod.get("initContainers", []) if c["name"] == name)


def check_golden(path: Path, actual: str, update: bool) -> None:
    """Compare with a reviewed golden file; with --update-golden rewrite it instead."""
    if update:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        return
    assert path.exists(), f"{path} is missing: run `make golden` and review it"
    expected = path.read_text()
    assert actual == expected, f"{path.relative_to(REPO)} is stale: run `make golden` and review the diff"


_BINARY = (("Ei", 60), ("Pi", 50), ("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10))
_DECIMAL = (("E", 18), ("P", 15), ("T", 12), ("G", 9), ("M", 6), ("k", 3), ("", 0), ("m", -3))


def canonical_quantity(value: Any) -> str:
    """A quantity as the API server stores it (resource.Quantity's canonical form): binary
    suffixes stay binary with the largest exact unit, "0.5" becomes "500m", "1e9" stays in
    exponent form. Written from Kubernetes' documented rules, to play the API server offline."""
    text = str(value)
    amount = Decimal(str(parse_quantity(text)))
    if re.search(r"[KMGTPE]i$", text) and amount == amount.to_integral_value():
        return next((f"{int(amount) >> power}{suffix}" for suffix, power in _BINARY
                     if int(amount) % (1 << power) == 0), str(int(amount)))
    if re.search(r"\de[+-]?\d+$", text, re.IGNORECASE):
        exponent = max(e for e in range(-3, 19, 3) if (amount / Decimal(10) ** e) == (amount / Decimal(10) ** e).to_integral_value())
        mantissa = int(amount / Decimal(10) ** exponent)
        return f"{mantissa}e{exponent}" if exponent else str(mantissa)
    return next(f"{int(amount / Decimal(10) ** e)}{suffix}" for suffix, e in _DECIMAL
                if amount / Decimal(10) ** e == (amount / Decimal(10) ** e).to_integral_value())


def canonical_quantities(obj: Any, key: str = "", parent: str = "") -> Any:
    """Every quantity field of a rendered object in canonical form (requests, limits, sizeLimit)."""
    if isinstance(obj, dict):
        return {k: canonical_quantities(v, k, key) for k, v in obj.items()}
    if isinstance(obj, list):
        return [canonical_quantities(item, key, parent) for item in obj]
    if parent in ("requests", "limits") or key == "sizeLimit":
        return canonical_quantity(obj)
    return obj


def vector_selectors(tree: Any) -> list[Any]:
    """The series selectors of a PromQL expression parsed by promql_parser, in the order it walks them."""
    found: list[Any] = []
    promql_parser.walk(tree, lambda node: found.append(node) if isinstance(node, promql_parser.VectorSelector) else None)
    return found


# ---------------------------------------------------------------- sample resources

KEY = SecretKeySelector(name="llm-api-key", key="api-key")


def gateway(spec=None, **metadata):
    return LLMGateway.model_validate({
        "apiVersion": "llmops.dev/v1alpha1", "kind": "LLMGateway",
        "metadata": {"name": "shared", "namespace": "team", "uid": "gw-uid", **metadata},
        "spec": {"selector": {"matchLabels": {"gateway": "shared"}}, **(spec or {})}})


ROUTES = [GatewayRoute("chat-a", "rag", "llm", KEY, "10.96.0.10:8000"),
          GatewayRoute("embed-b", "rag", "embedding", KEY, "10.96.0.11:8000"),
          GatewayRoute("open-c", "other", "llm", None)]  # its Service has no address yet


MODEL = {"source": "modelscope://Qwen/Qwen2.5-0.5B-Instruct"}
BATCH = {
    "apiVersion": "llmops.dev/v1alpha1", "kind": "LLMBatch",
    "metadata": {"name": "tag-docs", "namespace": "ns", "uid": "batch-uid", "generation": 1},
    "spec": {"model": MODEL, "device": "CPU",
             "input": {"configMap": {"name": "requests", "key": "requests.jsonl"}},
             "output": {"persistentVolumeClaim": {"claimName": "results", "path": "tag-docs/answers.jsonl"}},
             "cache": {"existingClaim": "chat-cache"}},
}


def batch(**spec_changes) -> LLMBatch:
    raw = copy.deepcopy(BATCH)
    raw["spec"].update(spec_changes)
    return LLMBatch.model_validate(raw)


def job(conditions=(), **counts):
    return {"metadata": {"name": "tag-docs-batch"},
            "status": {**counts, "conditions": [{"type": t, "status": "True", "message": m} for t, m in conditions]}}


# ---------------------------------------------------------------- checks

KUBERNETES_VERSION = "1.35.0"


def assert_valid(objects):
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {error.message} at {list(error.path)}")
