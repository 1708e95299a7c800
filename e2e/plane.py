#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, for the e2e tests and `make demo`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (simulated GPU
nodes and pod lifecycles) run as plain processes from the binaries e2e/cluster/build.sh
caches. There is no Docker here, so no kind; and no Python stand-in for the API server,
because the operator's correctness depends on the real one (server-side apply, CEL,
garbage collection, the scheduler's reasons).

    python e2e/plane.py up       start the plane (a no-op when it is already up and healthy)
    python e2e/plane.py down     stop every process of the plane by PID
    python e2e/plane.py status   show each component and the nodes

Every address is 127.0.0.1. State lives in e2e/.cluster/ (ignored by git): certificates,
kubeconfigs, etcd data, the audit log, component logs and the PID file. Each `up` starts
from an empty etcd so that test runs never see each other's objects.

Other code finds the cached binaries through find_binary(name) / binary_path(name).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

E2E_DIR = Path(__file__).resolve().parent
REPO_DIR = E2E_DIR.parent
BUILD_SCRIPT = E2E_DIR / "cluster" / "build.sh"
STAGES_FILE = E2E_DIR / "cluster" / "kwok-stages.yaml"

# Which build.sh version variable each binary is keyed by; build.sh is the single source.
_VERSION_VAR = {
    "etcd": "ETCD",
    "kube-apiserver": "KUBERNETES",
    "kube-controller-manager": "KUBERNETES",
    "kube-scheduler": "KUBERNETES",
    "kubectl": "KUBERNETES",
    "kwok": "KWOK",
    "helm": "HELM",
}
BINARIES = tuple(_VERSION_VAR)
# Start order; stop runs in reverse so that nothing loses its API server while it stops.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

# Annotation kwok is told to manage; nodes without it are left alone.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"


class PlaneError(RuntimeError):
    """The plane could not be started or reached; the message says what to look at."""


# --------------------------------------------------------------------------- binaries


def cache_dir() -> Path:
    return Path(os.environ.get("LLMOPS_CACHE_DIR") or Path.home() / ".cache" / "llm-operator")


def versions() -> dict[str, str]:
    """Pinned versions by binary name, read from build.sh so they cannot drift apart."""
    text = BUILD_SCRIPT.read_text()
    found = dict(re.findall(r"^([A-Z]+)_VERSION=(\S+)", text, flags=re.M))
    return {name: found[var] for name, var in _VERSION_VAR.items()}


def binary_path(name: str) -> Path:
    """Where build.sh caches `name` (whether or not it is built yet)."""
    if name not in _VERSION_VAR:
        raise KeyError(f"Unknown control plane binary {name!r}; known: {', '.join(BINARIES)}")
    version = versions()[name]
    return cache_dir() / "bin" / f"{name}-{version}" / name


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not os.access(binary_path(name), os.X_OK)]


