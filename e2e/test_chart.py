"""The Helm chart against the real control plane: lint, values schema, server-side dry run,
install, the operator process running with exactly the chart's RBAC (its ServiceAccount's token),
one rule removed, CRD upgrade, uninstall, listed-namespaces mode, and GitOps (no diff after Ready).

There is no container runtime, so the chart's own Deployment never runs the operator: the tests
run the real `llm-operator run` process with the identity the chart creates instead.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

import demo
from operator_process import (
    REPO,
    OperatorProcess,
    audit_lines,
    eventually,
    service_account_kubeconfig,
)
from support import crd_hand_over_commands
from workloads import apply, condition, deploy_rag_stack, example, get, wait_established, wait_ready

CHART = REPO / "charts" / "llm-operator"
CRD = "llmdeployments.llmops.dev"
CRDS = (CRD, "llmgateways.llmops.dev", "llmbatches.llmops.dev")  # the chart carries all three


# ------------------------------------------------------------------ helpers


def helm(cluster, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    command = [str(cluster.bin("helm")), f"--kubeconfig={cluster.kubeconfig}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command[:1] + command[2:])} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def template(cluster, *args: str) -> list[dict]:
    rendered = helm(cluster, "template", "rel", str(CHART), *args).stdout
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


def adopt_crd(cluster, release: str, namespace: str) -> None:
    """Hand the CRDs `crd_applied` applied from crds/ to this release, with the commands of
    docs/gitops.md ("Moving from `kubectl apply -f crds/` to the chart"): Helm refuses to install
    over an object without its ownership labels."""
    for command in crd_hand_over_commands():
        words = shlex.split(command.replace("release-name=llm-operator", f"release-name={release}")
                            .replace("release-namespace=llm-operator", f"release-namespace={namespace}"))
        assert words[0] == "kubectl", command
        cluster.kubectl(*[str(REPO / "crds") if word == "crds/" else word for word in words[1:]])


def user(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"


def can_i(cluster, who: str, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={who}", "-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    return cluster.kubectl(*args, check=False).stdout.strip() == "yes"


def status_writers(audit_log: Path, namespace: str, since_line: int) -> set[str]:
    """Users who wrote any LLMDeployment status in the namespace, from the API server's audit log."""
    writers = set()
    with open(audit_log, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number < since_line:
                continue
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if (event.get("stage") == "ResponseComplete" and ref.get("resource") == "llmdeployments"
                    and ref.get("subresource") == "status" and ref.get("namespace") == namespace
                    and event.get("verb") in ("patch", "update")):
                writers.add(event["user"]["username"])
    return writers


@contextlib.contextmanager
def without_verb(cluster, clusterrole: str, resource: str, verb: str):
    """The installed ClusterRole with one verb taken off one resource's rule; restored afterwards."""
    original = json.loads(cluster.kubectl("get", "clusterrole", clusterrole, "-o", "json").stdout)
    changed = json.loads(json.dumps(original))
    rules = [rule for rule in changed["rules"] if resource in rule["resources"]]
    assert len(rules) == 1 and verb in rules[0]["verbs"], f"no single rule grants {verb} {resource}"
    rules[0]["verbs"].remove(verb)
    if not rules[0]["verbs"]:  # a rule must keep at least one verb: drop it whole
        changed["rules"].remove(rules[0])
    cluster.kubectl("replace", "-f", "-", input=json.dumps(changed))
    try:
        yield
    finally:
        current = json.loads(cluster.kubectl("get", "clusterrole", clusterrole, "-o", "json").stdout)
        original["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        cluster.kubectl("replace", "-f", "-", input=json.dumps(original))


def forbidden_lines(log: str, namespace: str) -> list[str]:
    """403s in an operator log about a namespace. Only that namespace: a cluster-wide operator also
    meets other tests' namespaces, and writing into a terminating namespace is a 403 too. (kopf's
    cluster-scoped CRD watch, which the chart does not grant on purpose, names no namespace.)"""
    return [line for line in log.splitlines() if "forbidden" in line.lower() and f'"{namespace}"' in line]


class Release:
    def __init__(self, name: str, namespace: str, operator: OperatorProcess):
        self.name = name
        self.namespace = namespace
        self.operator = operator
        # The release name contains the chart name, so every object is named after the release.
        self.fullname = name
        self.user = user(namespace, name)

    def log(self) -> str:
        return self.operator.log_path.read_text(errors="replace")


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module", autouse=True)
def only_the_chart_operator(cluster):
    """An operator with wider rights (the session operator, or a running `make demo`'s, both
    cluster-admin over every namespace) would reconcile these tests' resources too and hide a
    missing rule. Whatever the test order, stop any running one for this module and start it again
    afterwards."""
    with demo.no_other_operator(cluster):
        yield


@pytest.fixture(scope="module")
def crd_applied(cluster):
    """The CRD exactly as in crds/ (force: a test aborted mid-upgrade may have left a changed one)."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for crd in CRDS:
        wait_established(cluster.kubectl, crd)


@pytest.fixture(scope="module")
def release(cluster, crd_applied):
    """The chart installed cluster-wide (CRD included) and the operator process running with the
    token of the ServiceAccount the chart created, so it has exactly the chart's RBAC."""
    suffix = secrets.token_hex(3)
    name, namespace = f"llm-operator-{suffix}", f"llm-operator-chart-{suffix}"
    adopt_crd(cluster, name, namespace)
    started = time.monotonic()
    helm(cluster, "install", name, str(CHART), "-n", namespace, "--create-namespace")
    print(f"\nhelm install: {time.monotonic() - started:.1f}s")
    for crd in CRDS:
        wait_established(cluster.kubectl, crd)
    kubeconfig = service_account_kubeconfig(cluster, namespace, name, Path(cluster.state_dir) / "chart-operator.kubeconfig")
    log = Path(cluster.state_dir) / "logs" / "operator-chart.log"
    log.write_text("")
    # No --namespace: the chart's default, cluster-wide mode. The Lease the chart's RBAC allows.
    operator = OperatorProcess(kubeconfig, log, lease=(namespace, name))
    operator.start()
    try:
        yield Release(name, namespace, operator)
    finally:
        operator.stop()
        helm(cluster, "uninstall", name, "-n", namespace, check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


# ------------------------------------------------------------------ static checks with the helm binary


def test_helm_lint_is_clean(cluster):
    for values in ([], ["--set", "watchNamespaces={a,b}", "--set", "metrics.serviceMonitor.enabled=true",
                        "--set", "vllmPodMonitor.enabled=true", "--set", "crds.enabled=false"]):
        result = helm(cluster, "lint", "--strict", str(CHART), *values)
        assert "0 chart(s) failed" in result.stdout
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("args, complaint", [
    (["--set", "foo=bar"], "additional properties 'foo' not allowed"),
    (["--set", "image.registry=x"], "additional properties 'registry' not allowed"),
    (["--set", "operator.logFormat=yaml"], "logFormat"),
    (["--set", "operator.workers=0"], "workers"),
    (["--set", "watchNamespaces=a"], "watchNamespaces"),
], ids=["unknown-key", "unknown-nested-key", "bad-enum", "below-minimum", "not-a-list"])
def test_values_schema_rejects_bad_values(cluster, args, complaint):
    result = helm(cluster, "template", "rel", str(CHART), *args, check=False)
    assert result.returncode != 0, "helm accepted values the schema should refuse"
    assert complaint in result.stderr


def test_chart_crds_are_the_crds_of_crds_dir(cluster):
    crds = {doc["metadata"]["name"]: doc for doc in template(cluster) if doc["kind"] == "CustomResourceDefinition"}
    assert sorted(crds) == sorted(CRDS)
    for name, crd in crds.items():
        source = yaml.safe_load((REPO / "crds" / f"llmops.dev_{name.split('.')[0]}.yaml").read_text())
        assert crd["spec"] == source["spec"]
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
        assert crd["metadata"]["labels"]["app.kubernetes.io/version"] == yaml.safe_load(
            (CHART / "Chart.yaml").read_text())["appVersion"]
    assert not [doc for doc in template(cluster, "--set", "crds.enabled=false")
                if doc["kind"] == "CustomResourceDefinition"]


def test_monitors_select_the_operator_the_vllm_pods_and_the_gateway_pods(cluster):
    docs = template(cluster, "--set", "metrics.serviceMonitor.enabled=true", "--set", "vllmPodMonitor.enabled=true",
                    "--set", "watchNamespaces={team-a}")
    by_kind = {doc["kind"]: doc for doc in docs if doc["kind"] != "PodMonitor"}
    pod_monitors = {doc["metadata"]["name"].rsplit("-", 1)[1]: doc["spec"] for doc in docs if doc["kind"] == "PodMonitor"}
    assert sorted(pod_monitors) == ["gateway", "vllm"]
    for suffix, (pod_name, port) in {"vllm": ("vllm", "http"), "gateway": ("llm-gateway", "metrics")}.items():
        pod_monitor = pod_monitors[suffix]
        assert pod_monitor["selector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "llm-operator",
                                                           "app.kubernetes.io/name": pod_name}}
        assert pod_monitor["podMetricsEndpoints"][0]["port"] == port
        assert pod_monitor["podMetricsEndpoints"][0]["path"] == "/metrics"
        assert pod_monitor["namespaceSelector"] == {"matchNames": ["team-a"]}
    service_monitor = by_kind["ServiceMonitor"]["spec"]
    assert service_monitor["selector"]["matchLabels"] == by_kind["Service"]["spec"]["selector"]
    assert service_monitor["endpoints"][0]["port"] == by_kind["Service"]["spec"]["ports"][0]["name"] == "metrics"
    assert "PodMonitor" not in {doc["kind"] for doc in template(cluster)}


def test_pod_logs_are_granted_and_read_only_when_enabled(cluster):
    def log_rules_and_flag(*values):
        docs = template(cluster, *values)
        rules = [rule for doc in docs if doc["kind"] in ("Role", "ClusterRole") for rule in doc.get("rules") or []
                 if "pods/log" in rule["resources"]]
        [operator] = [doc for doc in docs if doc["kind"] == "Deployment"]
        return rules, "--read-pod-logs" in operator["spec"]["template"]["spec"]["containers"][0]["args"]

    assert log_rules_and_flag() == ([], False)
    for mode in ([], ["--set", "watchNamespaces={team-a,team-b}"]):
        rules, flag = log_rules_and_flag("--set", "operator.readPodLogs=true", *mode)
        assert flag and len(rules) == (2 if mode else 1)
        assert all(rule["verbs"] == ["get"] for rule in rules)


def test_rendered_chart_passes_a_server_side_dry_run(cluster, crd_applied, namespace):
    for values in ([], ["--set", f"watchNamespaces={{{namespace}}}", "--set", "crds.enabled=false"]):
        rendered = helm(cluster, "template", "rel", str(CHART), "-n", namespace, *values).stdout
        # --force-conflicts: the CRD exists already, applied by another field manager.
        result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-",
                                 input=rendered)
        kinds = {line.split("/")[0].split(".")[0] for line in result.stdout.splitlines()}
        listed = bool(values)
        # Both modes: a Role and RoleBinding for the leader-election Lease in the release namespace.
        rbac = {"role", "rolebinding"} | (set() if listed else {"clusterrole", "clusterrolebinding"})
        assert {"serviceaccount", "deployment", "service"} | rbac == kinds - {"customresourcedefinition"}, result.stdout
        assert ("customresourcedefinition" in kinds) == (not listed)


# ------------------------------------------------------------------ listed-namespaces mode
# Before the cluster-wide release below exists: its operator would also reconcile this namespace.


def test_listed_namespaces_mode_needs_only_a_role(cluster, crd_applied, namespace):
    name = f"llmop-{secrets.token_hex(3)}"
    helm(cluster, "install", name, str(CHART), "-n", namespace, "--set", "crds.enabled=false",
         "--set", f"watchNamespaces={{{namespace}}}")
    fullname = f"{name}-llm-operator"
    operator = None
    try:
        role = json.loads(cluster.kubectl("-n", namespace, "get", "role", fullname, "-o", "json").stdout)
        assert {"deployments", "llmdeployments/status", "events"} <= {r for rule in role["rules"] for r in rule["resources"]}
        binding = json.loads(cluster.kubectl("-n", namespace, "get", "rolebinding", fullname, "-o", "json").stdout)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": fullname, "namespace": namespace}]
        # No cluster-scoped permission at all in this mode.
        assert cluster.kubectl("get", "clusterrole", fullname, check=False).returncode != 0
        assert cluster.kubectl("get", "clusterrolebinding", fullname, check=False).returncode != 0
        args = json.loads(cluster.kubectl("-n", namespace, "get", "deployment", fullname, "-o", "json").stdout)[
            "spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--namespace={namespace}" in args

        who = user(namespace, fullname)
        assert can_i(cluster, who, "delete", "deployments.apps", namespace)
        assert not can_i(cluster, who, "list", "deployments.apps", "default")
        assert not can_i(cluster, who, "get", "secrets", "default")
        assert not can_i(cluster, who, "get", "secrets", namespace)
        assert not can_i(cluster, who, "get", "pods", namespace, "log")  # only with operator.readPodLogs
        assert can_i(cluster, who, "list", "events", namespace)  # a gateway pod's FailedMount: which Secret

        kubeconfig = service_account_kubeconfig(cluster, namespace, fullname,
                                                Path(cluster.state_dir) / "chart-listed.kubeconfig")
        log = Path(cluster.state_dir) / "logs" / "operator-chart-listed.log"
        log.write_text("")
        operator = OperatorProcess(kubeconfig, log, namespaces=(namespace,), lease=(namespace, fullname))
        started = time.monotonic()
        operator.start()
        deploy_rag_stack(cluster, namespace)
        wait_ready(cluster, namespace, "rag-stack", timeout=60)
        print(f"\nListed-namespaces mode, operator start to Ready: {time.monotonic() - started:.1f}s")
        text = log.read_text()
        assert forbidden_lines(text, namespace) == []
        # kopf's scanning is off: no retries of forbidden namespace or CRD watches at start.
        assert "Not enough permissions" not in text
    finally:
        if operator:
            operator.stop()
        helm(cluster, "uninstall", name, "-n", namespace, check=False)


# ------------------------------------------------------------------ cluster-wide release


def test_install_creates_the_objects(cluster, release):
    ns, name = release.namespace, release.fullname
    assert get(cluster, ns, "serviceaccount", name)["automountServiceAccountToken"] is True
    binding = json.loads(cluster.kubectl("get", "clusterrolebinding", name, "-o", "json").stdout)
    assert binding["roleRef"]["name"] == name
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": ns}]
    rules = json.loads(cluster.kubectl("get", "clusterrole", name, "-o", "json").stdout)["rules"]
    assert all("*" not in rule[key] for rule in rules for key in ("apiGroups", "resources", "verbs"))
    assert not [rule for rule in rules if "secrets" in rule["resources"]], "no permission on Secrets"
    assert {"update"} == {v for rule in rules if "llmdeployments/finalizers" in rule["resources"] for v in rule["verbs"]}
    lease_rules = json.loads(cluster.kubectl("-n", ns, "get", "role", f"{name}-leader-election", "-o", "json").stdout)["rules"]
    assert {r for rule in lease_rules for r in rule["resources"]} == {"leases"}

    deployment = get(cluster, ns, "deployment", name)
    assert deployment["spec"]["replicas"] == 1
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["image"] == "ghcr.io/llmops-dev/llm-operator:0.1.0"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert get(cluster, ns, "service", f"{name}-metrics")["spec"]["ports"][0]["port"] == 9090

    for name in CRDS:
        crd = json.loads(cluster.kubectl("get", "crd", name, "-o", "json").stdout)
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release.name


def test_operator_with_the_charts_rbac_reconciles_the_rag_stack(cluster, release, namespace):
    before = audit_lines(cluster.audit_log)
    started = time.monotonic()
    deploy_rag_stack(cluster, namespace)
    wait_ready(cluster, namespace, "rag-stack", timeout=60)
    print(f"\nRAG stack Ready with the chart's RBAC: {time.monotonic() - started:.1f}s")
    # The status came from the chart's identity and nobody else's: no other operator did the work.
    assert status_writers(cluster.audit_log, namespace, before) == {release.user}
    assert len([d for d in ("llm", "embedding", "rerank") if get(cluster, namespace, "deployment", f"rag-stack-{d}")]) == 3
    assert get(cluster, namespace, "pvc", "rag-stack-cache") is not None

    # The opt-in NetworkPolicy: made, owned, and removed again, all with the chart's permissions.
    cluster.kubectl("-n", namespace, "patch", "llmd", "rag-stack", "--type=merge",
                    "-p", json.dumps({"spec": {"service": {"allowedNamespaces": [namespace]}}}))
    policy = eventually(lambda: get(cluster, namespace, "networkpolicy", "rag-stack-ingress"), 20,
                        what="NetworkPolicy rag-stack-ingress")
    assert [r["kind"] for r in policy["metadata"]["ownerReferences"] if r.get("controller")] == ["LLMDeployment"]
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchExpressions"][0]["values"] == [namespace]
    cluster.kubectl("-n", namespace, "patch", "llmd", "rag-stack", "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/service"}]')
    eventually(lambda: get(cluster, namespace, "networkpolicy", "rag-stack-ingress") is None, 20,
               what="NetworkPolicy deleted")
    assert forbidden_lines(release.log(), namespace) == []


def _remove_rerank(cluster, namespace):
    cluster.kubectl("-n", namespace, "patch", "llmd", "rag-stack", "--type=json",
                    "-p", '[{"op": "remove", "path": "/spec/rerank"}]')


def test_without_delete_on_deployments_a_removed_role_stays(cluster, release, namespace):
    deploy_rag_stack(cluster, namespace)
    wait_ready(cluster, namespace, "rag-stack", timeout=60)
    with without_verb(cluster, release.fullname, "deployments", "delete"):
        eventually(lambda: not can_i(cluster, release.user, "delete", "deployments.apps", namespace), 10,
                   what="RBAC change in effect")
        _remove_rerank(cluster, namespace)
        denied = (f'cannot delete resource "deployments" in API group "apps" in the namespace "{namespace}"')
        eventually(lambda: denied in release.log(), 30, what=f"403 in the operator log: {denied}")
        assert get(cluster, namespace, "deployment", "rag-stack-rerank") is not None
    # The rule back: the retried reconcile deletes it, so the rule was the only thing missing.
    eventually(lambda: get(cluster, namespace, "deployment", "rag-stack-rerank") is None, 30,
               what="rerank Deployment deleted once the rule is back")


def test_without_update_on_finalizers_owner_references_are_refused(cluster, release, namespace):
    """The plane's API server runs OwnerReferencesPermissionEnforcement (as OpenShift does): children
    carry blockOwnerDeletion, which needs update on llmdeployments/finalizers. Without it, Failed with
    the API server's words; with it back, the retry (on the next change) succeeds."""
    with without_verb(cluster, release.fullname, "llmdeployments/finalizers", "update"):
        eventually(lambda: not can_i(cluster, release.user, "update", "llmdeployments.llmops.dev", namespace,
                                     subresource="finalizers"), 10, what="RBAC change in effect")
        apply(cluster, namespace, example("minimal.yaml"))
        failed = eventually(lambda: (o := get(cluster, namespace, "llmd", "qwen-mini")) and
                            (o.get("status") or {}).get("phase") == "Failed" and o, 30, what="phase Failed")
        message = condition(failed, "Ready")["message"]
        print(f"\nWithout the finalizers rule: {message}")
        assert "blockOwnerDeletion" in message
        assert get(cluster, namespace, "deployment", "qwen-mini-llm") is None
    cluster.kubectl("-n", namespace, "annotate", "llmd", "qwen-mini", "retry=now")  # any change triggers a retry
    wait_ready(cluster, namespace, "qwen-mini", timeout=60)


def test_without_patch_on_status_the_resource_never_gets_ready(cluster, release, namespace):
    with without_verb(cluster, release.fullname, "llmdeployments/status", "patch"):
        eventually(lambda: not can_i(cluster, release.user, "patch", "llmdeployments.llmops.dev", namespace,
                                     subresource="status"), 10, what="RBAC change in effect")
        deploy_rag_stack(cluster, namespace)
        denied = f'cannot patch resource "llmdeployments/status" in API group "llmops.dev" in the namespace "{namespace}"'
        eventually(lambda: denied in release.log(), 30, what=f"403 in the operator log: {denied}")
        # The children were applied (their rules are intact); only the status write failed.
        assert get(cluster, namespace, "deployment", "rag-stack-llm") is not None
        assert not (get(cluster, namespace, "llmd", "rag-stack").get("status") or {}).get("phase")
    wait_ready(cluster, namespace, "rag-stack", timeout=60)


def test_gitops_server_side_diff_is_empty_once_ready(cluster, release, namespace):
    """The operator never writes spec: what Git holds is what the cluster holds (Argo CD, Flux)."""
    manifest = str(REPO / "examples" / "rag-stack.yaml")
    deploy_rag_stack(cluster, namespace)  # its Secret and volume, and the example
    # The file as Git holds it, applied the way Flux and Argo CD (ServerSideApply=true) apply it,
    # before the rollout: everything the operator does afterwards must leave it untouched.
    cluster.kubectl("apply", "--server-side", "-f", manifest, "-n", namespace)
    wait_ready(cluster, namespace, "rag-stack", timeout=60)
    result = cluster.kubectl("diff", "--server-side", "-f", manifest, "-n", namespace, check=False)
    assert result.returncode == 0, f"kubectl diff found a difference:\n{result.stdout}{result.stderr}"


def test_upgrade_with_a_changed_crd_updates_it(cluster, release, tmp_path):
    changed = tmp_path / "llm-operator"
    shutil.copytree(CHART, changed)
    crd_template = changed / "templates" / "crd-llmdeployments.yaml"
    text = crd_template.read_text()
    column = "    - name: Generation\n      type: integer\n      jsonPath: .status.observedGeneration\n      priority: 1\n"
    assert "    additionalPrinterColumns:\n" in text
    crd_template.write_text(text.replace("    additionalPrinterColumns:\n", "    additionalPrinterColumns:\n" + column, 1))

    def columns():
        crd = json.loads(cluster.kubectl("get", "crd", CRD, "-o", "json").stdout)
        return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]

    original = columns()
    try:
        helm(cluster, "upgrade", release.name, str(changed), "-n", release.namespace, "--reuse-values")
        assert columns() == ["Generation", *original]
    finally:
        helm(cluster, "upgrade", release.name, str(CHART), "-n", release.namespace, "--reuse-values")
    assert columns() == original


def test_uninstall_keeps_the_crd_and_the_resources(cluster, release, namespace):
    """Last of the release's tests: it uninstalls the release."""
    deploy_rag_stack(cluster, namespace)
    wait_ready(cluster, namespace, "rag-stack", timeout=60)
    release.operator.stop()  # the operator goes with its release
    helm(cluster, "uninstall", release.name, "-n", release.namespace, "--wait")
    for crd in CRDS:
        assert cluster.kubectl("get", "crd", crd, check=False).returncode == 0, f"helm uninstall deleted {crd}"
    assert get(cluster, namespace, "llmd", "rag-stack")["status"]["phase"] == "Ready"
    assert get(cluster, namespace, "deployment", "rag-stack-llm") is not None
    assert cluster.kubectl("get", "clusterrole", release.fullname, check=False).returncode != 0
    assert get(cluster, release.namespace, "serviceaccount", release.fullname) is None
    assert get(cluster, release.namespace, "deployment", release.fullname) is None
