"""What every kind of the llmops.dev API shares: its group and version, object metadata, conditions,
and references to Secrets."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .rules import Rule, SpecModel
from .types import ObjectName

GROUP = "llmops.dev"


VERSION = "v1alpha1"


API_VERSION = f"{GROUP}/{VERSION}"


class SecretKeySelector(SpecModel):
    """A key of a Secret in the LLMDeployment's namespace."""

    name: ObjectName = Field(description="Secret name.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key in the Secret.")


class SecretReference(SpecModel):
    """A Secret in the LLMDeployment's namespace."""

    name: ObjectName = Field(description="Secret name.")


class Condition(BaseModel):
    """A Kubernetes-style condition (kstatus)."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="One of the types `conditions` lists for this kind.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word, for machines.")
    message: str = Field(description="What happened and what to do, for people.")
    observedGeneration: int | None = Field(None, description="The metadata.generation this condition describes.")
    lastTransitionTime: str | None = Field(
        None, json_schema_extra={"format": "date-time"}, description="When status last changed."
    )


NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ObjectMeta(BaseModel):
    """The part of metadata the renderer reads; the rest is kept as given."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


def service_name_rules(max_length: int, longest_child: str) -> tuple[Rule, Rule]:
    """The rules on metadata.name of a kind whose children include Services named after it."""
    return (
        Rule(
            f"size(self.metadata.name) <= {max_length}",
            f"metadata.name must be at most {max_length} characters: {longest_child}",
            lambda o: len(o.metadata.name) <= max_length,
        ),
        Rule(
            f"self.metadata.name.matches('{NAME_PATTERN}')",
            "metadata.name must start with a letter and contain only lowercase letters, digits and '-': it names Services",
            lambda o: re.fullmatch(NAME_PATTERN, o.metadata.name) is not None,
        ),
    )