def find_binary(name: str) -> Path:
    """Path of a cached binary (helm, kubectl, ...); raises with the fix when it is missing."""
    path = binary_path(name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{name} is not built ({path}): run `make cluster-tools`")
    return path


# --------------------------------------------------------------------------- config


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Config:
    """Ports and node shape; every field can be set from the environment (see from_env)."""

    state_dir: Path = E2E_DIR / ".cluster"
    # Below the Linux ephemeral range (32768+) so outgoing connections never take them.
    etcd_port: int = 16379
    etcd_peer_port: int = 16380
    apiserver_port: int = 16443
    controller_manager_port: int = 16257
    scheduler_port: int = 16259
    kwok_port: int = 16247
    nodes: int = 2
    gpus_per_node: int = 8
    gpu_product: str = "NVIDIA-A100-SXM4-80GB"
    instance_type: str = "p4d.24xlarge"
    # Pod IPs kwok writes into status. Loopback, so that anything that does try to
    # connect to a simulated pod can never send traffic off this machine.
    pod_cidr: str = "127.16.0.0/16"
    service_cidr: str = "10.96.0.0/16"  # an allocation range only: nothing listens there

    @classmethod
    def from_env(cls) -> "Config":
        d = cls()
        return cls(
            state_dir=Path(os.environ.get("LLMOPS_CLUSTER_DIR") or d.state_dir),
            etcd_port=_env_int("LLMOPS_ETCD_PORT", d.etcd_port),
            etcd_peer_port=_env_int("LLMOPS_ETCD_PEER_PORT", d.etcd_peer_port),
            apiserver_port=_env_int("LLMOPS_APISERVER_PORT", d.apiserver_port),
            controller_manager_port=_env_int("LLMOPS_CONTROLLER_MANAGER_PORT", d.controller_manager_port),
            scheduler_port=_env_int("LLMOPS_SCHEDULER_PORT", d.scheduler_port),
            kwok_port=_env_int("LLMOPS_KWOK_PORT", d.kwok_port),
            nodes=_env_int("LLMOPS_KWOK_NODES", d.nodes),
            gpus_per_node=_env_int("LLMOPS_KWOK_GPUS_PER_NODE", d.gpus_per_node),
            gpu_product=os.environ.get("LLMOPS_KWOK_GPU_PRODUCT") or d.gpu_product,
            instance_type=os.environ.get("LLMOPS_KWOK_INSTANCE_TYPE") or d.instance_type,
            pod_cidr=os.environ.get("LLMOPS_KWOK_POD_CIDR") or d.pod_cidr,
        )

    # Paths inside the state dir.
    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.log"

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "pids"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def component_kubeconfig(self, who: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{who}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"


# --------------------------------------------------------------------------- PKI

# (file stem, subject, extended key usage, SANs). Group O=system:masters makes the admin
# and kwok all-powerful; the controller manager and scheduler get their own identities so
# the bootstrap RBAC roles apply to them as in a real cluster.
_SERVING_SANS = (
    "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
    "DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.96.0.1"
)
_CERTS = (
    ("apiserver", "/CN=kube-apiserver", "serverAuth", _SERVING_SANS),
    ("admin", "/O=system:masters/CN=kubernetes-admin", "clientAuth", None),
    ("controller-manager", "/CN=system:kube-controller-manager", "clientAuth", None),
    ("scheduler", "/CN=system:kube-scheduler", "clientAuth", None),
    ("kwok", "/O=system:masters/CN=kwok-controller", "clientAuth", None),
)


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise PlaneError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def ensure_pki(cfg: Config) -> None:
    """CA, serving and client certificates, and the service-account key pair.

    Kept across restarts (only regenerated when incomplete), so a warm `up` skips it and a
    kubeconfig copied elsewhere stays valid. EC P-256 keys: fast to make, accepted by all.
    """
    pki = cfg.pki
    done = pki / ".complete"
    if done.exists():
        return
    if shutil.which("openssl") is None:
        raise PlaneError("The openssl command is needed to generate the plane's certificates")
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", "-new", *ec, "-keyout", str(pki / "ca.key"), "-out", str(pki / "ca.crt"),
             "-days", "3650", "-subj", "/CN=llm-operator-e2e-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    for stem, subject, usage, sans in _CERTS:
        csr = pki / f"{stem}.csr"
        _openssl("req", "-new", *ec, "-keyout", str(pki / f"{stem}.key"), "-out", str(csr), "-subj", subject)
        ext = pki / f"{stem}.ext"
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={usage}"]
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650",
                 "-extfile", str(ext), "-out", str(pki / f"{stem}.crt"))
        csr.unlink()
        ext.unlink()
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(pki / "sa.key"))
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for key in pki.glob("*.key"):
        key.chmod(0o600)
    done.touch()


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(cfg: Config, path: Path, user: str, cert_stem: str) -> None:
    """A self-contained kubeconfig (certificates embedded), so it can be copied anywhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML; writing it avoids depending on pyyaml outside the venv.
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "llm-operator-e2e", "cluster": {
            "server": cfg.server, "certificate-authority-data": _b64(cfg.pki / "ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(cfg.pki / f"{cert_stem}.crt"),
            "client-key-data": _b64(cfg.pki / f"{cert_stem}.key")}}],
        "contexts": [{"name": "llm-operator-e2e", "context": {"cluster": "llm-operator-e2e", "user": user}}],
        "current-context": "llm-operator-e2e",
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


# Metadata level for everything, one event per request (ResponseComplete only), so tests
# can count the operator's writes by verb without double counting RequestReceived.
_AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: Metadata
"""


