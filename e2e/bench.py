"""`make bench`: the operator at scale, against the plane's own limit, in one run.

    .venv/bin/python e2e/bench.py [--sizes 100,1000] [--samples 20]

For each N it prints one row of figures measured on the local plane (kwok GPU nodes, enough for N
pods of one GPU each):

- limit: the very objects the operator would make (rendered offline) applied directly with
  `kubectl apply --server-side`, no operator running; seconds until all N pods are Running, and
  until all N Deployments report their pod ready (what an LLMDeployment's Ready waits for too);
- operator: N minimal LLMDeployments applied at once; seconds until all children exist and until
  all N are Ready; the ratio to the limit; the operator's CPU seconds and peak RSS; its API
  requests (reads and writes, from the API server's audit log, by the operator's own identity);
- spec change: with the N present, p50 and p99 seconds from a patch of one resource to its
  Deployment carrying the change (`--samples` resources, one at a time), and the reads the
  operator made per reconcile meanwhile (steady state: none expected from watch caches);
- restart: writes made by a restarted operator that finds the N unchanged (leader-election Lease
  renewals are not counted: they are the election, not reconciling);
- CPU seconds of every plane component during the operator run, to tell the bottleneck;
- the issue's targets against the largest N, with the render time of the RAG stack.

Not a test, and not part of `make test`. It needs the plane (`make cluster-up`) and no other
operator (`make demo-down` first). Each N runs in namespaces of its own, deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes import config as kube_config

sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo
import plane
from operator_process import WRITE_VERBS, OperatorProcess, service_account_kubeconfig
from plane.control_plane import kwok_node_manifest
from plane.processes import read_pids
from workloads import wait_established

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_render import per_call_ms
from llm_operator.api import parse_llmdeployment
from llm_operator.k8s.transport import decode
from llm_operator.render import render

REPO = Path(__file__).resolve().parent.parent
BENCH_NAMESPACE = "llm-operator-bench"
BENCH_SA = "llm-operator"
BENCH_USER = f"system:serviceaccount:{BENCH_NAMESPACE}:{BENCH_SA}"
MINIMAL = {"llm": {"model": {"source": "modelscope://Qwen/Qwen2.5-0.5B-Instruct"}}}
TICK = os.sysconf("SC_CLK_TCK")


class Bench:
    """The plane as the benchmark sees it: kubectl for bulk applies, a client for fast polls."""

    def __init__(self, cfg: plane.Config):
        self.cfg = cfg
        self.kubeconfig = str(cfg.kubeconfig)
        self.state_dir = cfg.state_dir
        api = kube_config.new_client_from_config(config_file=self.kubeconfig)
        self.core, self.apps, self.custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(plane.find_binary("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
                                input=input, capture_output=True, text=True, timeout=1800, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args[:3])} failed: {result.stderr.strip()[:2000]}")
        return result

    @staticmethod
    def items(list_call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """A LIST's items as plain dicts. The client's model classes cost seconds of CPU per LIST of
        1,000 pods: polled every second, the benchmark would load the very machine it measures."""
        return decode(list_call(*args, _preload_content=False, **kwargs).data)["items"]

    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.kubectl("apply", "--server-side", "--field-manager=bench", "-f", "-",
                     input=yaml.safe_dump_all(objects))


def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.5) -> float:
    """Seconds until check() is true (polled); fails after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"{what}: not reached within {timeout:.0f}s")
        time.sleep(interval)
    return time.monotonic() - started


def resources(namespace: str, n: int) -> list[dict[str, Any]]:
    return [{"apiVersion": "llmops.dev/v1alpha1", "kind": "LLMDeployment",
             "metadata": {"name": f"m{i:05d}", "namespace": namespace}, "spec": MINIMAL} for i in range(n)]


def ensure_gpu_nodes(bench: Bench, pods: int) -> None:
    """kwok GPU nodes for `pods` pods of one GPU (the plane starts with cfg.nodes of them)."""
    wanted = -(-pods // bench.cfg.gpus_per_node) + 1
    # Only the missing ones: once a node exists, kube-controller-manager owns some of its fields,
    # and applying it again would conflict.
    present = {n.metadata.name for n in bench.core.list_node(label_selector="type=kwok").items}
    missing = [node for node in (kwok_node_manifest(bench.cfg, i) for i in range(wanted))
               if node["metadata"]["name"] not in present]
    if missing:
        bench.apply(missing)
    wait_for(lambda: sum(1 for n in bench.core.list_node(label_selector="type=kwok").items
                         if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or ()))
             >= wanted, 300, f"{wanted} kwok GPU nodes Ready", interval=1)


