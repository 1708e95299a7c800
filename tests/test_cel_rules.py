"""Each Rule's CEL half (what the API server enforces at `kubectl apply`) against its Python half
(what `llm-operator render` enforces), offline, with cel-python: on every example, every row of
the invalid-spec table and generated specs, both halves must give the same verdict at every place
the rule applies.

cel-python implements standard CEL only. Of the Kubernetes CEL libraries the rules use, it lacks
the strings extension's `split`, `substring` and `replace` (given below, with Kubernetes' semantics
for the forms the rules use); it also lacks, unused by our rules today, `lowerAscii`/`upperAscii`/`join`/`indexOf`,
the `lists` extension (`isSorted`, `sum`, ...), `url()`, `quantity()`, `ip()`/`cidr()`,
`format()` and the regex extension's `find`/`findAll`. A rule that calls one of those fails
here with cel-python's "no such function" error until it is added to FUNCTIONS.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from typing import Any

import celpy
import pytest
from hypothesis import HealthCheck, given, settings

from invalid_specs import CASES
from llm_operator.api.llmbatch import LLMBatch
from llm_operator.api.llmdeployment import LLMDeployment
from llm_operator.api.llmgateway import LLMGateway
from llm_operator.api.rules import Rule, SpecModel
from strategies import llmdeployment_specs
from support import EXAMPLES, load_example, manifest


def _split(text: celpy.celtypes.StringType, separator: celpy.celtypes.StringType) -> celpy.celtypes.ListType:
    return celpy.celtypes.ListType([celpy.celtypes.StringType(part) for part in str(text).split(str(separator))])


def _substring(text: celpy.celtypes.StringType, start: celpy.celtypes.IntType) -> celpy.celtypes.StringType:
    if not 0 <= int(start) <= len(str(text)):
        raise ValueError(f"substring: index {int(start)} out of range")  # Kubernetes fails the rule too
    return celpy.celtypes.StringType(str(text)[int(start):])


def _replace(text: celpy.celtypes.StringType, old: celpy.celtypes.StringType,
             new: celpy.celtypes.StringType) -> celpy.celtypes.StringType:
    return celpy.celtypes.StringType(str(text).replace(str(old), str(new)))


FUNCTIONS = {"split": _split, "substring": _substring, "replace": _replace}
_ENV = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


def cel_verdict(rule: Rule, obj: dict[str, Any], old: dict[str, Any] | None = None) -> bool:
    """The CEL half's verdict on `obj`. A transition rule (one that reads `oldSelf`) sees `old`, by
    default the object itself: an update that changed nothing there."""
    if rule.cel not in _PROGRAMS:
        _PROGRAMS[rule.cel] = _ENV.program(_ENV.compile(rule.cel), functions=FUNCTIONS)
    activation = {"self": celpy.json_to_cel(obj)}
    if "oldSelf" in rule.cel:
        activation["oldSelf"] = celpy.json_to_cel(obj if old is None else old)
    result = _PROGRAMS[rule.cel].evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise AssertionError(f"CEL {rule.cel!r} failed on {obj}: {result}")
    return bool(result)


class View:
    """Attribute access over a raw dict, as the Python checks read a model: absent fields are None."""

    def __init__(self, raw: dict[str, Any]):
        self._raw = raw

    def __getattr__(self, name: str) -> Any:
        return _view(self._raw.get(name))


def _view(value: Any) -> Any:
    if isinstance(value, dict):
        return View(value)
    if isinstance(value, list):
        return [_view(item) for item in value]
    return value


def _spec_models(annotation: Any) -> Iterator[tuple[str, type[SpecModel]]]:
    """("one" | "list" | "map", model) for each SpecModel an annotation can hold."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        yield "one", annotation
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _spec_models(arg)
    elif origin is list and args:
        yield from (("list", model) for shape, model in _spec_models(args[0]) if shape == "one")
    elif origin is dict and len(args) == 2:
        yield from (("map", model) for shape, model in _spec_models(args[1]) if shape == "one")


