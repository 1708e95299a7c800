"""Run the real `llm-operator run` process against the local control plane.

The operator gets an identity of its own (a ServiceAccount token in its own kubeconfig), so the
API server's audit log can tell its requests from the test's, and so the chart tests can run it
with exactly the RBAC the chart grants.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

import plane
import serving

REPO = Path(__file__).resolve().parent.parent
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
# The e2e operator's own identity (see the `operator` fixture in conftest.py).
OPERATOR_NAMESPACE = "llm-operator-e2e"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:llm-operator"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.2, what: str = "condition"):
    """Poll until check() returns a truthy value; return it, or fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as error:  # noqa: BLE001 - a transient API error is just another "not yet"
            last = error
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached within {timeout:.0f}s; last value: {last!r}")


def service_account_kubeconfig(cluster, namespace: str, name: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token, 24 h)."""
    token = cluster.kubectl("-n", namespace, "create", "token", name, "--duration=24h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    user = f"system:serviceaccount:{namespace}:{name}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": admin["clusters"][0]["name"], "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


class OperatorProcess:
    # Every operator process a test started and has not stopped: a test that must be the only
    # operator (the RBAC tests) stops these and starts them again afterwards.
    running: set[OperatorProcess] = set()

    def __init__(self, kubeconfig: Path, log_path: Path, namespaces: tuple[str, ...] = (),
                 extra_args: tuple[str, ...] = (), lease: tuple[str, str] = (OPERATOR_NAMESPACE, "llm-operator"),
                 resync_seconds: float | None = 60.0):
        """`lease`: (namespace, name) of the leader-election Lease. Processes that share one take
        turns; the tests' operators use their own, apart from a running demo's (default/llm-operator).
        `resync_seconds`: the tests' operators resync every minute; None keeps the operator's
        default, which the chart sets too."""
        self.kubeconfig = kubeconfig
        self.resync_seconds = resync_seconds
        self.lease = lease
        self.log_path = log_path
        self.namespaces = namespaces
        self.extra_args = extra_args
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0, lead: bool = True) -> None:
        """Start, and wait for /healthz and, with `lead`, for the Lease (a process that shares it
        with a running one passes lead=False)."""
        command = [str(Path(sys.executable).parent / "llm-operator"), "run",
                   f"--kubeconfig={self.kubeconfig}",
                   f"--metrics-address=127.0.0.1:{self.metrics_port}",
                   f"--health-address=127.0.0.1:{self.health_port}",
                   *serving.operator_render_flags(plane.Config.from_env()),
                   *([f"--resync-seconds={self.resync_seconds:g}"] if self.resync_seconds is not None else []),
                   f"--leader-election-namespace={self.lease[0]}", f"--leader-election-id={self.lease[1]}",
                   *self.extra_args]
        command += [f"--namespace={ns}" for ns in self.namespaces]
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        log = open(self.log_path, "a", encoding="utf-8")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        OperatorProcess.running.add(self)
        eventually(self._healthy, timeout, what=f"operator /healthz (log: {self.log_path})")
        if lead:
            eventually(self.leading, timeout, interval=0.5, what=f"operator holds its Lease (log: {self.log_path})")

    def leading(self) -> bool:
        return "llmops_leader 1.0" in self.metrics()

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"operator exited with {self.process.returncode}: {self.log_tail()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
            return response.status == 200

    def stop(self) -> None:
        OperatorProcess.running.discard(self)
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def audit_writes(audit_log: Path, username: str, since_line: int = 0, namespace: str | None = None,
                 name: str | None = None) -> dict[str, int]:
    """Write requests a user made (in one namespace, to objects of one name, if given), by "verb resource",
    from the audit log."""
    counts: dict[str, int] = {}
    with open(audit_log, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number < since_line:
                continue
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete" or event.get("user", {}).get("username") != username:
                continue
            ref = event.get("objectRef", {})
            if (namespace is not None and ref.get("namespace") != namespace) or (name is not None and ref.get("name") != name):
                continue
            if event.get("verb") in WRITE_VERBS:
                key = f"{event['verb']} {ref.get('resource')}{'/' + ref['subresource'] if ref.get('subresource') else ''}"
                counts[key] = counts.get(key, 0) + 1
    return counts


def audit_lines(audit_log: Path) -> int:
    with open(audit_log, encoding="utf-8") as handle:
        return sum(1 for _ in handle)