def remove_extra_gpu_nodes(bench: Bench) -> None:
    """Back to the plane's own kwok nodes: the plane counts them to judge itself healthy."""
    extra = [f"node/{n.metadata.name}" for n in bench.core.list_node(label_selector="type=kwok").items
             if int(n.metadata.name.rsplit("-", 1)[1]) >= bench.cfg.nodes]
    if extra:
        bench.kubectl("delete", "--wait=false", *extra)


def running_pods(bench: Bench, namespace: str) -> int:
    return len(bench.items(bench.core.list_namespaced_pod, namespace, field_selector="status.phase=Running"))


def fresh_namespace(bench: Bench, name: str) -> None:
    bench.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=600s")
    bench.kubectl("create", "namespace", name)


def drop_namespace(bench: Bench, name: str) -> None:
    bench.kubectl("delete", "namespace", name, "--wait=true", "--timeout=600s", check=False)


def ready_deployments(bench: Bench, namespace: str) -> int:
    return sum(1 for d in bench.items(bench.apps.list_namespaced_deployment, namespace)
               if d.get("status", {}).get("readyReplicas", 0) >= d["spec"].get("replicas", 1))


def measure_limit(bench: Bench, n: int) -> tuple[float, float]:
    """With the rendered objects applied directly, no operator: seconds until all N pods are
    Running (the limit of the issue), and until all N Deployments report their pod ready. The
    second is what an LLMDeployment's Ready waits for too (the Deployment controller's status,
    which lags the pods under load), so it tells the operator's own share of the ratio."""
    namespace = f"bench-direct-{n}"
    fresh_namespace(bench, namespace)
    objects = [obj for llmd in resources(namespace, n) for obj in render(parse_llmdeployment(llmd))]
    started = time.monotonic()
    bench.apply(objects)
    wait_for(lambda: running_pods(bench, namespace) >= n, 1800, f"{n} pods Running (direct)", interval=1)
    running = time.monotonic() - started
    wait_for(lambda: ready_deployments(bench, namespace) >= n, 1800, f"{n} Deployments ready (direct)", interval=1)
    deployments_ready = time.monotonic() - started
    drop_namespace(bench, namespace)
    return running, deployments_ready


class ProcessUsage:
    """CPU seconds (user + system) and peak RSS of a process, read from /proc."""

    @staticmethod
    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    @staticmethod
    def peak_rss_mib(pid: int) -> float:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


def plane_cpu(cfg: plane.Config) -> dict[str, float]:
    usage = {}
    for component, record in read_pids(cfg).items():
        try:
            usage[component] = ProcessUsage.cpu_seconds(int(record["pid"]))
        except (OSError, KeyError, ValueError):
            pass
    return usage


