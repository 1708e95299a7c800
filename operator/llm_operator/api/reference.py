"""Generate docs/reference.md, the field reference, from the same schema as the CRD."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .crd import openapi_schema
from .llmbatch import BATCH_KIND
from .llmgateway import GATEWAY_KIND

HEADER = """# LLMDeployment field reference

Generated from `operator/llm_operator/api/` by `make golden`; a test fails when it is stale.
`kubectl explain llmd.spec --recursive` shows the same descriptions from a live cluster.

| field | type | description | validation |
| --- | --- | --- | --- |
"""


# Fields typed with a core Kubernetes type (see api/types.py, core_type_schema).
CORE_TYPE_FIELDS = (".affinity",)


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "quantity"
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    return kind


def _validation(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (("minimum", ">="), ("maximum", "<="), ("minLength", "min length"),
                       ("maxLength", "max length"), ("maxItems", "max items")):
        if key in node:
            exclusive = node.get(f"exclusive{key[:1].upper()}{key[1:]}") is True
            parts.append(f"{label.replace('=', '') if exclusive else label} {node[key]}")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for rule in node.get("x-kubernetes-validations", ()):
        parts.append(rule["message"])
    return "; ".join(parts).replace("|", "\\|")


def _rows(node: dict[str, Any], path: str, required: bool) -> Iterator[str]:
    description = (node.get("description") or "").replace("\n", " ").replace("|", "\\|")
    name = f"`{path}`" + (" (required)" if required else "")
    yield f"| {name} | {_type(node)} | {description} | {_validation(node)} |\n"
    if path.endswith(CORE_TYPE_FIELDS):
        return  # a core Kubernetes type: `kubectl explain pod.spec.affinity` documents its fields
    children = node.get("properties", {})
    if node.get("type") == "array" and "properties" in node.get("items", {}):
        children, path = node["items"]["properties"], path + "[]"
        node = node["items"]
    for child, schema in children.items():
        yield from _rows(schema, f"{path}.{child}", child in node.get("required", ()))


GATEWAY_HEADER = """
# LLMGateway field reference

One OpenAI endpoint for the models of the LLMDeployments it selects (docs/gateway.md).
`kubectl explain llmgw.spec --recursive` shows the same descriptions from a live cluster.

| field | type | description | validation |
| --- | --- | --- | --- |
"""


BATCH_HEADER = """
# LLMBatch field reference

A model run once over a file of requests in OpenAI's batch format (docs/batch.md).
`kubectl explain llmb.spec --recursive` shows the same descriptions from a live cluster.

| field | type | description | validation |
| --- | --- | --- | --- |
"""


def _table(kind: str) -> str:
    schema = openapi_schema(kind)
    return ("".join(_rows(schema["properties"]["spec"], "spec", True))
            + "".join(_rows(schema["properties"]["status"], "status", False)))


def reference_markdown() -> str:
    return HEADER + _table("LLMDeployment") + GATEWAY_HEADER + _table(GATEWAY_KIND) + BATCH_HEADER + _table(BATCH_KIND)
