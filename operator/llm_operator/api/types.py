"""Small reusable field types for the API models.

Each type carries its own JSON-schema fragment so that the CRD generated from the models says
exactly what the Python validation accepts.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from kubernetes.client.models import V1Affinity
from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

# The Kubernetes resource.Quantity grammar, as controller-gen emits it for CRDs.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _quantity(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError("must be a Kubernetes quantity such as 16Gi, 500m or 2")
    text = str(value)
    if not re.fullmatch(QUANTITY_PATTERN, text):
        raise ValueError(f"{text!r} is not a Kubernetes quantity (examples: 16Gi, 500m, 2)")
    return text


Quantity = Annotated[
    str,
    BeforeValidator(_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]

# RFC 1123 label and subdomain: names of Secrets, claims, priority and runtime classes.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

ObjectName = Annotated[str, Field(pattern=DNS_SUBDOMAIN, min_length=1, max_length=253)]
DnsLabel = Annotated[str, Field(pattern=DNS_LABEL, min_length=1, max_length=63)]

# A hub branch, tag or commit (branch names may contain '/').
Revision = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")]

# An environment variable name as the API server accepts it (C identifier, plus '-' and '.').
ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"



def core_type_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a core Kubernetes type, from the official client's pydantic model of it,
    with its references inlined and without descriptions. Used so the CRD refuses a misspelt field
    at `kubectl apply`: the API server then checks the user's object against the same fields it
    checks a Deployment's. Descriptions are left to the core type's own `kubectl explain` pages:
    with them, three roles' affinities would quadruple the CRD (past what client-side apply stores)."""
    schema = model.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, list):
            return [inline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            node = {**definitions[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
        return {key: inline(value) for key, value in node.items() if key != "description"}

    return inline(schema)


# The core Affinity type: checked field by field (unknown fields are refused) in Python and by the
# API server; dumped by its camelCase aliases.
Affinity = Annotated[V1Affinity, WithJsonSchema(core_type_schema(V1Affinity))]