# --------------------------------------------------------------------------- HTTP


class Api:
    """A minimal admin client for the plane's own bootstrapping (no kubernetes package needed)."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ctx = ssl.create_default_context(cafile=str(cfg.pki / "ca.crt"))
        self.ctx.load_cert_chain(str(cfg.pki / "admin.crt"), str(cfg.pki / "admin.key"))

    def request(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.cfg.server + path, data=data, method=method,
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=timeout) as resp:
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            raw = err.read()
            status = err.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


def _get_ok(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _insecure_ctx() -> ssl.SSLContext:
    # The controller manager and scheduler serve /healthz with self-signed certificates.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------------- processes


def _read_pids(cfg: Config) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(cfg.pids_file.read_text())
    except (OSError, ValueError):
        return {}


def _write_pids(cfg: Config, pids: dict[str, dict[str, Any]]) -> None:
    tmp = cfg.pids_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(pids, indent=2) + "\n")
    tmp.replace(cfg.pids_file)


# Popen objects of processes this Python process started, so it can reap them (a killed
# child left unreaped is a zombie that still looks alive to kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


def _is_ours(pid: int, exe: str) -> bool:
    """True while `pid` is alive and still runs `exe` (PIDs get reused after a reboot)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    for _ in range(20):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        # The command line reads empty for a moment while a process is being exec'd.
        if cmdline:
            return cmdline == exe and state != "Z"
        time.sleep(0.01)
    return False


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _spawn(cfg: Config, name: str, argv: list[str]) -> dict[str, Any]:
    log = open(cfg.log(name), "ab")
    # A session of its own: the plane outlives `plane.py up`, and a Ctrl-C in the shell
    # that ran it does not reach the components.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=cfg.state_dir, start_new_session=True)
    log.close()
    _CHILDREN[proc.pid] = proc
    return {"pid": proc.pid, "exe": argv[0]}


