"""Fixtures for the end-to-end tests: a real control plane (e2e/plane/), once per run.

    cluster    session: starts the plane unless it is already up, stops it at the end only
               if this session started it. Attributes: plane, kubeconfig, audit_log, server,
               state_dir, env (os.environ with KUBECONFIG set), real_node_problem (why the
               plane runs without its real node, or None); methods kubectl(*args, check=True,
               input=None, timeout=120), bin(name), logs_tail(lines).
    autoscaling  module: the Plane when it runs Prometheus and KEDA; skips outside CI when it
               does not (LLMOPS_AUTOSCALING=0), fails with CI=true.
    cpu_image, gateway_image  module: the CPU runtime and gateway images, built (or found in
               their cache) and imported into the real node's containerd; their names.
    real_node  the Plane, for tests whose containers must really run (on node
               plane.node_name, with plane.REAL_NODE_SELECTOR / REAL_NODE_TOLERATIONS); skips
               outside CI when the real node cannot run here (not root, packages missing,
               LLMOPS_REAL_NODE=0), fails with CI=true.
    namespace  function: a fresh namespace (its default ServiceAccount exists), deleted after.
    measured   session: measured(line) adds a line to the "measured" section pytest prints at
               the end of the run, where CI's log shows it (a passing test's output is not).

A failing test that used `namespace` gets the namespace's events, the YAML of its objects
and the tail of every component's log appended to its report.

Outside CI, missing binaries skip these tests with the way to build them; with CI=true a
missing binary or a plane that does not start fails them, so CI never passes by skipping.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import demo
import plane  # e2e/ and the repository root are on pytest's pythonpath (pyproject.toml)
import serving
from operator_process import OPERATOR_NAMESPACE, REPO, OperatorProcess, service_account_kubeconfig
from tests.hubs import HFHub, ModelScopeHub, TinyModel
from workloads import wait_established

SKIP_MESSAGE = "control plane binaries not built: run `make cluster-tools` (or `make test`) to enable the e2e tests"


class KubectlError(subprocess.CalledProcessError):
    """CalledProcessError whose message carries kubectl's stderr, so test output shows why."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class Cluster:
    def __init__(self, p: plane.Plane, real_node_problem: str | None = None):
        self.plane = p
        self.real_node_problem = real_node_problem
        self.state_dir: Path = p.cfg.state_dir
        self.kubeconfig: Path = p.cfg.kubeconfig
        self.audit_log: Path = p.cfg.audit_log
        self.server: str = p.cfg.server
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def bin(self, name: str) -> Path:
        """Path of a cached binary: helm, kubectl, ... (see plane.BINARIES)."""
        return plane.find_binary(name)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [str(self.bin("kubectl")), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def logs_tail(self, lines: int = 40) -> str:
        """The last lines of every log in the plane's log dir (components, and e.g. the operator)."""
        logs = sorted(self.plane.cfg.logs_dir.glob("*.log"))
        return "\n".join(f"--- {log}\n{plane.tail(log, lines)}" for log in logs)


def _in_ci() -> bool:
    return os.environ.get("CI") == "true"


@pytest.fixture(scope="session")
def cluster():
    missing = plane.missing_binaries()
    if missing:
        if _in_ci():
            pytest.fail(f"CI=true and control plane binaries are missing ({', '.join(missing)}): "
                        "run `make cluster-tools` before the tests", pytrace=False)
        pytest.skip(SKIP_MESSAGE)
    cfg, problem = plane.Config.from_env(), None
    if not cfg.real_node:
        problem = "LLMOPS_REAL_NODE=0 starts the plane without its real node"
    else:
        problems = plane.RealNode(cfg).problems()
        if problems:
            # The kwok tests can still run; the real-node tests report this (and fail in CI).
            problem = "the real node cannot run here: " + "; ".join(problems)
            cfg = dataclasses.replace(cfg, real_node=False)
    p = plane.Plane(cfg)
    started = p.up()  # raises PlaneError (an error, never a skip) when it cannot start
    try:
        yield Cluster(p, problem)
    finally:
        if started:
            p.down(quiet=True)


@dataclass
class PodHubs:
    """The local ModelScope and Hugging Face hubs that init containers in pods download from."""

    host: str
    modelscope: ModelScopeHub
    hf: HFHub


@pytest.fixture(scope="session")
def pod_hubs(cluster):
    """Both hubs on the real node's address (pods reach the host there; loopback when the plane runs
    without a real node), on the ports `make demo` uses. They serve nothing until a test adds
    repositories to `.repos`. A running demo's hub is stood in for meanwhile: these serve its
    models too, and it is started again afterwards."""
    cfg = cluster.plane.cfg
    host = serving.pod_hub_host(cfg)
    demo_was_serving = demo.running(cfg, "hub")
    if demo_was_serving:
        demo.stop(cfg, "hub")
    hubs = PodHubs(host, ModelScopeHub(host=host, port=serving.HUB_PORTS["modelscope"]).start(),
                   HFHub(host=host, port=serving.HUB_PORTS["hf"]).start())
    if demo_was_serving:
        hubs.modelscope.repos.update({repo: {"master": TinyModel.from_directory(directory)}
                                      for repo, directory in demo.demo_repos().items()})
    yield hubs
    hubs.modelscope.stop()
    hubs.hf.stop()
    if demo_was_serving:
        demo.start_hub(cfg, demo.demo_repos())


@pytest.fixture(scope="session")
def crd(cluster):
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    for crd in ("llmdeployments.llmops.dev", "llmgateways.llmops.dev", "llmbatches.llmops.dev"):
        wait_established(cluster.kubectl, crd)


@pytest.fixture(scope="session")
def operator_kubeconfig(cluster):
    """A ServiceAccount of its own (cluster-admin here; the chart tests prove the real RBAC)."""
    cluster.kubectl("create", "namespace", OPERATOR_NAMESPACE, check=False)
    cluster.kubectl("-n", OPERATOR_NAMESPACE, "create", "serviceaccount", "llm-operator", check=False)
    cluster.kubectl("create", "clusterrolebinding", "llm-operator-e2e", "--clusterrole=cluster-admin",
                    f"--serviceaccount={OPERATOR_NAMESPACE}:llm-operator", check=False)
    return service_account_kubeconfig(cluster, OPERATOR_NAMESPACE, "llm-operator",
                                      Path(cluster.state_dir) / "operator-e2e.kubeconfig")


@pytest.fixture(scope="session")
def operator(cluster, crd, operator_kubeconfig, pod_hubs):
    """The operator over every namespace, its init containers pointed at the local hubs (pod_hubs),
    reading pods' logs as the chart's operator.readPodLogs allows (batch progress, compile results)."""
    process = OperatorProcess(operator_kubeconfig, Path(cluster.state_dir) / "logs" / "operator.log",
                              extra_args=("--read-pod-logs",))
    process.start()
    yield process
    process.stop()


@pytest.fixture
def alone(cluster):
    """For one test: no operator runs but the ones it starts (see no_other_operator)."""
    with demo.no_other_operator(cluster):
        yield


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> plane.Plane:
    if cluster.real_node_problem:
        if _in_ci():
            pytest.fail(f"CI=true and {cluster.real_node_problem}", pytrace=False)
        pytest.skip(f"{cluster.real_node_problem}; run the tests as root after `make cluster-tools` "
                    "to enable the real-node tests")
    return cluster.plane


@pytest.fixture(scope="module")
def autoscaling(cluster: Cluster) -> plane.Plane:
    if not cluster.plane.cfg.autoscaling:
        problem = "LLMOPS_AUTOSCALING=0 starts the plane without Prometheus and KEDA"
        if _in_ci():
            pytest.fail(f"CI=true and {problem}", pytrace=False)
        pytest.skip(f"{problem}; unset it (after `make cluster-tools`) to enable the autoscaling tests")
    return cluster.plane


@pytest.fixture(scope="module")
def cpu_image(cluster: Cluster) -> str:
    started = time.monotonic()
    name, archive = serving.cpu_runtime_image()
    built = time.monotonic()
    imported = plane.import_image(cluster.plane.cfg, archive, name)
    print(f"\nCPU runtime image {name}: build/check {built - started:.1f}s, "
          f"{'import' if imported else 'already imported, check'} {time.monotonic() - built:.1f}s")
    return name


@pytest.fixture(scope="module")
def gateway_image(cluster: Cluster) -> str:
    name, archive = serving.gateway_image()
    cluster.plane.import_image(archive, name)
    return name


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")
    return f"e2e-{base[:45].strip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest):
    name = _namespace_name(request.node.nodeid)
    cluster.kubectl("create", "namespace", name)
    # Pods (and so Deployments) cannot be created before the default ServiceAccount exists.
    deadline = time.monotonic() + 30
    while cluster.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"ServiceAccount default never appeared in namespace {name}")
        time.sleep(0.2)
    yield name
    # No waiting for the namespace controller: the next test uses a namespace of its own.
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def _dump(cluster: Cluster, ns: str) -> str:
    parts = []
    events = cluster.kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", check=False)
    parts.append(f"=== Events in {ns}\n{events.stdout}{events.stderr}")
    kinds = cluster.kubectl("api-resources", "--verbs=list", "--namespaced", "-o", "name", check=False)
    names = [k for k in kinds.stdout.split() if k not in ("events", "events.events.k8s.io")]
    if names:
        objs = cluster.kubectl("-n", ns, "get", ",".join(names), "-o", "yaml", "--ignore-not-found",
                               check=False)
        parts.append(f"=== Objects in {ns}\n{objs.stdout}{objs.stderr}")
    parts.append(f"=== Component logs\n{cluster.logs_tail()}")
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or report.when not in ("call", "setup"):
        return
    funcargs = getattr(item, "funcargs", {})
    cluster, ns = funcargs.get("cluster"), funcargs.get("namespace")
    if isinstance(cluster, Cluster) and isinstance(ns, str):
        try:
            report.sections.append(("Cluster state", _dump(cluster, ns)))
        except Exception as err:  # noqa: BLE001 - the dump must never hide the test's own failure
            report.sections.append(("Cluster state", f"Could not dump the cluster state: {err!r}"))


MEASURED = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def measured(request: pytest.FixtureRequest):
    return request.config.stash.setdefault(MEASURED, []).append


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if lines := config.stash.get(MEASURED, []):
        terminalreporter.section("measured")
        for line in lines:
            terminalreporter.write_line(line)
