"""The fault suite (`make test-faults`; part of `make test`): the operator killed mid-write, the API
server and etcd restarted, a watch stalled without closing, the operator's user throttled by API
Priority and Fairness, and deletions racing reconciles. Each case checks afterwards, from the API
server's own view, that nothing was lost or doubled (faults.py), and adds a row to the report of
docs/reliability.md (e2e/.cluster/faults-report.json).

Pods run on kwok's GPU nodes: what is under test is the operator's bookkeeping, not serving.
LLMOPS_FAULT_SEED=<n> repeats a run's random kill moments.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from pathlib import Path

import pytest
import yaml

import plane
import serving
from faults import (
    EVENTS_PER_RESOURCE,
    Row,
    StallProxy,
    audit_requests,
    converge,
    convergence_problems,
    occupy,
    operator_events,
    record,
)
from llm_operator.cli import build_parser, render_config
from operator_process import OPERATOR_NAMESPACE, OperatorProcess, audit_lines, eventually
from plane.control_plane import kwok_node_manifest

SPEC = {"llm": {"model": {"source": "modelscope://Qwen/Qwen2.5-0.5B-Instruct"}}}
GPU_NODES = 6  # 48 GPUs: 30 one-GPU pods, and room for rollouts


@pytest.fixture(scope="module")
def gpu_nodes(cluster):
    """More kwok GPU nodes for this module; back to the plane's own afterwards."""
    cfg = cluster.plane.cfg
    present = {n["metadata"]["name"] for n in cluster.plane.kwok_nodes()}
    extra = [node for node in (kwok_node_manifest(cfg, i) for i in range(GPU_NODES)) if node["metadata"]["name"] not in present]
    if extra:
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(extra))
    eventually(lambda: sum(plane.Plane.node_ready(n) for n in cluster.plane.kwok_nodes()) >= GPU_NODES, 60,
               what=f"{GPU_NODES} kwok GPU nodes Ready")
    yield
    if extra:
        cluster.kubectl("delete", "--wait=false", *[f"node/{node['metadata']['name']}" for node in extra])


@pytest.fixture(scope="module")
def config(cluster):
    """What the operators of these tests render: the objects they must converge to."""
    flags = serving.operator_render_flags(cluster.plane.cfg)
    return render_config(build_parser().parse_args(["render", "-f", "-", *flags]))


@pytest.fixture
def start_operator(cluster, crd, operator_kubeconfig, alone, namespace, gpu_nodes, request):
    """start_operator(lease=..., kubeconfig=..., args=...): an operator of this namespace only, its
    Lease in the namespace too (gone with it: a later run starts with none), stopped at the end of
    the test (the others are stopped meanwhile: `alone`)."""
    started: list[OperatorProcess] = []

    def start(lease: str, kubeconfig: Path = operator_kubeconfig, args: tuple[str, ...] = ()) -> OperatorProcess:
        process = OperatorProcess(kubeconfig, Path(cluster.state_dir) / "logs" / f"operator-{request.node.name}.log",
                                  namespaces=(namespace,), lease=(namespace, lease), extra_args=args)
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()


def manifest(name: str, served: str | None = None) -> dict:
    spec = yaml.safe_load(yaml.safe_dump(SPEC))
    if served:
        spec["llm"]["model"]["servedName"] = served
    return {"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}


def apply(cluster, namespace: str, *manifests: dict) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump_all(manifests))


def kill(process: OperatorProcess) -> None:
    """SIGKILL: no cleanup, no Lease released, writes cut wherever they were."""
    process.process.kill()
    process.process.wait()
    OperatorProcess.running.discard(process)


