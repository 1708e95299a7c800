"""Processes of the plane: start them detached, record them in the PID file, stop them by PID.
Also the small HTTP helpers used to wait for them."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .binaries import SYSTEM_PATH
from .config import Config
from .errors import PlaneError

# --------------------------------------------------------------------------- PID file


def read_pids(cfg: Config) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(cfg.pids_file.read_text())
    except (OSError, ValueError):
        return {}


def write_pids(cfg: Config, pids: dict[str, dict[str, Any]]) -> None:
    tmp = cfg.pids_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(pids, indent=2) + "\n")
    tmp.replace(cfg.pids_file)


# Popen objects of processes this Python process started, so it can reap them (a killed
# child left unreaped is a zombie that still looks alive to kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


def cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def is_ours(pid: int, exe: str) -> bool:
    """True while `pid` is alive and still runs `exe` (PIDs get reused after a reboot)."""
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    for _ in range(20):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        # The command line reads empty for a moment while a process is being exec'd.
        if argv0:
            return argv0 == exe and state != "Z"
        time.sleep(0.01)
    return False


def entry_alive(entry: dict[str, Any] | None) -> bool:
    return bool(entry) and is_ours(entry["pid"], entry["exe"])


def find_by_argument(markers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """PID file entries of running processes named `name` whose arguments include `markers[name]`.

    Finds the plane's own processes when its PID file was lost: each marker names a file of this
    plane's state dir, so nothing else can match.
    """
    found: dict[str, dict[str, Any]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        argv = cmdline(int(proc.name))
        if argv:
            name = os.path.basename(argv[0])
            if name in markers and markers[name] in argv[1:]:
                found[name] = {"pid": int(proc.name), "exe": argv[0]}
    return found


def port_busy(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def spawn(cfg: Config, name: str, argv: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start `argv` detached, logging to logs/<name>.log; returns its PID file entry."""
    log = open(cfg.log(name), "ab")
    # A session of its own: the plane outlives `plane up`, and a Ctrl-C in the shell
    # that ran it does not reach the components.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=cfg.state_dir, start_new_session=True,
                            env={**os.environ, "PATH": SYSTEM_PATH, **(env or {})})
    log.close()
    _CHILDREN[proc.pid] = proc
    return {"pid": proc.pid, "exe": argv[0]}


def stop_pids(entries: list[tuple[str, dict[str, Any]]], grace: float = 15.0) -> list[str]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL. Returns the names it stopped."""
    live = [(n, e) for n, e in entries if is_ours(e["pid"], e["exe"])]
    for _, e in live:
        try:
            os.kill(e["pid"], signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    for name, e in live:
        while is_ours(e["pid"], e["exe"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_ours(e["pid"], e["exe"]):
            print(f"Killing {name} (pid {e['pid']}): it did not stop within {grace:.0f} s")
            try:
                os.kill(e["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
            while is_ours(e["pid"], e["exe"]):
                time.sleep(0.05)
        child = _CHILDREN.pop(e["pid"], None)
        if child is not None:
            child.wait()
    return [n for n, _ in live]


def run(argv: list[str], check: bool = True, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run a short command with the system PATH; raise PlaneError with its output when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PATH": SYSTEM_PATH}, **kwargs, check=False)
    if check and proc.returncode != 0:
        raise PlaneError(f"`{' '.join(argv)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")
    return proc


def tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 200 * lines))
            return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not found)"


def wait_until(what: str, ready: Callable[[], Any], timeout: float, check: Callable[[], None] | None = None,
               logs_hint: str = "") -> Any:
    """Poll `ready` until it returns something truthy; `check` may raise to fail early."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        value = ready()
        if value:
            return value
        if time.monotonic() > deadline:
            raise PlaneError(f"Timed out after {timeout:.0f} s waiting for {what}{logs_hint}")
        time.sleep(0.1)


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

    def create(self, path: str, body: Any) -> None:
        """POST `body`; an AlreadyExists answer counts as success."""
        status, answer = self.request("POST", path, body)
        if status not in (200, 201, 409):
            name = body.get("metadata", {}).get("name") if isinstance(body, dict) else body
            raise PlaneError(f"Creating {body.get('kind', '')} {name} failed ({status}): {answer}")


def get_ok(url: str, ctx: ssl.SSLContext | None = None, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


def insecure_ctx() -> ssl.SSLContext:
    # The controller manager and scheduler serve /healthz with self-signed certificates.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
