"""Read a manifest of any kind into its model, or fail with messages that name the field, the way
the API server does: the one way every command and controller parses a spec."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from .crd import KINDS
from .llmdeployment import LLMDeployment

Model = TypeVar("Model", bound=BaseModel)


class InvalidSpec(ValueError):
    """A resource that does not validate; `errors` are "field.path: message" lines."""

    def __init__(self, name: str, errors: list[str], kind: str = "LLMDeployment"):
        self.name = name
        self.errors = errors
        super().__init__(f"{kind} {name!r} is invalid:\n" + "\n".join(f"  {e}" for e in errors))


def _field_path(loc: tuple[Any, ...], rule_path: str) -> str:
    path = ""
    for part in loc:
        # pydantic adds the branch name of a union and of a function validator to loc; skip them.
        if isinstance(part, str) and (part.startswith("function-") or "[" in part):
            continue
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return (path + rule_path).lstrip(".") or "<root>"


def _message(error: ErrorDetails, short_name: str) -> str:
    if error["type"] == "extra_forbidden":
        return f"unknown field; check the spelling against `kubectl explain {short_name}.spec`"
    if error["type"] == "missing":
        return "required field is missing"
    if error["type"] == "value_error":
        return str(error["ctx"]["error"])
    return error["msg"]


def format_errors(error: ValidationError, short_name: str) -> list[str]:
    """One "field.path: message" line per problem; `short_name` is the kind's, for `kubectl explain`."""
    lines = []
    for item in error.errors(include_url=False):
        rule_path = (item.get("ctx") or {}).get("field_path", "") if item["type"] == "rule" else ""
        lines.append(f"{_field_path(item['loc'], rule_path)}: {_message(item, short_name)}")
    return lines


def parse(model: type[Model], obj: Any) -> Model:
    """Validate a manifest of the kind `model` is (LLMDeployment, LLMGateway, LLMBatch); raise
    InvalidSpec with one "path: message" line per problem."""
    name = (obj.get("metadata") or {}).get("name", "<unnamed>") if isinstance(obj, dict) else "<not a mapping>"
    kind = model.__name__
    try:
        return model.model_validate(obj)
    except ValidationError as error:
        raise InvalidSpec(name, format_errors(error, KINDS[kind].short_names[0]), kind) from None


def parse_llmdeployment(obj: Any) -> LLMDeployment:
    return parse(LLMDeployment, obj)