def rule_sites(model: type[SpecModel], raw: Any) -> Iterator[tuple[type[SpecModel], dict[str, Any]]]:
    """Every (model, raw object) pair in a manifest where that model's rules apply."""
    if not isinstance(raw, dict):
        return
    yield model, raw
    for name, field in model.model_fields.items():
        for shape, child in _spec_models(field.annotation):
            value = raw.get(name)
            items = [value] if shape == "one" else (value if isinstance(value, list) else []) if shape == "list" \
                else list(value.values()) if isinstance(value, dict) else []
            for item in items:
                yield from rule_sites(child, item)


def assert_halves_agree(document: dict[str, Any], root: type[SpecModel] = LLMDeployment) -> int:
    checked = 0
    for model, raw in rule_sites(root, document):
        for rule in model.RULES:
            try:
                python = bool(rule.check(View(raw)))
            except (TypeError, AttributeError):
                continue  # ill-typed input the schema refuses before any rule runs
            assert cel_verdict(rule, raw) == python, f"{model.__name__}: {rule.cel!r} on {raw}"
            checked += 1
    return checked


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_pass_both_halves(path):
    assert assert_halves_agree(load_example(path.name)) > 0


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_table_gets_the_same_verdict_from_both_halves(case):
    assert_halves_agree(manifest(case.spec, case.name))


def test_every_rule_is_refused_by_cel_somewhere_in_the_table():
    """The table exercises every rule's refusal, not only its acceptance."""
    refused = set()
    for case in CASES:
        for model, raw in rule_sites(LLMDeployment, manifest(case.spec, case.name)):
            refused |= {rule.cel for rule in model.RULES if not cel_verdict(rule, raw)}
    every = {rule.cel for model in _all_models(LLMDeployment) for rule in model.RULES}
    assert every - refused == set()


def _all_models(root: type[SpecModel]) -> set[type[SpecModel]]:
    found, todo = set(), [root]
    while todo:
        model = todo.pop()
        if model not in found:
            found.add(model)
            todo += [child for field in model.model_fields.values() for _, child in _spec_models(field.annotation)]
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=llmdeployment_specs())
def test_generated_specs_get_the_same_verdict_from_both_halves(spec):
    assert_halves_agree(manifest(spec, "generated"))


def _gateway(name: str = "shared", **spec: Any) -> dict[str, Any]:
    document = load_example("gateway.yaml")
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    return document


# LLMGateway's rules: (id, document, accepted). Each rule is refused at least once.
GATEWAY_CASES = [
    ("example", _gateway(), True),
    ("nodeport-with-key", _gateway(service={"type": "NodePort"}), True),
    ("loadbalancer-without-key", _gateway(apiKeySecretRef=None, service={"type": "LoadBalancer"}), False),
    ("nodeport-open-on-purpose", _gateway(apiKeySecretRef=None, service={"type": "NodePort", "allowUnauthenticated": True}), True),
    ("nodeport-open-false", _gateway(apiKeySecretRef=None, service={"type": "NodePort", "allowUnauthenticated": False}), False),
    ("clusterip-without-key", _gateway(apiKeySecretRef=None, service={"type": "ClusterIP"}), True),
    ("name-longest", _gateway("g" * 55), True),
    ("name-too-long", _gateway("g" * 56), False),
    ("name-uppercase", _gateway("Shared"), False),
    ("chat-page-with-admin", _gateway(chatPage={"adminSecretRef": {"name": "chat-admin"}}), True),
    ("chat-page-open-on-an-open-gateway", _gateway(apiKeySecretRef=None, chatPage={"allowUnauthenticated": True}), True),
    ("chat-page-open-on-a-keyed-gateway", _gateway(chatPage={"allowUnauthenticated": True}), False),
    ("chat-page-without-sign-in-choice", _gateway(chatPage={}), False),
    ("chat-page-open-false", _gateway(chatPage={"allowUnauthenticated": False}), False),
    ("chat-page-both", _gateway(chatPage={"adminSecretRef": {"name": "a"}, "allowUnauthenticated": True}), False),
]


def _without_nulls(document: dict[str, Any]) -> dict[str, Any]:
    return {key: _without_nulls(value) if isinstance(value, dict) else value
            for key, value in document.items() if value is not None}


@pytest.mark.parametrize("document,accepted", [case[1:] for case in GATEWAY_CASES], ids=[case[0] for case in GATEWAY_CASES])
def test_gateway_rules_get_the_same_verdict_from_both_halves(document, accepted):
    document = _without_nulls(document)
    assert assert_halves_agree(document, LLMGateway) > 0
    verdicts = [cel_verdict(rule, raw) for model, raw in rule_sites(LLMGateway, document) for rule in model.RULES]
    assert all(verdicts) == accepted


