"""Helpers of the fault suite (test_faults.py): a TCP proxy that can stall, what must hold after a
fault (checked from the API server's own view), and the report table of docs/reliability.md.

What must hold, for every LLMDeployment of a namespace:
- its children are exactly what `render` makes of its spec now (same names, same rendered hash),
  each with exactly one controller owner, which exists: nothing missing, doubled or orphaned;
- its status is for its current generation, and Ready (pods on kwok nodes are ready once scheduled;
  where a case restarted the plane's own components, Ready waits for them too, so the operator's
  part is also measured without it);
- the operator posted few Events (no storm): at most EVENTS_PER_RESOURCE per LLMDeployment.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llm_operator.api import parse_llmdeployment
from llm_operator.names import HASH_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL
from llm_operator.render import RenderConfig, render
from operator_process import OPERATOR_USER, WRITE_VERBS

CHILD_RESOURCES = "deployments,services,persistentvolumeclaims,networkpolicies"
EVENTS_PER_RESOURCE = 4
REPORT = Path(__file__).resolve().parent / ".cluster" / "faults-report.json"


# ---------------------------------------------------------------- a proxy that can stall


class StallProxy:
    """127.0.0.1:<port> -> the API server, byte for byte (TLS passes through untouched).

    `stall()` freezes every connection open at that moment: nothing more is forwarded in either
    direction and nothing is closed, as a load balancer that lost its state does. Connections made
    afterwards work."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._live: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            frozen = threading.Event()
            with self._lock:
                self._live.append((client, upstream, frozen))
            threading.Thread(target=self._pump, args=(client, upstream, frozen), daemon=True).start()

    @staticmethod
    def _pump(client: socket.socket, upstream: socket.socket, frozen: threading.Event) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                if frozen.is_set():
                    time.sleep(0.2)  # hold both sockets open; forward nothing, ever again
                    continue
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if not frozen.is_set():
                        peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: a socket close() closed under select()
            return
        finally:
            if not frozen.is_set():
                client.close()
                upstream.close()

    def stall(self) -> int:
        """Freeze every open connection; returns how many."""
        with self._lock:
            for _, _, frozen in self._live:
                frozen.set()
            return len(self._live)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for client, upstream, _ in self._live:
                client.close()
                upstream.close()

    def kubeconfig(self, base: Path, path: Path) -> Path:
        """`base` (a kubeconfig of the API server on 127.0.0.1) pointed at this proxy."""
        config = yaml.safe_load(base.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def occupy(server: str, kubeconfig: Path, path: str, seconds: float, threads: int = 4) -> dict[str, int]:
    """Send GET `path` back to back from `threads` threads for `seconds`, with the kubeconfig's token
    (user agent "faults-load"): requests of the same user that keep its priority level's seats busy.
    Returns the answers by status code."""
    config = yaml.safe_load(kubeconfig.read_text())
    token = config["users"][0]["user"]["token"]
    context = ssl.create_default_context(cadata=base64.b64decode(
        config["clusters"][0]["cluster"]["certificate-authority-data"]).decode())
    counts: list[dict[int, int]] = []
    deadline = time.monotonic() + seconds

    def send() -> None:
        codes: dict[int, int] = {}  # one per thread, added up at the end
        counts.append(codes)
        while time.monotonic() < deadline:
            request = urllib.request.Request(server + path, headers={"Authorization": f"Bearer {token}",
                                                                     "User-Agent": "faults-load"})
            try:
                with urllib.request.urlopen(request, context=context, timeout=10) as response:
                    response.read()
                    code = response.status
            except urllib.error.HTTPError as error:
                code = error.code
            codes[code] = codes.get(code, 0) + 1

    workers = [threading.Thread(target=send, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return {code: sum(codes.get(code, 0) for codes in counts) for code in set().union(*counts)}


# ---------------------------------------------------------------- what must hold


def _items(cluster, namespace: str, resources: str, *selector: str) -> list[dict[str, Any]]:
    return json.loads(cluster.kubectl("-n", namespace, "get", resources, *selector, "-o", "json").stdout)["items"]


def convergence_problems(cluster, namespace: str, config: RenderConfig, ready: bool = True) -> list[str]:
    """Every way the namespace differs from converged (see the module docstring); [] when converged.
    ready=False: a status of the current generation in any phase will do (Ready also waits for the
    plane to schedule and start the pods)."""
    llmds = {item["metadata"]["uid"]: item for item in _items(cluster, namespace, "llmdeployments")}
    children: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    problems = []
    for child in _items(cluster, namespace, CHILD_RESOURCES, f"-l={MANAGED_BY_LABEL}={MANAGED_BY}"):
        what = f"{child['kind']} {child['metadata']['name']}"
        owners = [ref for ref in child["metadata"].get("ownerReferences") or () if ref.get("controller")]
        if len(owners) != 1 or owners[0]["uid"] not in llmds:
            problems.append(f"{what}: orphaned (controller owners {[ref['name'] for ref in owners]})")
            continue
        children.setdefault(owners[0]["uid"], {})[(child["kind"], child["metadata"]["name"])] = child
    for uid, llmd in llmds.items():
        name, have = llmd["metadata"]["name"], children.get(uid, {})
        wanted = {(obj["kind"], obj["metadata"]["name"]): obj for obj in render(parse_llmdeployment(llmd), config)}
        problems += [f"{name}: {kind} {child} missing" for kind, child in sorted(wanted.keys() - have.keys())]
        problems += [f"{name}: {kind} {child} is not in its render (doubled)" for kind, child in sorted(have.keys() - wanted.keys())]
        problems += [f"{name}: {kind} {child} differs from its render"
                     for (kind, child) in sorted(wanted.keys() & have.keys())
                     if have[(kind, child)]["metadata"].get("annotations", {}).get(HASH_ANNOTATION)
                     != wanted[(kind, child)]["metadata"]["annotations"][HASH_ANNOTATION]]
        status = llmd.get("status") or {}
        if status.get("observedGeneration") != llmd["metadata"]["generation"] or (ready and status.get("phase") != "Ready"):
            problems.append(f"{name}: status {status.get('phase')} for generation {status.get('observedGeneration')}, "
                            f"spec is generation {llmd['metadata']['generation']}")
    return problems


def operator_events(cluster, namespace: str) -> int:
    """Events the operator posted in the namespace, counting repeats of one Event."""
    return sum(event.get("count") or 1 for event in _items(cluster, namespace, "events")
               if (event.get("source") or {}).get("component") == "llm-operator")


def converge(cluster, namespace: str, config: RenderConfig, timeout: float, what: str, ready: bool = True) -> float:
    """Seconds until the namespace is converged; fails with what still differs after `timeout`."""
    started, problems = time.monotonic(), ["not checked yet"]
    while time.monotonic() - started < timeout:
        problems = convergence_problems(cluster, namespace, config, ready)
        if not problems:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not converged within {timeout:.0f}s:\n  " + "\n  ".join(problems[:20]))


def audit_requests(audit_log: Path, since_line: int, username: str = OPERATOR_USER,
                   user_agent: str = "llm-operator") -> dict[str, int]:
    """The operator's requests since `since_line` of the audit log (its user, and its user agent: a
    test may send as the same user): writes, reads, and refusals by code."""
    counts = {"writes": 0, "reads": 0}
    with open(audit_log, encoding="utf-8") as handle:
        for number, line in enumerate(handle):
            if number < since_line:
                continue
            event = json.loads(line)
            if (event.get("user", {}).get("username") != username or event.get("stage") != "ResponseComplete"
                    or not event.get("userAgent", "").startswith(user_agent)):
                continue
            code = (event.get("responseStatus") or {}).get("code", 0)
            counts["writes" if event.get("verb") in WRITE_VERBS else "reads"] += 1
            if code >= 400:
                counts[f"http {code}"] = counts.get(f"http {code}", 0) + 1
    return counts


# ---------------------------------------------------------------- the report


@dataclass
class Row:
    case: str
    runs: int
    failures: int
    worst_converge_s: float
    writes: int
    lost: int
    notes: str = ""
    doubled: int = 0  # a row is recorded only once the checks found nothing doubled or orphaned


def record(row: Row) -> None:
    """Add one case's row to the report (e2e/.cluster/faults-report.json) and print it."""
    rows = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    rows[row.case] = row.__dict__
    REPORT.write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n{table([row])}")


def table(rows: list[Row]) -> str:
    lines = ["| case | runs | failures | worst time to converge | writes | lost | doubled | notes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.case} | {r.runs} | {r.failures} | {r.worst_converge_s:.1f} s | {r.writes} | {r.lost} | {r.doubled} "
              f"| {r.notes} |" for r in rows]
    return "\n".join(lines)
