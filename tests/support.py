"""Helpers shared by the unit tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from llm_operator.api import parse_llmdeployment

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))


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
