"""The pure parts of reconcile: when to write, and which Secrets to look for."""

import copy

from llm_operator.reconcile import is_subset, needs_apply, referenced_secrets
from llm_operator.render import HASH_ANNOTATION, render
from support import llmd

SPEC = {"llm": {"model": {"source": "hf://Qwen/Qwen3-8B"},
                "engine": {"env": [{"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "extra", "key": "k"}}}]}},
        "apiKeySecretRef": {"name": "api", "key": "key"}, "credentialsSecretRef": {"name": "tokens"}}


def deployment():
    return render(llmd(SPEC, namespace="ns", uid="u"))[0]


def as_served(obj):
    """What the API server returns: defaults added, false non-pointer booleans dropped."""
    live = copy.deepcopy(obj)
    live["metadata"]["uid"] = "x"
    live["status"] = {"replicas": 1}
    pod = live["spec"]["template"]["spec"]
    pod["dnsPolicy"] = "ClusterFirst"
    for mount in pod["initContainers"][0]["volumeMounts"]:
        if mount.get("readOnly") is False:
            del mount["readOnly"]
    return live


def test_served_object_with_defaults_needs_no_write():
    desired = deployment()
    assert not needs_apply(desired, as_served(desired))


def test_drift_in_an_owned_field_needs_a_write():
    desired = deployment()
    for drift in (lambda o: o["spec"].update(replicas=3),
                  lambda o: o["spec"]["template"]["spec"]["containers"][0].update(image="other:1"),
                  lambda o: o["spec"]["template"]["spec"]["containers"][0]["args"].append("--x"),
                  lambda o: o["metadata"]["annotations"].update({HASH_ANNOTATION: "stale"})):
        live = as_served(desired)
        drift(live)
        assert needs_apply(desired, live)


def test_missing_object_needs_a_write():
    assert needs_apply(deployment(), None)


def test_is_subset_rules():
    assert is_subset({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3})
    assert is_subset({"a": False, "b": []}, {})
    assert not is_subset({"a": True}, {})
    assert not is_subset({"a": [1, 2]}, {"a": [1]})
    assert is_subset({"cpu": "1"}, {"cpu": 1})  # quantities may come back as numbers


def test_referenced_secrets_name_the_fields():
    assert referenced_secrets(llmd(SPEC)) == [("api", "spec.apiKeySecretRef"), ("extra", "spec.llm.engine.env[0]")]
