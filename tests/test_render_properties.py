"""Property: every valid spec renders, without error, to schema-valid Kubernetes objects."""

from hypothesis import HealthCheck, given, settings

from llm_operator.render import render
from strategies import llmdeployment_specs, names
from support import assert_valid, llmd


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=llmdeployment_specs(), name=names)
def test_any_valid_spec_renders_to_valid_objects(spec, name):
    objects = render(llmd(spec, name=name, namespace="ns", uid="u-1"))
    assert_valid(objects)
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert len(deployments) == len([r for r in ("llm", "embedding", "rerank") if r in spec])
    for deployment in deployments:
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert "--task" not in args and "--enable-reasoning" not in args
