"""The Plane: start, check and stop the control plane and the real node as one."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import autoscaling, images
from .autoscaling import AUTOSCALING
from .binaries import binary_path
from .config import GPU_RESOURCE, KWOK_NODE_ANNOTATION, Config
from .control_plane import ARGV, AUDIT_POLICY, CONTROL_PLANE, kwok_node_manifest, orphan_markers
from .errors import PlaneError
from .node import NODE_COMPONENTS, RealNode
from .pki import ensure_pki, pki_complete, write_kubeconfigs
from .processes import (
    Api,
    cmdline,
    entry_alive,
    find_by_argument,
    get_ok,
    insecure_ctx,
    port_busy,
    read_pids,
    spawn,
    stop_pids,
    tail,
    wait_until,
    write_pids,
)

APISERVER_FORWARD = Path(__file__).with_name("apiserver_forward.py")
FORWARD_NAME = APISERVER_FORWARD.name


def _forward_argv(cfg: Config) -> list[str]:
    # The interpreter first, as the process's own command line shows it (is_ours compares argv[0]).
    return [sys.executable, str(APISERVER_FORWARD), f"{cfg.node_ip}:{cfg.apiserver_port}",
            f"127.0.0.1:{cfg.apiserver_port}", f"--plane={cfg.state_dir}"]


def _markers(cfg: Config) -> dict[str, str]:
    """Command line markers of every host process of the plane but the real node's (see node.py)."""
    return {**orphan_markers(cfg), **autoscaling.orphan_markers(cfg)}


def _forwarders(cfg: Config) -> list[tuple[str, dict[str, Any]]]:
    """PID file entries of this plane's relays still running, found by their command line (whatever
    the PID file says: it may be lost, and a leftover relay would hold the node address's port)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            argv = cmdline(int(proc.name))
            if str(APISERVER_FORWARD) in argv and f"--plane={cfg.state_dir}" in argv:
                found.append((FORWARD_NAME, {"pid": int(proc.name), "exe": argv[0]}))
    return found


def _kubernetes_endpoints(cfg: Config) -> dict[str, Any]:
    """The `kubernetes` Service's endpoint: the relay on the node's address (apiserver_forward.py).
    The API server writes none itself here (--endpoint-reconciler-type=none: it listens on loopback)."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "kubernetes-plane", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "kubernetes",
                                    "endpointslice.kubernetes.io/managed-by": "plane.llmops.dev"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [cfg.node_ip], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": cfg.apiserver_port, "protocol": "TCP"}]}


