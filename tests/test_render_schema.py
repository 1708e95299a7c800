"""Every rendered object of a built-in kind is valid against the Kubernetes OpenAPI schema (strict: no
unknown fields). KEDA's ScaledObject is not in that schema (only a real API server with KEDA's CRD
checks it: e2e/test_autoscaling.py applies one to the plane, whose API server has KEDA's CRD)."""

import kubernetes_validate
import pytest
import yaml

from llm_operator.api import parse_llmdeployment
from llm_operator.render import render
from support import EXAMPLES, KUBERNETES_VERSION, assert_valid


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_example_renders_schema_valid_objects(example):
    llmd = parse_llmdeployment(yaml.safe_load(example.read_text()))
    assert_valid(render(llmd))


def test_validator_rejects_a_broken_object():
    """The check above can fail: a Deployment with a misspelled field is refused."""
    llmd = parse_llmdeployment(yaml.safe_load(EXAMPLES[0].read_text()))
    deployment = next(o for o in render(llmd) if o["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containerz"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
