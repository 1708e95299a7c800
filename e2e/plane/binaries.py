"""Where the plane's programs are: the binaries e2e/cluster/build.sh caches, and the system tools the
real node needs from the distribution (e2e/cluster/install-node-deps.sh installs them)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = E2E_DIR.parent
CLUSTER_DIR = E2E_DIR / "cluster"
NODE_FILES_DIR = CLUSTER_DIR / "node"
BUILD_SCRIPT = CLUSTER_DIR / "build.sh"
INSTALL_NODE_DEPS = CLUSTER_DIR / "install-node-deps.sh"

# Which build.sh version variable each binary is keyed by; build.sh is the single source.
_VERSION_VAR = {
    "etcd": "ETCD",
    "kube-apiserver": "KUBERNETES",
    "kube-controller-manager": "KUBERNETES",
    "kube-scheduler": "KUBERNETES",
    "kubectl": "KUBERNETES",
    "kubelet": "KUBERNETES",
    "kube-proxy": "KUBERNETES",
    "kwok": "KWOK",
    "helm": "HELM",
    "keda-operator": "KEDA",
    "keda-adapter": "KEDA",
    "prometheus": "PROMETHEUS",
}
BINARIES = tuple(_VERSION_VAR)

# The real node's programs from Debian packages (containerd, runc, containernetworking-plugins,
# iptables, conntrack, iproute2, gcc + libc6-dev for the pause image), not built here.
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")
NODE_TOOLS = ("containerd", "containerd-shim-runc-v2", "ctr", "runc", "iptables", "ip6tables", "conntrack",
              "ip", "mount", "umount", "gcc")


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


def keda_crd_dir() -> Path:
    """KEDA's CRDs (its module's config/crd/bases), which build.sh caches beside keda-operator."""
    return binary_path("keda-operator").parent / "crds"


def missing_binaries() -> list[str]:
    return [name for name in BINARIES if not os.access(binary_path(name), os.X_OK)]


def find_binary(name: str) -> Path:
    """Path of a cached binary (helm, kubectl, ...); raises with the fix when it is missing."""
    path = binary_path(name)
    if not os.access(path, os.X_OK):
        raise FileNotFoundError(f"{name} is not built ({path}): run `make cluster-tools`")
    return path


# The sbin directories hold iptables, conntrack, runc and ip; a non-login root shell may lack them.
SYSTEM_PATH = os.pathsep.join(dict.fromkeys(p for p in [
    *os.environ.get("PATH", "").split(os.pathsep),
    "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"] if p))


def system_tool(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH)


def missing_node_tools() -> list[str]:
    """System programs the real node needs that are not installed (empty when all are there)."""
    missing = [name for name in NODE_TOOLS if system_tool(name) is None]
    missing += [f"{CNI_BIN_DIR}/{p}" for p in CNI_PLUGINS if not os.access(CNI_BIN_DIR / p, os.X_OK)]
    if not any(Path("/usr/lib").glob("*/libc.a")) and not Path("/usr/lib/libc.a").exists():
        missing.append("libc.a (libc6-dev, for the static pause binary)")
    return missing