def _stop_pids(entries: list[tuple[str, dict[str, Any]]], grace: float = 15.0) -> list[str]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the names it stopped."""
    live = [(n, e) for n, e in entries if _is_ours(e["pid"], e["exe"])]
    for _, e in live:
        try:
            os.kill(e["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for name, e in live:
        while _is_ours(e["pid"], e["exe"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_ours(e["pid"], e["exe"]):
            print(f"Killing {name} (pid {e['pid']}): it did not stop within {grace:.0f} s")
            try:
                os.kill(e["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            while _is_ours(e["pid"], e["exe"]):
                time.sleep(0.05)
        child = _CHILDREN.pop(e["pid"], None)
        if child is not None:
            child.wait()
    return [n for n, _ in live]


# --------------------------------------------------------------------------- the plane


class Plane:
    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg or Config.from_env()
        self.api = None  # type: Api | None

    # -- queries -----------------------------------------------------------------------

    def _api(self) -> Api:
        if self.api is None:
            self.api = Api(self.cfg)
        return self.api

    def processes_alive(self) -> dict[str, bool]:
        pids = _read_pids(self.cfg)
        return {n: n in pids and _is_ours(pids[n]["pid"], pids[n]["exe"]) for n in COMPONENTS}

    def apiserver_ready(self) -> bool:
        if not (self.cfg.pki / ".complete").exists():
            return False
        try:
            status, _ = self._api().request("GET", "/readyz", timeout=2)
        except OSError:
            return False
        return status == 200

    def kwok_nodes(self) -> list[dict[str, Any]]:
        key, value = KWOK_NODE_ANNOTATION
        status, body = self._api().request("GET", "/api/v1/nodes")
        if status != 200:
            return []
        return [n for n in body["items"] if n["metadata"].get("annotations", {}).get(key) == value]

    @staticmethod
    def node_ready(node: dict[str, Any]) -> bool:
        conds = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)

    def healthy(self) -> bool:
        if not all(self.processes_alive().values()) or not self.apiserver_ready():
            return False
        nodes = self.kwok_nodes()
        return len(nodes) == self.cfg.nodes and all(self.node_ready(n) for n in nodes)

    # -- up ------------------------------------------------------------------------------

    def up(self) -> bool:
        """Start the plane. Returns False when it was already up (nothing done)."""
        cfg = self.cfg
        if self.healthy():
            return False
        if _read_pids(cfg):
            # Left over from a crash or a half-failed start: clear it before starting anew.
            self.down(quiet=True)
        missing = [n for n in COMPONENTS if not os.access(binary_path(n), os.X_OK)]
        if missing:
            raise PlaneError(f"Missing binaries: {', '.join(missing)}: run `make cluster-tools`")
        ports = {"etcd": cfg.etcd_port, "etcd peer": cfg.etcd_peer_port, "kube-apiserver": cfg.apiserver_port,
                 "kube-controller-manager": cfg.controller_manager_port,
                 "kube-scheduler": cfg.scheduler_port, "kwok": cfg.kwok_port}
        busy = [f"{n} port {p}" for n, p in ports.items() if _port_busy(p)]
        if busy:
            raise PlaneError(f"Ports in use on 127.0.0.1: {', '.join(busy)}; stop what holds them or set "
                             "LLMOPS_*_PORT (see e2e/plane.py Config.from_env)")

        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        ensure_pki(cfg)
        # A fresh etcd, audit log and component logs each time: runs stay independent.
        for stale in (cfg.state_dir / "etcd-data", cfg.logs_dir):
            shutil.rmtree(stale, ignore_errors=True)
        for f in cfg.state_dir.glob("audit*.log"):
            f.unlink()
        cfg.logs_dir.mkdir(parents=True)
        write_kubeconfig(cfg, cfg.kubeconfig, "kubernetes-admin", "admin")
        write_kubeconfig(cfg, cfg.component_kubeconfig("controller-manager"),
                         "system:kube-controller-manager", "controller-manager")
        write_kubeconfig(cfg, cfg.component_kubeconfig("scheduler"), "system:kube-scheduler", "scheduler")
        write_kubeconfig(cfg, cfg.component_kubeconfig("kwok"), "kwok-controller", "kwok")
        (cfg.state_dir / "audit-policy.yaml").write_text(_AUDIT_POLICY)

        pids: dict[str, dict[str, Any]] = {}
        try:
            pids["etcd"] = _spawn(cfg, "etcd", self._etcd_argv())
            _write_pids(cfg, pids)
            self._wait("etcd", lambda: _get_ok(f"http://127.0.0.1:{cfg.etcd_port}/health"), 30)

            pids["kube-apiserver"] = _spawn(cfg, "kube-apiserver", self._apiserver_argv())
            _write_pids(cfg, pids)
            self._wait("kube-apiserver", self.apiserver_ready, 60)

            for name, argv in (("kube-controller-manager", self._controller_manager_argv()),
                               ("kube-scheduler", self._scheduler_argv()),
                               ("kwok", self._kwok_argv())):
                pids[name] = _spawn(cfg, name, argv)
            _write_pids(cfg, pids)

            self._create_nodes()
            insecure = _insecure_ctx()
            self._wait("kube-controller-manager", lambda: _get_ok(
                f"https://127.0.0.1:{cfg.controller_manager_port}/healthz", insecure), 60)
            self._wait("kube-scheduler", lambda: _get_ok(
                f"https://127.0.0.1:{cfg.scheduler_port}/healthz", insecure), 60)
            self._wait("kwok", lambda: _get_ok(f"http://127.0.0.1:{cfg.kwok_port}/healthz"), 60)
            self._wait("nodes Ready", lambda: (lambda ns: len(ns) == cfg.nodes and all(map(self.node_ready, ns)))(
                self.kwok_nodes()), 60)
            # Pods can only be created once the namespace's default ServiceAccount exists:
            # waiting here keeps the first test from racing the service-account controller.
            self._wait("default ServiceAccount", lambda: self._api().request(
                "GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200, 60)
        except BaseException:
            self.down(quiet=True)
            raise
        return True

    def _wait(self, what: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # A component that exited will never become ready: fail at once, with its log.
            for name, alive in self.processes_alive().items():
                if name in _read_pids(self.cfg) and not alive:
                    raise PlaneError(f"{name} exited during start-up; last lines of {self.cfg.log(name)}:\n"
                                     + tail(self.cfg.log(name), 30))
            if ready():
                return
            time.sleep(0.2)
        raise PlaneError(f"Timed out after {timeout:.0f} s waiting for {what}; logs are in {self.cfg.logs_dir}")

    def _etcd_argv(self) -> list[str]:
        c = self.cfg
        peer = f"http://127.0.0.1:{c.etcd_peer_port}"
        client = f"http://127.0.0.1:{c.etcd_port}"
        return [str(binary_path("etcd")),
                "--name=llmops", f"--data-dir={c.state_dir / 'etcd-data'}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=llmops={peer}",
                # Throw-away data: skipping fsync makes every write (and the tests) faster.
                "--unsafe-no-fsync=true", "--log-level=warn",
                f"--quota-backend-bytes={2 * 1024 ** 3}"]

    def _apiserver_argv(self) -> list[str]:
        c, p = self.cfg, self.cfg.pki
        return [str(binary_path("kube-apiserver")),
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={c.apiserver_port}",
                f"--etcd-servers=http://127.0.0.1:{c.etcd_port}",
                f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
                f"--client-ca-file={p / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p / 'sa.pub'}",
                f"--service-account-signing-key-file={p / 'sa.key'}",
                f"--service-cluster-ip-range={c.service_cidr}",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                # The built-in `kubernetes` Endpoints would point at 127.0.0.1, which Endpoints
                # validation rejects; no simulated pod can call the API server anyway.
                "--endpoint-reconciler-type=none",
                f"--audit-policy-file={c.state_dir / 'audit-policy.yaml'}",
                f"--audit-log-path={c.audit_log}", "--audit-log-maxsize=500", "--audit-log-maxbackup=1",
                "--audit-log-format=json",
                f"--cert-dir={c.state_dir / 'apiserver-certs'}",
                "--profiling=false", "--v=1"]

    def _controller_manager_argv(self) -> list[str]:
        c, p = self.cfg, self.cfg.pki
        kc = c.component_kubeconfig("controller-manager")
        return [str(binary_path("kube-controller-manager")),
                f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1", f"--secure-port={c.controller_manager_port}",
                f"--cert-dir={c.state_dir / 'controller-manager-certs'}",
                # One instance only: leader election would just add start-up latency.
                "--leader-elect=false",
                # Each controller under its own service account, as in kubeadm clusters, so the
                # bootstrap RBAC roles (not a superuser) bound what they can do.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p / 'sa.key'}", f"--root-ca-file={p / 'ca.crt'}",
                f"--cluster-signing-cert-file={p / 'ca.crt'}", f"--cluster-signing-key-file={p / 'ca.key'}",
                "--controllers=*", "--cluster-name=llm-operator-e2e",
                f"--service-cluster-ip-range={c.service_cidr}",
                "--profiling=false", "--v=1"]

    def _scheduler_argv(self) -> list[str]:
        c = self.cfg
        kc = c.component_kubeconfig("scheduler")
        return [str(binary_path("kube-scheduler")),
                f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1", f"--secure-port={c.scheduler_port}",
                f"--cert-dir={c.state_dir / 'scheduler-certs'}",
                "--leader-elect=false", "--profiling=false", "--v=1"]

    def _kwok_argv(self) -> list[str]:
        c = self.cfg
        key, value = KWOK_NODE_ANNOTATION
        return [str(binary_path("kwok")),
                f"--kubeconfig={c.component_kubeconfig('kwok')}", f"--config={STAGES_FILE}",
                "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={key}={value}",
                "--node-ip=127.0.0.1", f"--cidr={c.pod_cidr}",
                f"--server-address=127.0.0.1:{c.kwok_port}", "--node-lease-duration-seconds=40"]

    def node_manifest(self, index: int) -> dict[str, Any]:
        c = self.cfg
        name = f"kwok-gpu-{index}"
        key, value = KWOK_NODE_ANNOTATION
        resources = {"cpu": "96", "memory": "1152Gi", "pods": "110", "ephemeral-storage": "7Ti",
                     GPU_RESOURCE: str(c.gpus_per_node)}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {key: value, "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "node.kubernetes.io/instance-type": c.instance_type,
                    "topology.kubernetes.io/zone": f"local-{index % 2}",
                    # The labels NVIDIA's GPU feature discovery sets on real GPU nodes.
                    "nvidia.com/gpu.present": "true",
                    "nvidia.com/gpu.product": c.gpu_product,
                    "nvidia.com/gpu.count": str(c.gpus_per_node),
                    "nvidia.com/gpu.memory": "81920",
                },
            },
            "spec": {"taints": [{"key": GPU_RESOURCE, "effect": "NoSchedule"}]},
            # Nodes may carry status on create; kwok's node-initialize stage keeps it.
            "status": {"capacity": resources, "allocatable": resources},
        }

    def _create_nodes(self) -> None:
        for i in range(self.cfg.nodes):
            status, body = self._api().request("POST", "/api/v1/nodes", self.node_manifest(i))
            if status not in (201, 409):
                raise PlaneError(f"Creating node kwok-gpu-{i} failed ({status}): {body}")

    # -- down ----------------------------------------------------------------------------

    def down(self, quiet: bool = False) -> list[str]:
        pids = _read_pids(self.cfg)
        entries = [(n, pids[n]) for n in reversed(COMPONENTS) if n in pids]
        # Everything but etcd first, so the API server does not spin on a vanished etcd.
        stopped = _stop_pids([e for e in entries if e[0] != "etcd"])
        stopped += _stop_pids([e for e in entries if e[0] == "etcd"])
        self.cfg.pids_file.unlink(missing_ok=True)
        if not quiet:
            print(f"Stopped {', '.join(stopped)}" if stopped else "The control plane was not running")
        return stopped

    # -- status --------------------------------------------------------------------------

    def status(self) -> int:
        pids = _read_pids(self.cfg)
        alive = self.processes_alive()
        for name in COMPONENTS:
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
        return 0 if self.healthy() else 1


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not found)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("up", "down", "status"))
    args = parser.parse_args(argv)
    plane = Plane()
    if args.command == "up":
        start = time.monotonic()
        try:
            started = plane.up()
        except PlaneError as err:
            print(f"Control plane failed to start: {err}", file=sys.stderr)
            return 1
        took = time.monotonic() - start
        print(f"Control plane {'up' if started else 'already up'} in {took:.1f} s "
              f"({plane.cfg.nodes} kwok nodes with {plane.cfg.gpus_per_node} {GPU_RESOURCE} each)")
        kubectl = binary_path("kubectl")
        print(f"Use it with:\n  export KUBECONFIG={plane.cfg.kubeconfig}\n  {kubectl} get nodes\n"
              f"Audit log: {plane.cfg.audit_log}\nStop it with: make cluster-down")
        return 0
    if args.command == "down":
        plane.down()
        return 0
    return plane.status()


if __name__ == "__main__":
    sys.exit(main())