def audit_mark() -> str:
    """Now, as the audit log writes its timestamps (RFC 3339, microseconds, UTC): a mark that stays
    valid when the API server rotates the log (every 500 MB, about once per N = 1,000 run)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def operator_audit_events(bench: Bench, since: str) -> Iterator[dict[str, Any]]:
    """The operator's completed requests received since the mark `since`, from the audit log and
    the backup it was rotated into."""
    for path in sorted(bench.cfg.audit_log.parent.glob(f"{bench.cfg.audit_log.stem}*.log")):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if BENCH_USER not in line:  # most lines are the plane's own: skip them unparsed
                    continue
                event = json.loads(line)
                if (event.get("stage") == "ResponseComplete" and event.get("user", {}).get("username") == BENCH_USER
                        and event.get("requestReceivedTimestamp", "") >= since):
                    yield event


def audit_requests(bench: Bench, since: str) -> tuple[int, int, int, int]:
    """(reads, writes, Lease writes, reconcile reads) the operator made since the mark `since`.
    Reads include WATCH requests; reconcile reads are the GETs and LISTs of anything but the Lease.
    With watch caches those are only a cache's LIST (at start, after a 410) and the GET of a name
    before a child is first created: none at steady state."""
    reads = writes = lease_writes = reconcile_reads = 0
    for event in operator_audit_events(bench, since):
        if event.get("verb") in WRITE_VERBS:
            if event.get("objectRef", {}).get("resource") == "leases":
                lease_writes += 1
            else:
                writes += 1
        else:
            reads += 1
            if event.get("verb") in ("get", "list") and event.get("objectRef", {}).get("resource") != "leases":
                reconcile_reads += 1
    return reads, writes, lease_writes, reconcile_reads


def ready_count(bench: Bench, namespace: str) -> int:
    items = bench.items(bench.custom.list_namespaced_custom_object, "llmops.dev", "v1alpha1", namespace, "llmdeployments")
    return sum(1 for o in items if (o.get("status") or {}).get("phase") == "Ready")


def child_count(bench: Bench, namespace: str) -> int:
    return min(len(bench.items(bench.apps.list_namespaced_deployment, namespace)),
               len(bench.items(bench.core.list_namespaced_service, namespace)))


def spec_change_latencies(bench: Bench, namespace: str, n: int, samples: int) -> list[float]:
    """Seconds from a patch of one resource to its Deployment carrying the change, one at a time."""
    latencies = []
    for k in range(samples):
        name = f"m{(k * 7919) % n:05d}"
        value = str(4096 + k)
        started = time.monotonic()
        bench.custom.patch_namespaced_custom_object("llmops.dev", "v1alpha1", namespace, "llmdeployments", name,
                                                    {"spec": {"llm": {"engine": {"maxModelLen": int(value)}}}})

        def updated(name: str = name, value: str = value) -> bool:
            deployment = bench.apps.read_namespaced_deployment(f"{name}-llm", namespace)
            return value in deployment.spec.template.spec.containers[0].args

        wait_for(updated, 60, f"Deployment {name}-llm updated", interval=0.01)
        latencies.append(time.monotonic() - started)
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def operator_identity(bench: Bench) -> Path:
    bench.kubectl("create", "namespace", BENCH_NAMESPACE, check=False)
    bench.kubectl("-n", BENCH_NAMESPACE, "create", "serviceaccount", BENCH_SA, check=False)
    bench.kubectl("create", "clusterrolebinding", "llm-operator-bench", "--clusterrole=cluster-admin",
                  f"--serviceaccount={BENCH_NAMESPACE}:{BENCH_SA}", check=False)
    return service_account_kubeconfig(bench, BENCH_NAMESPACE, BENCH_SA, bench.cfg.state_dir / "bench.kubeconfig")


def start_operator(kubeconfig: Path, extra_args: tuple[str, ...] = ()) -> OperatorProcess:
    log = plane.Config.from_env().logs_dir / "operator-bench.log"
    # As installed (the chart's settings are the operator's defaults): the tests' one-minute resync
    # added three or four passes over all N to the 1,000-resource run.
    process = OperatorProcess(kubeconfig, log, lease=(BENCH_NAMESPACE, "llm-operator"), resync_seconds=None,
                             extra_args=extra_args)
    process.start(timeout=60)
    return process


def reconciles(process: OperatorProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in process.metrics().splitlines()
               if line.startswith("llmops_reconciles_total{"))


def measure_operator(bench: Bench, kubeconfig: Path, n: int, samples: int,
                     operator_args: tuple[str, ...] = ()) -> dict[str, Any]:
    namespace = f"bench-operator-{n}"
    fresh_namespace(bench, namespace)
    process = start_operator(kubeconfig, operator_args)
    pid = process.process.pid
    cpu_before, plane_before, audit_before = ProcessUsage.cpu_seconds(pid), plane_cpu(bench.cfg), audit_mark()
    started = time.monotonic()
    bench.apply(resources(namespace, n))
    wait_for(lambda: child_count(bench, namespace) >= n, 1800, f"children of {n}", interval=1)
    children = time.monotonic() - started
    wait_for(lambda: ready_count(bench, namespace) >= n, 1800, f"{n} Ready", interval=1)
    ready = time.monotonic() - started
    row: dict[str, Any] = {
        "children": children, "ready": ready,
        "cpu": ProcessUsage.cpu_seconds(pid) - cpu_before, "rss": ProcessUsage.peak_rss_mib(pid),
        "plane_cpu": {k: v - plane_before.get(k, 0.0) for k, v in plane_cpu(bench.cfg).items()},
    }
    row["reads"], row["writes"], _, _ = audit_requests(bench, audit_before)

    # Steady state: the N converged, one spec change at a time; every reconcile of it reads what?
    steady_mark, reconciles_before = audit_mark(), reconciles(process)
    latencies = spec_change_latencies(bench, namespace, n, min(samples, n))
    row["p50"], row["p99"] = statistics.median(latencies), percentile(latencies, 99)
    time.sleep(3)  # the last reconciles' requests reach the audit log
    steady_reconciles = reconciles(process) - reconciles_before
    row["steady_reads"] = audit_requests(bench, steady_mark)[3] / max(steady_reconciles, 1)

    # Restart with every resource unchanged: wait until the new process has reconciled all N.
    wait_for(lambda: ready_count(bench, namespace) >= n, 300, f"{n} Ready after the spec changes", interval=1)
    process.stop()
    restart_mark = audit_mark()
    process = start_operator(kubeconfig, operator_args)
    wait_for(lambda: reconciles(process) >= n, 600, f"{n} reconciles after the restart", interval=0.2)
    # All of the new process: start-up, the LISTs that fill its caches, and a pass over N unchanged
    # resources (the pass is what every resync costs too).
    row["restart_cpu"] = ProcessUsage.cpu_seconds(process.process.pid)
    time.sleep(5)  # let any write decided in the last reconciles reach the audit log
    _, row["restart_writes"], _, _ = audit_requests(bench, restart_mark)
    process.stop()
    drop_namespace(bench, namespace)
    return row


def render_ms(example: str = "rag-stack.yaml") -> float:
    """Median time of one render of an example (tests/bench_render.py prints every example)."""
    raw = yaml.safe_load((REPO / "examples" / example).read_text())
    raw["metadata"].update(namespace="bench", uid="00000000-0000-0000-0000-000000000000")
    llmd = parse_llmdeployment(raw)
    return per_call_ms(lambda: render(llmd), seconds=1.0)


def print_targets(r: dict[str, Any]) -> None:
    """The issue's targets against this run's largest N."""
    figures = [
        (f"time to all Ready / limit, N = {r['n']}", r["ready"] / r["limit"], 1.10, "{:.2f}"),
        ("reads per reconcile at steady state", r["steady_reads"], 0, "{:.2f}"),
        ("operator CPU ms per LLMDeployment converged", 1000 * r["cpu"] / r["n"], 10, "{:.1f}"),
        ("render of the RAG stack, ms", render_ms(), 1, "{:.2f}"),
        (f"writes on restart, N = {r['n']} unchanged", r["restart_writes"], 0, "{}"),
        ("p99 spec change -> Deployment updated, s", r["p99"], 1, "{:.3f}"),
        (f"operator peak RSS MiB, N = {r['n']}", r["rss"], 150, "{:.0f}"),
    ]
    print("| figure | measured | target | met |")
    print("| --- | --- | --- | --- |")
    for name, value, target, form in figures:
        print(f"| {name} | {form.format(value)} | <= {target} | {'yes' if value <= target else 'NO'} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N (default 100,1000)")
    parser.add_argument("--samples", type=int, default=20, help="spec changes timed per N (default 20)")
    parser.add_argument("--operator-args", default="",
                        help="more arguments for `llm-operator run`, to try a setting (e.g. --workers=8)")
    args = parser.parse_args()
    cfg = plane.Config.from_env()
    if not plane.Plane(cfg).healthy():
        print("The plane is not up: run `make cluster-up` first.", file=sys.stderr)
        return 2
    if demo.running(cfg, "operator"):
        print("A demo operator is running and would reconcile the benchmark's resources too: "
              "run `make demo-down` first.", file=sys.stderr)
        return 2
    bench = Bench(cfg)
    bench.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
    for crd in ("llmdeployments.llmops.dev", "llmgateways.llmops.dev", "llmbatches.llmops.dev"):
        wait_established(bench.kubectl, crd)
    kubeconfig = operator_identity(bench)
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    try:
        ensure_gpu_nodes(bench, max(sizes))
        for n in sizes:
            print(f"N={n}: measuring the limit (direct apply)...", flush=True)
            limit, deployments_ready = measure_limit(bench, n)
            print(f"N={n}: limit {limit:.1f}s (Deployments ready {deployments_ready:.1f}s); measuring the operator...",
                  flush=True)
            row = measure_operator(bench, kubeconfig, n, args.samples, tuple(args.operator_args.split()))
            row.update(n=n, limit=limit, deployments_ready=deployments_ready)
            rows.append(row)
            print(f"N={n}: done: {json.dumps({k: v for k, v in row.items() if k != 'plane_cpu'})}", flush=True)
    finally:
        remove_extra_gpu_nodes(bench)

    print()
    print("| N | children exist s | all Ready s | limit s | ratio | direct Deployments ready s | ratio to it "
          "| operator CPU s | CPU ms/resource "
          "| peak RSS MiB | reads | writes | steady reads/reconcile | spec change p50 / p99 s | restart writes "
          "| restart CPU s |")
    print("| --- " * 16 + "|")
    for r in rows:
        print(f"| {r['n']} | {r['children']:.1f} | {r['ready']:.1f} | {r['limit']:.1f} | {r['ready'] / r['limit']:.2f} "
              f"| {r['deployments_ready']:.1f} | {r['ready'] / r['deployments_ready']:.2f} "
              f"| {r['cpu']:.1f} | {1000 * r['cpu'] / r['n']:.1f} | {r['rss']:.0f} | {r['reads']} | {r['writes']} "
              f"| {r['steady_reads']:.2f} | {r['p50']:.3f} / {r['p99']:.3f} | {r['restart_writes']} "
              f"| {r['restart_cpu']:.1f} |")
    print()
    print_targets(max(rows, key=lambda r: r["n"]))
    print()
    print("CPU seconds of each process while the operator converged N resources:")
    for r in rows:
        usage = {"operator": r["cpu"], **r["plane_cpu"]}
        print(f"  N={r['n']}: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(usage.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
