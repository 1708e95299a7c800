"""The Helm chart's static contract, without a cluster or helm: its CRD template is generated from
crds/ (no drift), its appVersion is the operator version, its values schema closes every object,
and its RBAC has no wildcards. e2e/test_chart.py renders, installs and exercises the chart."""

from __future__ import annotations

import importlib.util
import json
import re
import tomllib

import yaml

from support import REPO, crd_hand_over_commands

CHART = REPO / "charts" / "llm-operator"


def _generator():
    spec = importlib.util.spec_from_file_location("generate_crds", REPO / "charts" / "generate_crds.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_crd_templates_match_crds_dir():
    expected = _generator().expected_templates()
    assert expected, "no CRD in crds/"
    for path, text in expected.items():
        assert path.exists(), f"{path.name} missing: run `make chart-crds`"
        assert path.read_text() == text, f"{path.name} drifted from crds/: run `make chart-crds`"
    # No stale CRD template left behind for a CRD that no longer exists in crds/.
    assert sorted(CHART.glob("templates/crd-*.yaml")) == sorted(expected)


def test_chart_crd_template_carries_the_spec_verbatim():
    """Strip the template lines and the generated body must be the crds/ spec, byte for byte in meaning."""
    source = yaml.safe_load((REPO / "crds" / "llmops.dev_llmdeployments.yaml").read_text())
    text = (CHART / "templates" / "crd-llmdeployments.yaml").read_text()
    body = text[text.index("\nspec:\n") + 1:text.rindex("{{- end }}")]
    assert yaml.safe_load(body) == {"spec": source["spec"]}
    assert text.startswith("{{- /*") and "{{- if .Values.crds.enabled }}" in text
    assert "helm.sh/resource-policy: keep" in text


def test_generator_refuses_template_delimiters():
    crd = yaml.safe_load((REPO / "crds" / "llmops.dev_llmdeployments.yaml").read_text())
    crd["spec"]["names"]["kind"] = "{{ .Oops }}"
    try:
        _generator().render_template(crd, "x.yaml")
    except ValueError as error:
        assert "{{" in str(error)
    else:
        raise AssertionError("a '{{' in the CRD would become a Helm template action")


def test_app_version_is_the_operator_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["apiVersion"] == "v2" and chart["name"] == "llm-operator"


def _objects(node, path="$"):
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path, node
        for key, child in node.items():
            if key in ("properties",):
                for name, prop in child.items():
                    yield from _objects(prop, f"{path}.{name}")
            elif key == "items":
                yield from _objects(child, f"{path}[]")
            elif key == "additionalProperties" and isinstance(child, dict):
                yield from _objects(child, f"{path}{{}}")


# Kubernetes types passed through to the pod spec as they are (their schema is Kubernetes' own).
PASSTHROUGH = {"$.affinity.nodeAffinity", "$.affinity.podAffinity", "$.affinity.podAntiAffinity"}


def test_values_schema_closes_every_object():
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = []
    for path, node in _objects(schema):
        extra = node.get("additionalProperties")
        if "properties" in node and extra is not False:
            open_objects.append(f"{path}: has properties but additionalProperties is not false")
        if "properties" not in node and not isinstance(extra, dict) and path not in PASSTHROUGH:
            open_objects.append(f"{path}: a map without a value schema")
    assert open_objects == []


def test_every_value_is_in_the_schema_and_documented():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(value, node, path):
        if isinstance(value, dict) and "properties" in node:
            assert set(value) <= set(node["properties"]), f"{path}: a value the schema does not know"
            for key, child in value.items():
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "$")
    assert set(values) == set(schema["properties"]), "every top-level value appears in values.yaml"
    text = (CHART / "values.yaml").read_text()
    for key in values:
        before = text[:text.index(f"\n{key}:")].rstrip().splitlines()[-1]
        assert before.startswith("#") or isinstance(values[key], dict), f"{key} has no comment in values.yaml"


def test_rbac_has_no_wildcards_and_no_secrets():
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert '"*"' not in helpers and "'*'" not in helpers
    block = re.search(r'define "llm-operator.namespacedRules" -}}\n(.*?)\n\{\{- end \}\}\n\n', helpers, re.S)[1]
    # Every rule, the optional ones (inside {{- if }}) included.
    rules = yaml.safe_load("\n".join(line for line in block.splitlines() if not line.startswith("{{")))
    assert [r for r in rules if "secrets" in r["resources"]] == [], "a missing Secret shows in the pod's status"
    writes = {r for rule in rules for r in rule["resources"]
              if set(rule["verbs"]) & {"update", "patch", "create", "delete"}}
    assert "llmdeployments" not in writes, "the operator never writes the user's spec"


def test_the_hand_over_to_helm_in_the_docs_covers_every_crd_of_crds_dir():
    """docs/gitops.md: Helm refuses to install over a CRD it does not own, so the commands that hand
    `kubectl apply -f crds/`'s CRDs to the release must reach every one of them (e2e/test_chart.py
    runs them against the API server)."""
    crds = {yaml.safe_load(path.read_text())["metadata"]["name"] for path in (REPO / "crds").glob("*.yaml")}
    commands = [line.split() for line in crd_hand_over_commands()]
    for verb in ("annotate", "label"):
        (command,) = [words for words in commands if words[1] == verb]
        files = [command[i + 1] for i, word in enumerate(command[:-1]) if word == "-f"]
        reached = crds if files == ["crds/"] else set(command)
        assert crds <= reached, f"kubectl {verb} leaves out {sorted(crds - reached)}"