def test_operator_killed_20_times_during_reconciles(cluster, start_operator, namespace, config):
    seed = int(os.environ.get("LLMOPS_FAULT_SEED") or secrets.randbits(32))
    print(f"\nseed {seed} (LLMOPS_FAULT_SEED={seed} repeats these kill moments)")
    rng = random.Random(seed)
    # 30 creates and 10 edits, each edit after its create, applied two by two, one pair per life.
    work: list[tuple[str, int]] = [("create", i) for i in range(30)]
    for i in rng.sample(range(30), 10):
        work.insert(rng.randint(work.index(("create", i)) + 1, len(work)), ("edit", i))
    since = audit_lines(cluster.audit_log)
    unfinished = 0
    for life in range(20):
        apply(cluster, namespace, *[manifest(f"m{i:02d}", served=f"edited-{i}" if op == "edit" else None)
                                    for op, i in work[2 * life:2 * life + 2]])
        # A Lease of its own per life: the dead process's Lease would hold the next one back 15 s,
        # which is the leader election's business, not what this case tests.
        process = start_operator(lease=f"faults-kill-{life}")
        # Children are written within ~0.1 s of the Lease, statuses ~1 s later, as the pods start.
        time.sleep(rng.uniform(0.0, 0.15) if rng.random() < 0.5 else rng.uniform(0.0, 1.5))
        kill(process)
        unfinished += bool(convergence_problems(cluster, namespace, config))
    restarted = time.monotonic()
    start_operator(lease="faults-kill-final")
    converge(cluster, namespace, config, 180, "after 20 kills")
    seconds = time.monotonic() - restarted
    events = operator_events(cluster, namespace)
    requests = audit_requests(cluster.audit_log, since)
    assert events <= EVENTS_PER_RESOURCE * 30, f"{events} Events for 30 LLMDeployments"
    record(Row("operator SIGKILLed during reconciles (30 created, 10 edited)", 20, 0, seconds, requests["writes"], 0,
               f"seed {seed}; {unfinished} of 20 kills left work unfinished; {events} Events"))


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_is_recovered_without_help(cluster, start_operator, namespace, config, component):
    process = start_operator(lease=f"faults-{component}")
    apply(cluster, namespace, *[manifest(f"r{i}") for i in range(6)])
    converge(cluster, namespace, config, 120, "before the restart")
    pid, since = process.process.pid, audit_lines(cluster.audit_log)
    down = cluster.plane.restart(component, down_seconds=5)
    # Changes the moment it serves again, before the operator's watches and Lease have recovered.
    changed = time.monotonic()
    apply(cluster, namespace, *[manifest(f"r{i}", served=f"after-{component}-{i}") for i in range(3)], manifest("r6"))
    cluster.kubectl("-n", namespace, "delete", "llmd", "r5", "--wait=false")
    written = converge(cluster, namespace, config, 180, f"the operator's work after the {component} restart", ready=False)
    converge(cluster, namespace, config, 300, f"pods Ready after the {component} restart")
    seconds = time.monotonic() - changed
    assert process.process.poll() is None and process.process.pid == pid, "the operator had to restart"
    requests = audit_requests(cluster.audit_log, since)
    record(Row(f"{component} restarted ({down:.0f} s without it), 3 edits, 1 create, 1 delete on its return",
               1, 0, written, requests["writes"], 0,
               f"no operator restart; every LLMDeployment Ready after {seconds:.1f} s (the plane's scheduler, kwok "
               "and garbage collector recovering from the restart too)"))


def test_a_stalled_watch_is_reopened(cluster, start_operator, namespace, config, operator_kubeconfig):
    stall_seconds = 20
    proxy = StallProxy(cluster.plane.cfg.apiserver_port)
    try:
        kubeconfig = proxy.kubeconfig(operator_kubeconfig, Path(cluster.state_dir) / "operator-stall.kubeconfig")
        process = start_operator(lease="faults-stall", kubeconfig=kubeconfig,
                                 args=(f"--watch-stall-seconds={stall_seconds}",))
        apply(cluster, namespace, *[manifest(f"s{i}") for i in range(3)])
        converge(cluster, namespace, config, 120, "before the stall")
        since = audit_lines(cluster.audit_log)
        frozen = proxy.stall()
        changed = time.monotonic()
        apply(cluster, namespace, manifest("s0", served="during-the-stall"))  # straight to the API server
        converge(cluster, namespace, config, stall_seconds + 60, "after the stall")
        seconds = time.monotonic() - changed
        assert "Reopened the watch of LLMDeployment" in process.log_tail(400)
        assert seconds <= stall_seconds + 30, f"the change took {seconds:.0f}s to reach its Deployment"
        requests = audit_requests(cluster.audit_log, since)
        record(Row(f"every connection stalled without closing ({frozen} open), 1 edit during the stall", 1, 0, seconds,
                   requests["writes"], 0, f"--watch-stall-seconds={stall_seconds} (default 90)"))
    finally:
        proxy.close()


