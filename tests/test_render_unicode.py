"""Any text the CRD accepts reaches the API server unchanged.

The CRD lets users put arbitrary Unicode in many strings (image, extraArgs, env values, a pvc://
path, node selectors, annotations, ...). The renderer once wrote YAML text and parsed it back:
U+007F, C1 controls and U+FFFE made that parse raise inside reconcile, and U+0085 silently became
a space. Now every such string must survive render exactly, in the objects the operator applies
(JSON) and in what `llm-operator render` prints (YAML), and the objects must stay schema-valid.
"""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from llm_operator.api import InvalidSpec, parse_llmdeployment
from llm_operator.cli import _dump
from llm_operator.render import render
from support import assert_valid, container, manifest

# Kubernetes carries any Unicode scalar value; lone surrogates cannot be sent as JSON to it.
_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
# The characters that broke the YAML round trip, always in the mix.
_HOSTILE = "\x7f\x85\x9b\ufffe\u2028\x00\t\"'\\: #&*!|>%@`"


def _hostile(text: str) -> str:
    return text + _HOSTILE


@st.composite
def free_text_specs(draw):

    def text():
        return draw(_text.map(_hostile))

    pvc = draw(st.booleans())
    model = ({"source": f"pvc://weights/x{text()}"} if pvc else
             {"source": "hf://org/model", "file": f"x{text()}", "ignorePatterns": [text(), text()]})
    spec = {
        "llm": {
            "model": model,
            "engine": {"extraArgs": ["--seed", text(), f"--override-generation-config={text()}"],
                       "env": [{"name": "USER_VALUE", "value": text()}]},
            "scheduling": {"nodeSelector": {text(): text()},
                           "tolerations": [{"key": text(), "operator": "Equal", "value": text()[:63]}]},
        },
        "image": text(),
        "service": {"annotations": {text(): text()}},
    }
    if not pvc:
        spec["cache"] = {"size": "10Gi", "storageClassName": text()}
    return spec


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=free_text_specs())
@example(spec={  # the reproducer of the issue, exactly
    "llm": {"model": {"source": "hf://org/m"},
            "engine": {"extraArgs": ["--seed", "1\x7f"], "env": [{"name": "USER_VALUE", "value": "a\x85b"}]},
            "scheduling": {"nodeSelector": {"zone": "\x9f"}}},
    "image": "img\ufffe", "cache": {"size": "1Gi", "storageClassName": "nfs\x80"},
    "service": {"annotations": {"note": "\x9b"}}})
def test_any_accepted_text_is_rendered_exactly(spec):
    try:
        llmd = parse_llmdeployment(manifest(spec, "unicode", namespace="ns", uid="u-1"))
    except InvalidSpec:
        assume(False)  # a rule refused it (a reserved flag, '..' in a path): the CRD would too
    objects = render(llmd)

    # What the operator sends: JSON, exactly.
    assert json.loads(json.dumps(objects)) == objects
    # What `llm-operator render` prints: YAML that reads back exactly.
    assert list(yaml.safe_load_all(_dump(objects))) == objects

    # The user's strings are in the output unchanged (none was rewritten on the way).
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    engine = spec["llm"]["engine"]
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    assert env["USER_VALUE"] == engine["env"][0]["value"]
    assert container(deployment)["args"][-len(engine["extraArgs"]):] == engine["extraArgs"]
    assert container(deployment)["image"] == spec["image"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == spec["llm"]["scheduling"]["nodeSelector"]
    service = next(o for o in objects if o["kind"] == "Service")
    assert all(service["metadata"]["annotations"][k] == v for k, v in spec["service"]["annotations"].items())
    assert_valid(objects)
