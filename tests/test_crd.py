"""The CRD in crds/ is exactly what the models generate, and is a structural schema."""

import re

import kubernetes_validate
import pytest
import yaml

from llm_operator.api.crd import KINDS, crd_manifest, crd_yaml
from llm_operator.api.reference import reference_markdown
from support import REPO, check_golden

CRD_FILE = REPO / "crds" / "llmops.dev_llmdeployments.yaml"
CRD_FILES = {kind: REPO / "crds" / f"llmops.dev_{info.plural}.yaml" for kind, info in KINDS.items()}
each_kind = pytest.mark.parametrize("kind", sorted(KINDS))


@each_kind
def test_crd_file_matches_models(request, kind):
    check_golden(CRD_FILES[kind], crd_yaml(kind), request.config.getoption("--update-golden"))


def test_reference_doc_matches_models(request):
    check_golden(REPO / "docs" / "reference.md", reference_markdown(), request.config.getoption("--update-golden"))


def _nodes(node, path="$"):
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


@each_kind
def test_schema_is_structural(kind):
    schema = crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems = []
    for path, node in _nodes(schema):
        if "$ref" in node or "default" in node or "title" in node:
            problems.append(f"{path}: has $ref/default/title")
        if "type" not in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: has no type")
        if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
            problems.append(f"{path}: anyOf outside the int-or-string idiom")
        if node.get("type") == "object" and "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties together")
        if isinstance(node.get("exclusiveMinimum"), (int, float)) and not isinstance(node["exclusiveMinimum"], bool):
            problems.append(f"{path}: JSON-Schema-2020 exclusiveMinimum")
    assert problems == []


@each_kind
def test_every_spec_field_is_described(kind):
    schema = crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    undocumented = [path for path, node in _nodes(schema) if not node.get("description") and not path.endswith("[]")
                    and not path.endswith("{}") and ".affinity." not in path]  # core type: `kubectl explain pod.spec.affinity`
    assert undocumented == []


@each_kind
def test_crd_is_a_valid_customresourcedefinition(kind):
    kubernetes_validate.validate(yaml.safe_load(CRD_FILES[kind].read_text()), "1.35.0", strict=True)


def test_names_printer_columns_and_status_subresource():
    version = crd_manifest()["spec"]["versions"][0]
    names = crd_manifest()["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == ("LLMDeployment", "llmdeployments", ["llmd"])
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Phase", "Ready", "Model", "Age"]


def test_cross_field_rules_are_published_as_cel():
    spec = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "has(self.llm) || has(self.embedding) || has(self.rerank)" in [
        r["rule"] for r in spec["x-kubernetes-validations"]
    ]
    llm_rules = spec["properties"]["llm"]["x-kubernetes-validations"]
    assert any("tensorParallelSize" in r["rule"] and r["fieldPath"] == ".tensorParallelSize" for r in llm_rules)


def _condition_types(kind: str) -> set[str]:
    """The condition types the operator writes for `kind`, from its status code."""
    from llm_operator.controllers.llmbatch.status import invalid_batch_status
    from llm_operator.controllers.llmgateway.status import compute_gateway_status
    from llm_operator.controllers.shared import invalid_spec_status
    from support import gateway

    status = {"LLMDeployment": lambda: invalid_spec_status(1, ["x"]),
              "LLMGateway": lambda: compute_gateway_status(gateway(), [], [], {}, None),
              "LLMBatch": lambda: invalid_batch_status(1, ["x"])}[kind]()
    return {condition["type"] for condition in status["conditions"]}


@pytest.mark.parametrize("kind", KINDS)
def test_the_reference_names_the_condition_types_each_kind_writes(kind):
    schema = crd_manifest(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    conditions = schema["properties"]["status"]["properties"]["conditions"]
    named = set(re.findall(r"[A-Z][a-z]+", conditions["description"]))
    assert named == _condition_types(kind), conditions["description"]
    # The item's type is shared by every kind: it names none of them.
    every_type = set().union(*(_condition_types(k) for k in KINDS))
    assert not set(re.findall(r"[A-Z][a-z]+", conditions["items"]["properties"]["type"]["description"])) & every_type