SQUEEZE = """\
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: PriorityLevelConfiguration
metadata: {name: faults-squeeze}
spec:
  type: Limited
  limited:
    nominalConcurrencyShares: 0
    lendablePercent: 0
    borrowingLimitPercent: 0
    limitResponse: {type: Reject}
---
apiVersion: flowcontrol.apiserver.k8s.io/v1
kind: FlowSchema
metadata: {name: faults-squeeze}
spec:
  priorityLevelConfiguration: {name: faults-squeeze}
  matchingPrecedence: 500
  distinguisherMethod: {type: ByUser}
  rules:
  - subjects:
    - kind: ServiceAccount
      serviceAccount: {name: llm-operator, namespace: NAMESPACE}
    resourceRules:
    - {verbs: ["*"], apiGroups: ["*"], resources: ["*"], namespaces: ["*"], clusterScope: true}
    nonResourceRules:
    - {verbs: ["*"], nonResourceURLs: ["*"]}
""".replace("NAMESPACE", OPERATOR_NAMESPACE)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_throttled_operator_backs_off_and_converges_when_the_pressure_ends(cluster, start_operator, namespace, config,
                                                                           operator_kubeconfig):
    """The operator's user gets a priority level of its own at APF's minimum (no shares, nothing
    borrowed, Reject: about one request at a time), and the test keeps that level busy with requests
    of the same user, so that most of the operator's requests get 429."""
    pressure_seconds = 45
    process = start_operator(lease="faults-squeeze")
    apply(cluster, namespace, *[manifest(f"t{i}") for i in range(3)])
    converge(cluster, namespace, config, 120, "before the pressure")
    try:
        cluster.kubectl("apply", "-f", "-", input=SQUEEZE)
        time.sleep(2)  # the API server applies a FlowSchema within a second or so
        since, cpu = audit_lines(cluster.audit_log), _cpu_seconds(process.process.pid)
        apply(cluster, namespace, *[manifest(f"t{i}", served=f"squeezed-{i}") for i in range(3)],
              *[manifest(f"t{i}") for i in range(3, 8)])
        load = occupy(cluster.server, operator_kubeconfig, f"/api/v1/namespaces/{namespace}/pods", pressure_seconds)
        requests = audit_requests(cluster.audit_log, since)
        cpu = _cpu_seconds(process.process.pid) - cpu
        assert requests.get("http 429", 0) > 0, f"the squeeze refused nothing: {requests}"
    finally:
        cluster.kubectl("delete", "--ignore-not-found", "flowschema/faults-squeeze",
                        "prioritylevelconfiguration/faults-squeeze")
    rate = (requests["reads"] + requests["writes"]) / pressure_seconds
    assert rate <= 5, f"{rate:.1f} requests/s under pressure: a hot loop ({requests})"
    assert cpu / pressure_seconds <= 0.2, f"{cpu:.1f} CPU seconds in {pressure_seconds}s under pressure"
    ended = time.monotonic()
    converge(cluster, namespace, config, 180, "after the pressure")
    assert load.get(429, 0) > 0, f"the squeeze refused nothing: {load}"
    record(Row(f"the operator's user squeezed by APF (one seat, Reject, kept busy) for {pressure_seconds} s, 3 edits "
               "and 5 creates meanwhile", 1, 0, time.monotonic() - ended, audit_requests(cluster.audit_log, since)["writes"], 0,
               f"{rate:.2f} requests/s and {cpu / pressure_seconds * 100:.1f}% of a core under pressure; "
               f"{requests.get('http 429', 0)} of {requests['reads'] + requests['writes']} requests refused"))


def test_deletes_racing_reconciles_leave_nothing_behind(cluster, start_operator, namespace, config):
    start_operator(lease="faults-delete")
    since = audit_lines(cluster.audit_log)
    started = time.monotonic()
    # An LLMDeployment deleted while its first reconcile is creating its children, ten times.
    for i in range(10):
        apply(cluster, namespace, manifest(f"gone{i}"))
        time.sleep(0.05 * i)
        cluster.kubectl("-n", namespace, "delete", "llmd", f"gone{i}", "--wait=false")
    # A child deleted while its owner's edit is being reconciled.
    apply(cluster, namespace, manifest("kept"))
    converge(cluster, namespace, config, 120, "kept, before its edit")
    apply(cluster, namespace, manifest("kept", served="edited"))
    cluster.kubectl("-n", namespace, "delete", "service", "kept-llm", "--wait=false")

    def nothing_left() -> bool:
        left = cluster.kubectl("-n", namespace, "get", "deployments,services,networkpolicies,pods", "-o", "name",
                               "-l", "llmops.dev/deployment in (" + ",".join(f"gone{i}" for i in range(10)) + ")").stdout
        return not left.strip()
    eventually(nothing_left, 120, interval=1, what="no child of a deleted LLMDeployment")
    converge(cluster, namespace, config, 120, "kept, after its edit and the Service deleted")
    record(Row("10 LLMDeployments deleted during their first reconcile; a Service deleted during its owner's edit",
               11, 0, time.monotonic() - started, audit_requests(cluster.audit_log, since)["writes"], 0,
               "children of deleted owners garbage-collected; the Service came back"))