def test_every_gateway_rule_is_refused_by_cel_somewhere_in_its_table():
    refused = {rule.cel for _, document, _ in GATEWAY_CASES
               for model, raw in rule_sites(LLMGateway, _without_nulls(document))
               for rule in model.RULES if not cel_verdict(rule, raw)}
    assert {rule.cel for model in _all_models(LLMGateway) for rule in model.RULES} - refused == set()


def _batch(name: str = "tag-docs", **spec: Any) -> dict[str, Any]:
    document = load_example("batch.yaml")
    document["metadata"]["name"] = name
    document["spec"].update(spec)
    return document


CPU = {"gpus": None, "device": "CPU"}
# LLMBatch's rules: (id, document, accepted). Each rule is refused at least once.
BATCH_CASES = [
    ("example", _batch(), True),
    ("input-on-a-claim", _batch(input={"persistentVolumeClaim": {"claimName": "data", "path": "in/set.jsonl"}}), True),
    ("both-inputs", _batch(input={"configMap": {"name": "a", "key": "k"},
                                  "persistentVolumeClaim": {"claimName": "d", "path": "x"}}), False),
    ("no-input", _batch(input={}), False),
    ("output-outside-its-claim", _batch(output={"persistentVolumeClaim": {"claimName": "r", "path": "a/../../b"}}), False),
    ("output-the-claim-root", _batch(output={"persistentVolumeClaim": {"claimName": "r", "path": "."}}), False),
    ("output-a-dotted-name", _batch(output={"persistentVolumeClaim": {"claimName": "r", "path": "a/.answers.jsonl"}}), True),
    ("extra-args-engine-flags", _batch(engine={"extraArgs": ["--max-num-seqs", "4"]}), True),
    ("extra-args-output-short", _batch(engine={"extraArgs": ["-o", "x"]}), False),
    ("extra-args-input-prefix", _batch(engine={"extraArgs": ["--input=x"]}), False),
    ("extra-args-served-name", _batch(engine={"extraArgs": ["--served_model_name=x"]}), False),
    ("cpu", _batch(**CPU, kvCacheSize="2Gi"), True),
    ("cpu-with-gpus", _batch(device="CPU"), False),
    ("kv-cache-on-gpu", _batch(kvCacheSize="2Gi"), False),
    ("parallel-mismatch", _batch(gpus=2, tensorParallelSize=4), False),
    ("name-longest", _batch("b" * 57), True),
    ("name-too-long", _batch("b" * 58), False),
    ("name-uppercase", _batch("Tag"), False),
]


@pytest.mark.parametrize("document,accepted", [case[1:] for case in BATCH_CASES], ids=[case[0] for case in BATCH_CASES])
def test_batch_rules_get_the_same_verdict_from_both_halves(document, accepted):
    document = _without_nulls(document)
    assert assert_halves_agree(document, LLMBatch) > 0
    verdicts = [cel_verdict(rule, raw) for model, raw in rule_sites(LLMBatch, document) for rule in model.RULES]
    assert all(verdicts) == accepted


def test_every_batch_rule_is_refused_by_cel_somewhere_in_its_table():
    transition = {rule.cel for rule in LLMBatch.model_fields["spec"].annotation.RULES if "oldSelf" in rule.cel}
    refused = {rule.cel for _, document, _ in BATCH_CASES
               for model, raw in rule_sites(LLMBatch, _without_nulls(document))
               for rule in model.RULES if not cel_verdict(rule, raw)}
    # The models it shares with LLMDeployment (the model, the engine) are covered by the table above.
    own = _all_models(LLMBatch) - _all_models(LLMDeployment)
    assert {rule.cel for model in own for rule in model.RULES} - refused == transition


def test_a_batch_s_spec_cannot_change_once_created():
    [rule] = [rule for rule in LLMBatch.model_fields["spec"].annotation.RULES if "oldSelf" in rule.cel]
    spec = _without_nulls(_batch())["spec"]
    assert cel_verdict(rule, spec, old=dict(spec))
    assert not cel_verdict(rule, {**spec, "backoffLimit": 3}, old=spec)
