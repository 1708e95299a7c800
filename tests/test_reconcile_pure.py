"""The pure parts of reconcile: when to write, whose object it is, and how a field changes hands."""

import copy

from hypothesis import HealthCheck, given, settings

from llm_operator.controllers.llmdeployment.reconcile import replicas_handoff
from llm_operator.controllers.shared import is_subset, keep_expanded_claim, name_conflict, needs_apply
from llm_operator.names import HASH_ANNOTATION
from llm_operator.render import render
from strategies import llmdeployment_specs
from support import canonical_quantities, llmd

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


def test_quantities_compare_by_value_where_they_are_quantities():
    assert is_subset({"resources": {"requests": {"cpu": "0.5", "memory": "65536Mi"}}},
                     {"resources": {"requests": {"cpu": "500m", "memory": "64Gi"}}})
    assert is_subset({"emptyDir": {"sizeLimit": "2048Mi"}}, {"emptyDir": {"sizeLimit": "2Gi"}})
    assert not is_subset({"resources": {"limits": {"memory": "65536Mi"}}}, {"resources": {"limits": {"memory": "63Gi"}}})
    # Elsewhere "1k" and "1000" are different strings (an argument, say), not the same amount.
    assert not is_subset({"args": ["1k"]}, {"args": ["1000"]})


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=llmdeployment_specs())
def test_any_spec_read_back_with_canonical_quantities_needs_no_write(spec):
    """The zero-write promise for every spec: what the API server returns is not a change."""
    for obj in render(llmd(spec, namespace="ns", uid="u")):
        assert not needs_apply(obj, canonical_quantities(obj)), obj["kind"]


def _owned_by(uid, kind="LLMDeployment", name="team"):
    return [{"apiVersion": "llmops.dev/v1alpha1", "kind": kind, "name": name, "uid": uid, "controller": True}]


def test_objects_of_others_are_conflicts_and_own_ones_are_not():
    desired = render(llmd({"llm": {"model": {"source": "hf://a/b"}}, "cache": {"size": "10Gi"}},
                          name="team", namespace="ns", uid="mine"))[0]
    users_claim = {"metadata": {"name": "team-cache"}}
    assert "was not created by this LLMDeployment" in name_conflict(desired, users_claim, "mine")
    other = {"metadata": {"name": "team-cache", "ownerReferences": _owned_by("x", "StatefulSet", "db")}}
    assert "controlled by StatefulSet db" in name_conflict(desired, other, "mine")
    previous = {"metadata": {"name": "team-cache", "ownerReferences": _owned_by("old")}}
    assert "still being deleted" in name_conflict(desired, previous, "mine")
    unlabelled_own = {"metadata": {"name": "team-cache", "ownerReferences": _owned_by("mine")}}
    assert name_conflict(desired, unlabelled_own, "mine") is None


def test_a_claim_expanded_by_hand_keeps_its_size():
    claim = render(llmd({"llm": {"model": {"source": "hf://a/b"}}, "cache": {"size": "10Gi"}},
                        namespace="ns", uid="u"))[0]
    expanded = copy.deepcopy(claim)
    expanded["spec"]["resources"]["requests"]["storage"] = "20Gi"
    kept = keep_expanded_claim(claim, expanded)
    assert kept["spec"]["resources"]["requests"]["storage"] == "20Gi" and not needs_apply(kept, expanded)
    assert keep_expanded_claim(claim, claim) is claim
    shrunk = copy.deepcopy(claim)
    shrunk["spec"]["resources"]["requests"]["storage"] = "5Gi"  # smaller than asked: the operator's size wins
    assert keep_expanded_claim(claim, shrunk) is claim


def _applied_deployment(replicas_owner_operation="Apply", manager="llm-operator"):
    live = as_served(deployment())
    live["spec"]["replicas"] = 3
    live["metadata"]["managedFields"] = [{"manager": manager, "operation": replicas_owner_operation,
                                          "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {}}}}]
    return live


def test_switching_to_an_autoscaler_hands_replicas_over_at_their_current_value():
    autoscaled = render(llmd({"llm": {"model": {"source": "hf://a/b"}, "autoscaling": {"provider": "External"}}},
                             namespace="ns", uid="u"))[0]
    assert "replicas" not in autoscaled["spec"]
    handoff = replicas_handoff(autoscaled, _applied_deployment())
    assert handoff["spec"] == {"replicas": 3} and handoff["metadata"]["name"] == autoscaled["metadata"]["name"]
    # Nothing to hand over: the autoscaler already owns the field, or the object is new.
    assert replicas_handoff(autoscaled, _applied_deployment("Update", "kube-controller-manager")) is None
    assert replicas_handoff(autoscaled, None) is None
    assert replicas_handoff(deployment(), _applied_deployment()) is None  # replicas still the operator's
