"""Cross-field rules, written once and enforced twice.

Every rule pairs a CEL expression (emitted into the CRD as `x-kubernetes-validations`, so the API
server rejects bad input at `kubectl apply`) with the same check in Python (so `llm-operator render`
rejects it offline with the same message). The two halves stand side by side so they are edited
together; the e2e suite applies the invalid-spec table to a real API server to prove they agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler, model_validator
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError


@dataclass(frozen=True)
class Rule:
    cel: str
    message: str
    check: Callable[[Any], bool]  # True when the object is valid
    field_path: str | None = None  # relative JSONPath-like ".field", where the error is reported

    def as_schema(self) -> dict[str, str]:
        schema = {"rule": self.cel, "message": self.message}
        if self.field_path:
            schema["fieldPath"] = self.field_path
        return schema


class SpecModel(BaseModel):
    """Base of every spec model: unknown fields are errors (as with `kubectl apply --validate=strict`),
    fields keep their camelCase API names, and `RULES` are both checked and published."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).RULES:
            if not rule.check(self):
                raise PydanticCustomError("rule", rule.message, {"field_path": rule.field_path or ""})
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        target = handler.resolve_ref_schema(schema)
        rules = cls.RULES
        if rules:
            target["x-kubernetes-validations"] = [rule.as_schema() for rule in rules]
        return schema


def is_set(value: Any) -> bool:
    """Whether the user set an optional field (one left out stays None)."""
    return value is not None
