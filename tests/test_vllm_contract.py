"""The vLLM contract: every command line the renderer produces is accepted by the pinned vLLM's
own `vllm serve` parser (tests/vllm_check.py), for every example and for generated specs."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from llm_operator.api import parse_llmdeployment
from llm_operator.render import render
from strategies import llmdeployment_specs
from support import EXAMPLES, container, llmd


def serve_lines(objects):
    """(deployment name, args after `vllm serve`) for every rendered Deployment."""
    for obj in objects:
        if obj["kind"] == "Deployment":
            vllm = container(obj)
            assert vllm["command"] == ["vllm", "serve"]
            yield obj["metadata"]["name"], vllm["args"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_is_accepted_by_vllm(example, vllm_parser):
    lines = list(serve_lines(render(parse_llmdeployment(yaml.safe_load(example.read_text())))))
    assert lines
    for name, args in lines:
        ok, error = vllm_parser.check(args)
        assert ok, f"{example.name}: Deployment {name}: vLLM refused `vllm serve {' '.join(args)}`: {error}"


# A sample, not an exhaustive search: each check costs a round trip to the parser process.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(spec=llmdeployment_specs())
def test_generated_specs_are_accepted_by_vllm(spec, vllm_parser):
    for name, args in serve_lines(render(llmd(spec))):
        ok, error = vllm_parser.check(args)
        assert ok, f"Deployment {name}: vLLM refused `vllm serve {' '.join(args)}`: {error}"