class Plane:
    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg or Config.from_env()
        self.api = None  # type: Api | None
        self.node = RealNode(self.cfg)

    # -- public facts ----------------------------------------------------------------------

    @property
    def components(self) -> tuple[str, ...]:
        return (CONTROL_PLANE + (AUTOSCALING if self.cfg.autoscaling else ())
                + (NODE_COMPONENTS if self.cfg.real_node else ()))

    @property
    def node_name(self) -> str:
        """Name of the real node (where containers really run)."""
        return self.cfg.node_name

    @property
    def node_ip(self) -> str:
        """The real node's InternalIP; pods reach host-side servers that listen on it."""
        return self.cfg.node_ip

    @property
    def service_cidr(self) -> str:
        return self.cfg.service_cidr

    @property
    def prometheus_url(self) -> str:
        """http://127.0.0.1:<port> of the plane's Prometheus. Set even when LLMOPS_AUTOSCALING=0 leaves
        Prometheus out: check cfg.autoscaling."""
        return self.cfg.prometheus_url

    def import_image(self, archive: Path, name: str) -> bool:
        """Import an OCI image archive into the real node's containerd as `name`.

        A no-op (milliseconds) when containerd already holds `name` at the archive's digest; returns
        True when it imported. Pods then use `image: <name>` with imagePullPolicy IfNotPresent or
        Never (nothing can be pulled). Images survive `down`/`up`.
        """
        if not self.cfg.real_node:
            raise PlaneError("The plane runs without its real node (LLMOPS_REAL_NODE=0): nowhere to import to")
        if not self.node.containerd_ready():
            raise PlaneError("The real node's containerd is not running: start the plane (`make cluster-up`)")
        return images.import_image(self.cfg, Path(archive), name)

    def image_digest(self, name: str) -> str | None:
        """The digest the real node's containerd holds for image `name`, or None."""
        return images.image_digest(self.cfg, name)

    # -- queries ---------------------------------------------------------------------------

    def _api(self) -> Api:
        if self.api is None:
            self.api = Api(self.cfg)
        return self.api

    def processes_alive(self) -> dict[str, bool]:
        pids = read_pids(self.cfg)
        return {n: entry_alive(pids.get(n)) for n in self.components}

    def apiserver_ready(self) -> bool:
        if not pki_complete(self.cfg):
            return False
        try:
            status, _ = self._api().request("GET", "/readyz", timeout=2)
        except OSError:
            return False
        return status == 200

    def nodes(self) -> list[dict[str, Any]]:
        status, body = self._api().request("GET", "/api/v1/nodes")
        return body["items"] if status == 200 else []

    def kwok_nodes(self) -> list[dict[str, Any]]:
        key, value = KWOK_NODE_ANNOTATION
        return [n for n in self.nodes() if n["metadata"].get("annotations", {}).get(key) == value]

    def real_node(self) -> dict[str, Any] | None:
        status, body = self._api().request("GET", f"/api/v1/nodes/{self.cfg.node_name}")
        return body if status == 200 else None

    @staticmethod
    def node_ready(node: dict[str, Any] | None) -> bool:
        conds = (node or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def _kwok_nodes_ready(self) -> bool:
        nodes = self.kwok_nodes()
        return len(nodes) == self.cfg.nodes and all(map(self.node_ready, nodes))

    def autoscaling_ready(self) -> bool:
        """Prometheus answers /-/ready and the external metrics APIService is Available."""
        return autoscaling.prometheus_ready(self.cfg) and autoscaling.apiservice_available(self._api())

    def healthy(self) -> bool:
        if not all(self.processes_alive().values()) or not self.apiserver_ready():
            return False
        if not self._kwok_nodes_ready():
            return False
        if self.cfg.autoscaling and not self.autoscaling_ready():
            return False
        if self.cfg.real_node:
            return self.node_ready(self.real_node()) and self.node.kube_proxy_healthy()
        return True

    # -- up ----------------------------------------------------------------------------------

    def up(self) -> bool:
        """Start the plane. Returns False when it was already up (nothing done)."""
        cfg = self.cfg
        if self.healthy():
            return False
        if read_pids(cfg) or self.node.leftovers() or find_by_argument(_markers(cfg)):
            # Left over from a crash or a half-failed start: clear it before starting anew.
            self.down(quiet=True)
        missing = [n for n in self.components if n != "containerd" and not os.access(binary_path(n), os.X_OK)]
        if missing:
            raise PlaneError(f"Missing binaries: {', '.join(missing)}: run `make cluster-tools`")
        if cfg.real_node:
            problems = self.node.problems()
            if problems:
                raise PlaneError("The real node cannot start: " + "; ".join(problems)
                                 + ". (LLMOPS_REAL_NODE=0 starts the plane without it.)")
        ports = {"etcd": cfg.etcd_port, "etcd peer": cfg.etcd_peer_port, "kube-apiserver": cfg.apiserver_port,
                 "kube-controller-manager": cfg.controller_manager_port,
                 "kube-scheduler": cfg.scheduler_port, "kwok": cfg.kwok_port}
        if cfg.autoscaling:
            ports.update(autoscaling.ports(cfg))
        if cfg.real_node:
            ports.update({"kubelet healthz": cfg.kubelet_healthz_port,
                          "kube-proxy healthz": cfg.kube_proxy_healthz_port,
                          "kube-proxy metrics": cfg.kube_proxy_metrics_port})
        busy = [f"{n} port {p}" for n, p in ports.items() if port_busy(p)]
        if busy:
            raise PlaneError(f"Ports in use on 127.0.0.1: {', '.join(busy)}; stop what holds them or set "
                             "LLMOPS_*_PORT (see e2e/plane/config.py Config.from_env)")

        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_pki(cfg)
        # A fresh etcd, audit log and component logs each time: runs stay independent.
        for stale in (cfg.state_dir / "etcd-data", cfg.prometheus_data, cfg.logs_dir):
            shutil.rmtree(stale, ignore_errors=True)
        for f in cfg.state_dir.glob("audit*.log"):
            f.unlink()
        cfg.logs_dir.mkdir(parents=True)
        write_kubeconfigs(cfg)
        (cfg.state_dir / "audit-policy.yaml").write_text(AUDIT_POLICY)

        pids: dict[str, dict[str, Any]] = {}

        def start(name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
            pids[name] = spawn(cfg, name, argv, env)
            write_pids(cfg, pids)

        try:
            if cfg.real_node:
                # containerd needs nothing of the control plane: it starts alongside etcd.
                self.node.setup_host()
                _, sandbox_image = images.pause_image()
                self.node.write_configs(sandbox_image)
                self.node.prepare_volumes()
                start("containerd", self.node.containerd_argv())
            start("etcd", ARGV["etcd"](cfg))
            self._wait("etcd", lambda: get_ok(f"http://127.0.0.1:{cfg.etcd_port}/health"), 30)
            start("kube-apiserver", ARGV["kube-apiserver"](cfg))
            self._wait("kube-apiserver", self.apiserver_ready, 60)
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                start(name, ARGV[name](cfg))
            if cfg.autoscaling:
                # Needs only the API server: started now, it is ready by the time the nodes are.
                self._start_autoscaling(start)
            if cfg.real_node:
                self._wait("containerd", self.node.containerd_ready, 30)
                self.node.remove_stale_pods()
                self.node.ensure_sandbox_image()
                start("kubelet", self.node.kubelet_argv())
                start("kube-proxy", self.node.kube_proxy_argv())
                start(FORWARD_NAME, _forward_argv(cfg))

            api = self._api()
            for i in range(cfg.nodes):
                api.create("/api/v1/nodes", kwok_node_manifest(cfg, i))
            if cfg.real_node:
                for path, obj in self.node.storage_objects():
                    api.create(path, obj)
                api.create("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", _kubernetes_endpoints(cfg))

            insecure = insecure_ctx()
            self._wait("kube-controller-manager", lambda: get_ok(
                f"https://127.0.0.1:{cfg.controller_manager_port}/healthz", insecure), 60)
            self._wait("kube-scheduler", lambda: get_ok(
                f"https://127.0.0.1:{cfg.scheduler_port}/healthz", insecure), 60)
            self._wait("kwok", lambda: get_ok(f"http://127.0.0.1:{cfg.kwok_port}/healthz"), 60)
            self._wait("kwok nodes Ready", self._kwok_nodes_ready, 60)
            if cfg.real_node:
                self._wait(f"node {cfg.node_name} Ready", lambda: self.node_ready(self.real_node()), 90)
                self._wait("kube-proxy", lambda: self.node.kube_proxy_healthy() and self.node.kube_proxy_synced(), 60)
                # kube-proxy prepends its own FORWARD jumps at its first sync (only then, unless the
                # rules are flushed): the plane's chain goes first after that.
                self.node.ensure_forward_first()
            if cfg.autoscaling:
                self._finish_autoscaling()
            # Pods can only be created once the namespace's default ServiceAccount exists:
            # waiting here keeps the first test from racing the service-account controller.
            self._wait("default ServiceAccount", lambda: self._api().request(
                "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200, 60)
        except BaseException:
            self.down(quiet=True)
            raise
        return True

    def _start_autoscaling(self, start: Callable[..., None]) -> None:
        """Prometheus, KEDA's RBAC, CRDs and Service, then KEDA's operator and adapter (autoscaling.py)."""
        cfg, api = self.cfg, self._api()
        autoscaling.write_files(cfg)
        start("prometheus", autoscaling.prometheus_argv(cfg))
        for path, obj in autoscaling.api_objects(cfg):
            api.create(path, obj)
        autoscaling.apply_crds(cfg)
        # The operator exits when a kind it watches is not served yet.
        self._wait("KEDA CRDs Established", lambda: autoscaling.crds_established(api), 30)
        # Not waiting for the operator: the adapter's gRPC client retries until the operator listens
        # (a "connection refused" warning or two in its log is expected).
        for name in ("keda-operator", "keda-adapter"):
            start(name, autoscaling.ARGV[name](cfg), autoscaling.ENV[name](cfg))

    def _finish_autoscaling(self) -> None:
        """Register the external metrics API once the adapter serves it (so the aggregator's first
        availability check finds it serving instead of waiting for a retry), then wait until the
        APIService is Available and Prometheus is ready."""
        cfg, api = self.cfg, self._api()
        self._wait("keda-adapter serving", lambda: autoscaling.adapter_serving(cfg), 60)
        api.create(*autoscaling.apiservice(cfg))
        self._wait(f"APIService {autoscaling.APISERVICE} Available",
                   lambda: autoscaling.apiservice_available(api), 60)
        self._wait("Prometheus ready", lambda: autoscaling.prometheus_ready(cfg), 60)

    def _wait(self, what: str, ready: Callable[[], Any], timeout: float) -> None:
        def check() -> None:
            # A component that exited will never become ready: fail at once, with its log.
            pids = read_pids(self.cfg)
            for name in pids:
                if not entry_alive(pids[name]):
                    raise PlaneError(f"{name} exited during start-up; last lines of {self.cfg.log(name)}:\n"
                                     + tail(self.cfg.log(name), 30))

        wait_until(what, ready, timeout, check=check, logs_hint=f"; logs are in {self.cfg.logs_dir}")

    # -- restart one component (the fault tests) -----------------------------------------------

    def restart(self, name: str, down_seconds: float = 0.0, timeout: float = 60.0) -> float:
        """Stop one control plane component (SIGTERM, as a rolling upgrade does), keep it down for
        `down_seconds`, start it again with its data (etcd keeps its data dir) and wait until it
        serves. Returns the seconds it was not serving."""
        if name not in ("etcd", "kube-apiserver"):
            raise PlaneError(f"restart supports etcd and kube-apiserver, not {name}")
        pids = read_pids(self.cfg)
        started = time.monotonic()
        stop_pids([(name, pids[name])], grace=5.0)  # the API server waits for its in-flight requests
        time.sleep(down_seconds)
        pids[name] = spawn(self.cfg, name, ARGV[name](self.cfg))
        write_pids(self.cfg, pids)
        etcd_health = f"http://127.0.0.1:{self.cfg.etcd_port}/health"
        self._wait(f"{name} after its restart", lambda: get_ok(etcd_health) and self.apiserver_ready(), timeout)
        return time.monotonic() - started

    # -- down --------------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> list[str]:
        """Stop every process of the plane and undo what the real node did on the host."""
        cfg = self.cfg
        pids = read_pids(cfg)
        stopped: list[str] = []
        stopped += stop_pids(_forwarders(cfg))
        if self.node.leftovers() or any(n in pids for n in NODE_COMPONENTS):
            if os.geteuid() != 0:
                raise PlaneError("The real node's leftovers can only be removed by root: run `make cluster-down` "
                                 "as root")
            cfg.logs_dir.mkdir(parents=True, exist_ok=True)
            stopped += self.node.teardown(pids, lambda: spawn(cfg, "containerd", self.node.containerd_argv()))
        # The PID file, plus the plane's processes it does not list (lost, or written too late).
        # Reverse start order: the API server's clients (KEDA, Prometheus, kwok, ...) go first.
        hosted = CONTROL_PLANE + AUTOSCALING
        known = {n: e for n, e in pids.items() if n in hosted and entry_alive(e)}
        known = {**find_by_argument(_markers(cfg)), **known}
        entries = [(n, known[n]) for n in reversed(hosted) if n in known]
        # Everything but etcd first, so the API server does not spin on a vanished etcd.
        stopped += stop_pids([e for e in entries if e[0] != "etcd"])
        stopped += stop_pids([e for e in entries if e[0] == "etcd"])
        cfg.pids_file.unlink(missing_ok=True)
        if not quiet:
            print(f"Stopped {', '.join(stopped)}" if stopped else "The control plane was not running")
        return stopped

    # -- status ------------------------------------------------------------------------------

    def status(self) -> int:
        pids = read_pids(self.cfg)
        alive = self.processes_alive()
        for name in self.components:
            pid = pids.get(name, {}).get("pid", "-")
            print(f"{name:24} pid {pid!s:>8}  {'running' if alive[name] else 'stopped'}")
        if not self.apiserver_ready():
            print("API server: not ready")
            return 1
        print(f"API server: ready at {self.cfg.server}")
        for n in self.kwok_nodes():
            gpus = n.get("status", {}).get("allocatable", {}).get(GPU_RESOURCE, "0")
            print(f"Node {n['metadata']['name']}: {'Ready' if self.node_ready(n) else 'NotReady'}, "
                  f"{gpus} {GPU_RESOURCE} allocatable")
        if self.cfg.autoscaling:
            ready = autoscaling.prometheus_ready(self.cfg)
            print(f"Prometheus: {'ready' if ready else 'not ready'} at {self.cfg.prometheus_url}")
            available = autoscaling.apiservice_available(self._api())
            print(f"APIService {autoscaling.APISERVICE} (KEDA): {'Available' if available else 'not Available'}")
        if self.cfg.real_node:
            node = self.real_node()
            state = "missing" if node is None else ("Ready" if self.node_ready(node) else "NotReady")
            print(f"Node {self.cfg.node_name}: {state}, real (kubelet + containerd), InternalIP {self.cfg.node_ip}, "
                  f"pods in {self.cfg.node_pod_cidr}, Services in {self.cfg.service_cidr}")
        return 0 if self.healthy() else 1

