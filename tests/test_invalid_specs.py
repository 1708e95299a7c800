"""Bad input gets a clear error naming the field, from the Python validation and from `render`."""

import io

import pytest
import yaml

from invalid_specs import CASES
from llm_operator.api import InvalidSpec, LLMDeployment, parse_llmdeployment
from llm_operator.api.crd import KINDS
from llm_operator.api.llmbatch import LLMBatch
from llm_operator.api.llmgateway import LLMGateway
from llm_operator.api.validation import parse
from llm_operator.cli import EXIT_INVALID, main
from support import BATCH, manifest

GATEWAY_DOCUMENT = {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMGateway", "metadata": {"name": "shared"},
                    "spec": {"selector": {"matchLabels": {"gateway": "shared"}}}}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_invalid_spec_gets_exact_message(case):
    with pytest.raises(InvalidSpec) as raised:
        parse_llmdeployment(manifest(case.spec, name=case.name))
    assert raised.value.errors == [case.error]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_render_cli_exits_2_naming_the_field(case, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(manifest(case.spec, name=case.name)))
    out, err = io.StringIO(), io.StringIO()
    assert main(["render", "-f", str(path)], stdout=out, stderr=err) == EXIT_INVALID
    assert case.error in err.getvalue()
    assert out.getvalue() == ""


def test_one_bad_document_fails_the_whole_render(tmp_path):
    """Nothing is printed when any document is invalid: a partial stream piped to kubectl would be worse."""
    good = manifest({"llm": {"model": {"source": "hf://Qwen/Qwen2.5-0.5B-Instruct"}}}, name="good")
    bad = manifest({"llm": {"model": {"source": "ftp://x"}}}, name="bad")
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump_all([good, bad]))
    out, err = io.StringIO(), io.StringIO()
    assert main(["render", "-f", str(path)], stdout=out, stderr=err) == EXIT_INVALID
    assert out.getvalue() == "" and "LLMDeployment 'bad'" in err.getvalue()


@pytest.mark.parametrize("model, document", [
    (LLMDeployment, manifest({"llm": {"model": {"source": "hf://Qwen/Qwen3-8B"}}, "colour": "red"})),
    (LLMGateway, {**GATEWAY_DOCUMENT, "spec": {**GATEWAY_DOCUMENT["spec"], "colour": "red"}}),
    (LLMBatch, {**BATCH, "spec": {**BATCH["spec"], "colour": "red"}}),
], ids=lambda value: value.__name__ if isinstance(value, type) else "")
def test_every_kind_is_parsed_one_way_naming_the_field_and_its_explain_command(model, document):
    with pytest.raises(InvalidSpec) as raised:
        parse(model, document)
    short_name = KINDS[model.__name__].short_names[0]
    assert raised.value.errors == [f"spec.colour: unknown field; check the spelling against `kubectl explain {short_name}.spec`"]
    assert str(raised.value).startswith(f"{model.__name__} {document['metadata']['name']!r} is invalid")
