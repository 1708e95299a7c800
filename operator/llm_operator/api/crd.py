"""Generate the LLMDeployment, LLMGateway and LLMBatch CustomResourceDefinitions from the pydantic models.

Kubernetes wants a *structural* OpenAPI v3 schema: every node has a type, no `$ref`, no `anyOf`
of alternatives (except the int-or-string idiom), no `default` (we never default into the user's
object). Pydantic's JSON schema is close; `structural()` closes the gap.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel

from .llmbatch import (
    BATCH_KIND,
    BATCH_PLURAL,
    BATCH_SHORT_NAMES,
    BATCH_SINGULAR,
    LLMBatch,
    LLMBatchSpec,
    LLMBatchStatus,
)
from .llmdeployment import KIND, PLURAL, SHORT_NAMES, SINGULAR, LLMDeployment, LLMDeploymentSpec, LLMDeploymentStatus
from .llmgateway import (
    GATEWAY_KIND,
    GATEWAY_PLURAL,
    GATEWAY_SHORT_NAMES,
    GATEWAY_SINGULAR,
    LLMGateway,
    LLMGatewaySpec,
    LLMGatewayStatus,
)
from .meta import GROUP, VERSION
from .rules import SpecModel

# JSON-schema keys that have no place in a CRD schema (or would write into the user's object).
_DROPPED_KEYS = {"title", "default", "$defs"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline every `$ref`, recursively."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    return {key: _resolve(value, defs) for key, value in node.items()}


def _structural(node: Any) -> Any:
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: value for key, value in node.items() if key not in _DROPPED_KEYS}
    any_of = node.get("anyOf")
    if any_of is not None and not node.get("x-kubernetes-int-or-string"):
        # Optional[X] is anyOf [X, null]: a field that may be absent, not a nullable value.
        alternatives = [alt for alt in any_of if alt.get("type") != "null"]
        if len(alternatives) != 1:
            raise ValueError(f"cannot make a structural schema of anyOf {any_of}")
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        return _structural({**alternatives[0], **rest})
    if "const" in node:  # a one-value Literal: CRD schemas know enum, not const
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        # JSON Schema 2020 writes `exclusiveMinimum: 0`; OpenAPI v3.0 (Kubernetes) wants a flag.
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    if node.get("type") == "object" and "properties" in node:
        node.setdefault("additionalProperties", None)
        if node["additionalProperties"] in (None, False):
            del node["additionalProperties"]  # structural schemas forbid it beside properties
    # type and description first, so the YAML reads well in review.
    ordered = sorted(node, key=lambda key: {"type": 0, "description": 1}.get(key, 2))
    return {key: _structural(node[key]) for key in ordered}


def structural(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model."""
    schema = model.model_json_schema(mode="validation")
    return _structural(_resolve(schema, schema.get("$defs", {})))


@dataclass(frozen=True)
class Kind:
    """What a CRD says about one kind besides its models' schemas."""

    kind: str
    plural: str
    singular: str
    short_names: list[str]
    model: type[SpecModel]
    spec: type[BaseModel]
    status: type[BaseModel]
    description: str
    printer_columns: list[dict[str, str]]


AGE_COLUMN = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

KINDS = {
    KIND: Kind(
        KIND, PLURAL, SINGULAR, SHORT_NAMES, LLMDeployment, LLMDeploymentSpec, LLMDeploymentStatus,
        "LLMDeployment serves a chat model, an embedding model and/or a reranker with vLLM on GPUs: "
        "one Deployment and one Service per role.",
        [{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Summary of the state."},
         {"name": "Ready", "type": "string", "jsonPath": ".status.rolesReady", "description": "Roles ready / roles requested."},
         {"name": "Model", "type": "string", "jsonPath": ".status.roles.llm.servedName", "description": "Served name of the LLM."},
         AGE_COLUMN]),
    GATEWAY_KIND: Kind(
        GATEWAY_KIND, GATEWAY_PLURAL, GATEWAY_SINGULAR, GATEWAY_SHORT_NAMES, LLMGateway, LLMGatewaySpec, LLMGatewayStatus,
        "LLMGateway is one OpenAI endpoint for the models of the LLMDeployments it selects, routed on the "
        "request's model by vLLM's router.",
        [{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Summary of the state."},
         {"name": "URL", "type": "string", "jsonPath": ".status.url", "description": "In-cluster base URL."},
         AGE_COLUMN]),
    BATCH_KIND: Kind(
        BATCH_KIND, BATCH_PLURAL, BATCH_SINGULAR, BATCH_SHORT_NAMES, LLMBatch, LLMBatchSpec, LLMBatchStatus,
        "LLMBatch runs a model once over a file of requests in OpenAI's batch format (`vllm run-batch` in a Job) "
        "and writes the answers to a PersistentVolumeClaim.",
        [{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Summary of the state."},
         {"name": "Done", "type": "integer", "jsonPath": ".status.completed", "description": "Requests answered."},
         {"name": "Total", "type": "integer", "jsonPath": ".status.total", "description": "Requests in the input."},
         {"name": "Failed", "type": "integer", "jsonPath": ".status.failed", "description": "Requests that got an error."},
         AGE_COLUMN]),
}


def openapi_schema(kind: str = KIND) -> dict[str, Any]:
    info = KINDS[kind]
    return {
        "type": "object",
        "description": info.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": f"{GROUP}/{VERSION}"},
            "kind": {"type": "string", "description": kind},
            "metadata": {"type": "object"},
            "spec": structural(info.spec),
            "status": structural(info.status),
        },
        "x-kubernetes-validations": [rule.as_schema() for rule in info.model.RULES],
    }


def crd_manifest(kind: str = KIND) -> dict[str, Any]:
    info = KINDS[kind]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "llm-operator"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": info.short_names,
                "categories": ["llmops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": info.printer_columns,
                    "schema": {"openAPIV3Schema": openapi_schema(kind)},
                }
            ],
        },
    }


def crd_yaml(kind: str = KIND) -> str:
    header = (
        "# Generated by `llm-operator crd` from operator/llm_operator/api/. Do not edit by hand:\n"
        "# change the models and run `make crd`.\n"
    )
    return header + yaml.safe_dump(crd_manifest(kind), sort_keys=False, width=120)
