"""reconcile_gateway() against an in-memory API server, and the gateway's status, case by case."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from fakes import MemoryKube
from llm_operator import handlers
from llm_operator.controllers import ObjectKey
from llm_operator.controllers.llmgateway.reconcile import VOLUME_WAIT_RETRY_SECONDS, GatewayMemo, reconcile_gateway
from llm_operator.controllers.llmgateway.status import compute_gateway_status
from llm_operator.names import CHAT_PAGE_LABEL, GATEWAY_LABEL
from llm_operator.render import RenderConfig
from llm_operator.render.gateway.chat_page import chat_page_labels
from llm_operator.render.gateway.meta import gateway_labels
from llm_operator.render.gateway.routes import GatewayRoute
from support import gateway, manifest

GATEWAY = {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMGateway",
           "metadata": {"name": "shared", "namespace": "ns", "uid": "gw-uid", "generation": 1},
           "spec": {"selector": {"matchLabels": {"gateway": "shared"}}}}


def deployment(name, served, ready=True, labels=True):
    llmd = manifest({"llm": {"model": {"source": "hf://Qwen/Qwen3-8B", "servedName": served}}}, name,
                    namespace="ns", uid=f"{name}-uid", labels={"gateway": "shared"} if labels else {})
    llmd["status"] = {"phase": "Ready" if ready else "Downloading",
                      "roles": {"llm": {"replicas": 1, "readyReplicas": 1 if ready else 0}}}
    return llmd


class GatewayKube(MemoryKube):
    """MemoryKube with an LLMGateway, the LLMDeployments of its namespace, and a count of GETs."""

    def __init__(self, llmds):
        super().__init__(None)
        self.gateway = copy.deepcopy(GATEWAY)
        self.llmds = llmds
        self.gets = []
        self.labelled = {}  # (label, value) -> pods
        self.pod_events, self.event_reads = {}, []  # pod name -> its Events; the pods whose Events were read

    def list_labelled_pods(self, namespace, label, value):
        return copy.deepcopy(self.labelled.get((label, value), []))

    def list_pod_events(self, namespace, pod):
        self.event_reads.append(pod)
        return copy.deepcopy(self.pod_events.get(pod, []))

    def get_llmgateway(self, namespace, name):
        return copy.deepcopy(self.gateway)

    def list_llmdeployments(self, namespace):
        return copy.deepcopy(self.llmds)

    def get_child(self, kind, namespace, name):
        self.gets.append(kind)
        return super().get_child(kind, namespace, name)

    def apply(self, obj, field_manager="llm-operator"):
        stored = super().apply(obj, field_manager)
        if obj["kind"] == "Service":  # the API server allocates a cluster IP
            old = self.objects[("Service", obj["metadata"]["name"])]
            old["spec"].setdefault("clusterIP", f"10.96.0.{len(self.objects)}")
            stored["spec"]["clusterIP"] = old["spec"]["clusterIP"]
        return stored

    def apply_status(self, namespace, name, status, kind="LLMDeployment"):
        assert kind == "LLMGateway"
        self.gateway["status"] = status


def run(kube, memo):
    return reconcile_gateway(kube, RenderConfig(), "ns", "shared", memo)


def test_first_reconcile_writes_everything_then_nothing_once_rolled_out():
    kube, memo = GatewayKube([deployment("chat", "chat-a"), deployment("other", "b", labels=False)]), GatewayMemo()
    result = run(kube, memo)
    assert [kind for kind, _ in kube.applied] == ["ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service"]
    assert result.phase == "Pending"
    kube.roll_out()
    assert run(kube, memo).phase == "Ready"
    kube.applied.clear(), kube.gets.clear()
    assert run(kube, memo).writes == 0
    # Its own Deployment and Service, the model's Service (for its address), and a chat page's
    # Deployment and Service left to delete (all from the watch caches): the rest is known not to
    # have changed.
    assert sorted(kube.gets) == ["Deployment", "Deployment", "Service", "Service", "Service"]
    assert list(kube.gateway["status"]["models"]) == ["chat-a"]  # "other" is not selected


def test_a_restarted_operator_writes_nothing_when_nothing_changed():
    kube = GatewayKube([deployment("chat", "chat-a")])
    run(kube, GatewayMemo())
    kube.roll_out()
    run(kube, GatewayMemo())
    kube.applied.clear()
    assert run(kube, GatewayMemo()).writes == 0


def test_a_new_model_changes_the_configuration_and_rolls_the_pods():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    run(kube, memo)
    kube.roll_out()
    run(kube, memo)
    kube.applied.clear()
    kube.llmds.append(deployment("embed", "embed-b"))
    run(kube, memo)
    assert kube.applied == [("ConfigMap", "shared-gateway"), ("Deployment", "shared-gateway")]
    assert set(kube.gateway["status"]["models"]) == {"chat-a", "embed-b"}


def test_apis_the_router_does_not_serve_reach_the_models_service_once_it_has_an_address():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    run(kube, memo)
    assert '"service-0"' not in kube.objects[("ConfigMap", "shared-gateway")]["data"]["envoy.json"]
    kube.objects[("Service", "chat-llm")] = {"kind": "Service", "metadata": {"name": "chat-llm"},
                                             "spec": {"clusterIP": "10.96.0.42", "ports": [{"port": 8000}]}}
    run(kube, memo)
    assert '"address": "10.96.0.42"' in kube.objects[("ConfigMap", "shared-gateway")]["data"]["envoy.json"]
    assert "service = [[service-0]]" in kube.objects[("ConfigMap", "shared-gateway")]["data"]["gateway.lua"]


def test_an_object_of_another_owner_is_left_alone_and_reported():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    kube.objects[("ConfigMap", "shared-gateway")] = {"kind": "ConfigMap", "metadata": {"name": "shared-gateway"}}
    run(kube, memo)
    assert ("ConfigMap", "shared-gateway") not in kube.applied
    degraded = next(c for c in kube.gateway["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "NameConflict" and "not created by this LLMGateway" in degraded["message"]


def test_nothing_runs_as_binds_to_or_mounts_an_object_of_another_owner():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    kube.objects[("ServiceAccount", "shared-gateway")] = {"kind": "ServiceAccount", "metadata": {"name": "shared-gateway"}}
    run(kube, memo)
    applied = {kind for kind, _ in kube.applied}
    assert "ServiceAccount" not in applied and "Deployment" not in applied and "RoleBinding" not in applied
    assert {"Role", "ConfigMap", "Service"} <= applied
    del kube.objects[("ServiceAccount", "shared-gateway")]
    run(kube, memo)
    assert {"ServiceAccount", "Deployment", "RoleBinding"} <= {kind for kind, _ in kube.applied}


def test_a_chat_page_claim_of_another_owner_is_not_mounted():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    with_chat_page(kube)
    kube.objects[("PersistentVolumeClaim", "shared-chat")] = {"kind": "PersistentVolumeClaim", "metadata": {"name": "shared-chat"}}
    run(kube, memo)
    kube.roll_out()
    run(kube, memo)  # the gateway's Service has an address now: the page's Deployment is rendered
    assert ("Deployment", "shared-chat") not in kube.applied and ("Service", "shared-chat") in kube.applied


# ---------------------------------------------------------------- status

ROUTE = GatewayRoute("chat-a", "chat", "llm", None)
READY_DEPLOYMENT = {"metadata": {"generation": 2}, "spec": {"replicas": 1},
                    "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1}}


def condition(status, kind):
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_ready_when_the_pods_and_every_model_are():
    status = compute_gateway_status(gateway(), [ROUTE], [], {"chat": deployment("chat", "chat-a")}, READY_DEPLOYMENT)
    assert status["phase"] == "Ready"
    assert status["models"] == {"chat-a": {"llmDeployment": "chat", "role": "llm", "readyReplicas": 1}}
    assert status["url"] == "http://shared-gateway.team.svc:8000/v1"
    assert condition(status, "Ready")["status"] == "True"


def test_pending_while_the_gateway_pods_start():
    starting = copy.deepcopy(READY_DEPLOYMENT)
    starting["status"]["readyReplicas"] = 0
    for observed in (starting, None):
        status = compute_gateway_status(gateway(), [ROUTE], [], {"chat": deployment("chat", "chat-a")}, observed)
        assert status["phase"] == "Pending"
        assert condition(status, "Ready")["reason"] == "GatewayStarting"


def test_a_selected_llmdeployment_on_its_way_to_ready_keeps_the_gateway_pending_with_it_as_the_reason():
    status = compute_gateway_status(gateway(), [ROUTE], [], {"chat": deployment("chat", "chat-a", ready=False)},
                                    READY_DEPLOYMENT)
    assert status["phase"] == "Pending"
    ready = condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "LLMDeploymentNotReady")
    assert ready["message"].startswith("LLMDeployment chat is Downloading (chat-a 0/1 replicas ready)")
    assert condition(status, "Degraded")["status"] == "False"
    assert condition(status, "Progressing")["status"] == "True"
    assert status["models"]["chat-a"]["readyReplicas"] == 0


def test_a_selected_llmdeployment_that_is_degraded_degrades_the_gateway():
    broken = deployment("chat", "chat-a", ready=False)
    broken["status"]["phase"] = "Degraded"
    status = compute_gateway_status(gateway(), [ROUTE], [], {"chat": broken}, READY_DEPLOYMENT)
    assert status["phase"] == "Degraded"
    degraded = condition(status, "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "LLMDeploymentNotReady")
    assert degraded["message"].startswith("LLMDeployment chat is Degraded (chat-a 0/1 replicas ready)")


def test_a_model_whose_key_secret_is_missing_is_named_with_the_secret():
    broken = deployment("chat", "chat-a", ready=False)
    broken["status"]["phase"] = "Degraded"
    broken["status"]["conditions"] = [{"type": "Degraded", "status": "True", "reason": "SecretMissing",
                                       "message": 'Pods of role llm cannot start: secret "chat-key" not found.'}]
    status = compute_gateway_status(gateway(), [ROUTE], [], {"chat": broken}, READY_DEPLOYMENT)
    assert 'SecretMissing: Pods of role llm cannot start: secret "chat-key" not found' in condition(status, "Degraded")["message"]


def test_no_models_and_name_conflicts_are_reasons():
    nothing = compute_gateway_status(gateway(), [], [], {}, READY_DEPLOYMENT)
    assert condition(nothing, "Degraded")["reason"] == "NoModels"
    clash = compute_gateway_status(gateway(), [], ["model 'x' is served by a (llm), b (llm)"], {}, READY_DEPLOYMENT)
    assert condition(clash, "Degraded")["reason"] == "ModelNameConflict"


def test_a_refused_object_is_failed():
    status = compute_gateway_status(gateway(), [ROUTE], [], {"chat": deployment("chat", "chat-a")}, None,
                                    apply_error="Role shared-gateway: forbidden")
    assert status["phase"] == "Failed"
    assert condition(status, "Degraded")["message"].startswith("The API server refused Role shared-gateway")


# ---------------------------------------------------------------- the chat page


def with_chat_page(kube, **page):
    kube.gateway["spec"]["chatPage"] = page or {"adminSecretRef": {"name": "chat-admin"}}
    kube.gateway["metadata"]["generation"] += 1


def test_a_chat_page_is_part_of_the_gateway_and_ready_only_with_its_pod():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    with_chat_page(kube)
    assert run(kube, memo).phase == "Pending"
    # The gateway's Service had no address yet for the page to reach: its pod waits for the next round.
    assert {key for key in kube.applied if key[1] == "shared-chat"} == {
        ("PersistentVolumeClaim", "shared-chat"), ("Service", "shared-chat")}
    assert run(kube, memo).phase == "Pending"
    page_pod = kube.objects[("Deployment", "shared-chat")]["spec"]["template"]["spec"]["containers"][0]
    gateway_ip = kube.objects[("Service", "shared-gateway")]["spec"]["clusterIP"]
    assert {"name": "OPENAI_API_BASE_URL", "value": f"http://{gateway_ip}:8000/v1"} in page_pod["env"]
    page = kube.gateway["status"]["chatPage"]
    assert page == {"url": "http://shared-chat.ns.svc:8080", "ready": False, "models": ["chat-a"]}
    ready = next(c for c in kube.gateway["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False"
    kube.roll_out()
    assert run(kube, memo).phase == "Ready"
    assert kube.gateway["status"]["chatPage"]["ready"] is True


def test_removing_the_chat_page_deletes_its_pod_and_service_but_keeps_its_data():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    with_chat_page(kube)
    run(kube, memo), run(kube, memo)
    kube.roll_out()
    assert ("Deployment", "shared-chat") in kube.objects
    del kube.gateway["spec"]["chatPage"]
    kube.gateway["metadata"]["generation"] += 1
    result = run(kube, memo)
    assert result.phase == "Ready" and result.writes >= 2
    left = {key for key in kube.objects if key[1] == "shared-chat"}
    assert left == {("PersistentVolumeClaim", "shared-chat")}
    assert "chatPage" not in kube.gateway["status"]


def test_a_chat_page_name_the_gateway_did_not_make_is_never_deleted():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    someone_elses = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "shared-chat", "namespace": "ns",
                                                                          "labels": {"app": "theirs"}}}
    kube.objects[("Service", "shared-chat")] = someone_elses
    run(kube, memo)
    assert kube.objects[("Service", "shared-chat")] == someone_elses


def test_an_expanded_chat_page_claim_keeps_its_size():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    with_chat_page(kube)
    run(kube, memo)
    kube.objects[("PersistentVolumeClaim", "shared-chat")]["spec"]["resources"]["requests"]["storage"] = "5Gi"
    kube.gateway["metadata"]["generation"] += 1
    run(kube, GatewayMemo())  # a restarted operator reads the claim again
    assert kube.objects[("PersistentVolumeClaim", "shared-chat")]["spec"]["resources"]["requests"]["storage"] == "5Gi"


def test_a_change_of_the_chat_page_or_a_gateway_pod_queues_its_gateway():
    """Its pod getting ready (a change of its Deployment) is what turns the gateway Ready; a pod that
    cannot start for a missing Secret says so only on itself."""
    queued = []
    context = SimpleNamespace(queue=SimpleNamespace(add_soon=lambda key, delay: queued.append(key)))
    chat_deployment = {"metadata": {"namespace": "ns", "name": "shared-chat", "labels": chat_page_labels("shared")}}
    handlers._changed(context, "Deployment", "MODIFIED", chat_deployment)
    gateway_pod = {"metadata": {"namespace": "ns", "name": "shared-gateway-x", "labels": gateway_labels("shared")}}
    handlers._changed(context, "Pod", "MODIFIED", gateway_pod)
    assert queued == [ObjectKey("LLMGateway", "ns", "shared")] * 2


# ---------------------------------------------------------------- Secrets the gateway's own pods need


def waiting_pod(name, labels, reason="ContainerCreating", message=None):
    waiting = {"reason": reason, **({"message": message} if message else {})}
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}],
                       "containerStatuses": [{"name": "main", "ready": False, "state": {"waiting": waiting}}]}}


def test_a_missing_gateway_key_secret_is_named_from_the_kubelet_s_mount_events():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    kube.gateway["spec"]["apiKeySecretRef"] = {"name": "gw-key", "key": "key"}
    run(kube, memo)
    kube.labelled[(GATEWAY_LABEL, "shared")] = [waiting_pod("shared-gateway-x", gateway_labels("shared"))]
    # No word from the kubelet yet: waiting, and looked at again soon (the pod will not change).
    result = run(kube, memo)
    assert result.phase == "Pending" and result.requeue_after == VOLUME_WAIT_RETRY_SECONDS
    kube.pod_events["shared-gateway-x"] = [
        {"reason": "Scheduled", "message": "Successfully assigned ns/shared-gateway-x to node"},
        {"reason": "FailedMount", "lastTimestamp": "2026-12-07T10:00:00Z",
         "message": 'MountVolume.SetUp failed for volume "gateway-key" : secret "gw-key" not found'}]
    result = run(kube, memo)
    assert result.phase == "Degraded" and result.requeue_after is None
    degraded = condition(kube.gateway["status"], "Degraded")
    assert degraded["reason"] == "SecretMissing"
    assert 'secret "gw-key" not found' in degraded["message"] and "spec.apiKeySecretRef" in degraded["message"]
    # Created: the pod runs, its Events are no longer read, and the problem is gone.
    kube.labelled[(GATEWAY_LABEL, "shared")] = []
    kube.roll_out()
    reads = len(kube.event_reads)
    assert run(kube, memo).phase == "Ready" and len(kube.event_reads) == reads


def test_a_missing_chat_page_admin_secret_is_named_from_the_pod():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    with_chat_page(kube)
    run(kube, memo)
    kube.labelled[(CHAT_PAGE_LABEL, "shared")] = [waiting_pod(
        "shared-chat-x", chat_page_labels("shared"), "CreateContainerConfigError", 'secret "chat-admin" not found')]
    assert run(kube, memo).phase == "Degraded"
    degraded = condition(kube.gateway["status"], "Degraded")
    assert degraded["reason"] == "SecretMissing" and 'secret "chat-admin" not found' in degraded["message"]
    assert "spec.chatPage.adminSecretRef" in degraded["message"]
    assert kube.event_reads == []  # the pod itself says it


def test_a_gateway_without_a_key_does_not_open_a_guarded_model_to_anyone():
    keyed = deployment("keyed", "keyed-chat")
    keyed["spec"]["apiKeySecretRef"] = {"name": "llm-api-key", "key": "api-key"}
    fenced = deployment("fenced", "fenced-chat")
    fenced["spec"]["service"] = {"allowedNamespaces": ["team-a"]}
    kube, memo = GatewayKube([keyed, fenced, deployment("open", "open-chat")]), GatewayMemo()
    run(kube, memo)
    kube.roll_out()
    result = run(kube, memo)
    lua = kube.objects[("ConfigMap", "shared-gateway")]["data"]["gateway.lua"]
    assert "[[open-chat]]" in lua and "keyed-chat" not in lua and "fenced-chat" not in lua
    degraded = condition(kube.gateway["status"], "Degraded")
    assert result.phase == "Degraded" and degraded["reason"] == "GatewayKeyRequired"
    assert degraded["message"].startswith("LLMDeployment keyed has an API key (apiKeySecretRef), and this gateway has no key")
    assert "(1 more problems)" in condition(kube.gateway["status"], "Ready")["message"]  # fenced
    kube.gateway["spec"]["apiKeySecretRef"] = {"name": "gateway-key", "key": "api-key"}
    kube.gateway["metadata"]["generation"] = 2
    run(kube, memo)
    assert set(kube.gateway["status"]["models"]) == {"keyed-chat", "fenced-chat", "open-chat"}


def test_a_spec_the_operator_cannot_read_is_reported_by_field_with_its_explain_command():
    kube, memo = GatewayKube([deployment("chat", "chat-a")]), GatewayMemo()
    kube.gateway["spec"]["colour"] = "red"
    run(kube, memo)
    status = kube.gateway["status"]
    assert status["phase"] == "Failed" and kube.applied == []
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.colour: unknown field; check the spelling against `kubectl explain llmgw.spec`" in degraded["message"]
