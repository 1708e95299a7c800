"""The real node: containerd (Debian's), kubelet and kube-proxy on this machine, joined to the plane.

Everything it creates on the host is the plane's own and is undone by `teardown()`:
- an interface (`llmops0`) holding the node IP, and a route that keeps all of 198.18.0.0/15 on it;
- a CNI bridge (`llmops-cni0`) for the pods, addresses from host-local IPAM in 198.18.0.0/24;
- the iptables chain LLMOPS-FORWARD, first in FORWARD: nothing from the pod range is forwarded
  to an address outside 198.18.0.0/15, and nothing from outside it is forwarded into the pods;
- the sysctls it (and the kubelet, and the bridge plugin) change, restored from a record;
- containerd's tasks, sandboxes and mounts, the kubelet's mounts, kube-proxy's rules.
containerd's root (imported images) is kept under the cache dir, so `up` does not re-import.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import shutil
import signal
import string
import subprocess
import time
from pathlib import Path
from typing import Any

from .binaries import CNI_BIN_DIR, NODE_FILES_DIR, SYSTEM_PATH, binary_path, missing_node_tools, system_tool
from .config import ISOLATED_RANGE, LOCAL_STORAGE_CLASS, REAL_NODE_LABEL, REAL_NODE_TAINT, Config
from .errors import PlaneError
from .images import ctr, import_image, pause_image
from .processes import cmdline, entry_alive, find_by_argument, get_ok, run, stop_pids

NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy")
FORWARD_CHAIN = "LLMOPS-FORWARD"
# The chains kube-proxy (iptables mode) jumps to from FORWARD, in the order it adds the jumps.
KUBE_PROXY_FORWARD_JUMPS = ("KUBE-EXTERNAL-SERVICES", "KUBE-SERVICES", "KUBE-FORWARD", "KUBE-PROXY-FIREWALL")
CONTAINERD_TEMPLATE = NODE_FILES_DIR / "containerd.toml"
CNI_CONFLIST = "10-llmops.conflist"

# Host settings the node changes: net.ipv4.ip_forward and bridge-nf-call-iptables by the plane
# (pod -> ClusterIP -> pod on the same bridge needs both) and by the bridge plugin; the rest by the
# kubelet's kernel tunables. Restored at `down` to what they were before `up`.
SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/bridge/bridge-nf-call-iptables",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Host directories the kubelet, the CNI library (its result cache) and containerd's shims (their
# sockets) create if missing; removed at `down`, children first, when they were not there before
# `up` and are empty again.
HOST_DIRS = (Path("/var/log/containers"), Path("/var/lib/cni/results"), Path("/var/lib/cni"),
             Path("/run/containerd/s"), Path("/run/containerd"))
# iptables chains the kubelet creates (kube-proxy --cleanup removes kube-proxy's own).
KUBELET_CHAINS = {"filter": ("KUBE-FIREWALL", "KUBE-KUBELET-CANARY"), "nat": ("KUBE-KUBELET-CANARY",),
                  "mangle": ("KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT")}
# Interface types that can hold the node IP, in order of preference (some kernels here lack dummy).
_IFACE_TYPES = ("dummy", "ifb")


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key


def _read_sysctl(key: str) -> str | None:
    try:
        return _sysctl_path(key).read_text().strip()
    except OSError:
        return None


def _write_sysctl(key: str, value: str) -> None:
    try:
        _sysctl_path(key).write_text(value + "\n")
    except OSError as err:
        raise PlaneError(f"Cannot set {key.replace('/', '.')}={value}: {err}") from err


def _cgroup_parents() -> list[Path]:
    """Where runc puts the pods' containers with the cgroupfs driver and no QoS cgroups:
    /sys/fs/cgroup/<hierarchy>/k8s.io/<container id>. Emptied as the containers go; the parent stays."""
    root = Path("/sys/fs/cgroup")
    hierarchies = [h for h in root.iterdir() if h.is_dir() and not h.is_symlink()] if root.is_dir() else []
    return [h / "k8s.io" for h in sorted(hierarchies)]


def _mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of `roots`, deepest first."""
    prefixes = [str(r.resolve()) for r in roots]
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        point = line.split()[4]
        point = point.encode().decode("unicode_escape")  # \040 and friends
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(*roots: Path) -> list[str]:
    """Unmount everything mounted below `roots` (stacked mounts too). Returns what stays mounted."""
    for _ in range(10):
        points = _mounts_under(*roots)
        if not points:
            return []
        for point in points:
            if run(["umount", point], check=False).returncode != 0:
                run(["umount", "--lazy", point], check=False)
    return _mounts_under(*roots)


def remove_tree(path: Path) -> None:
    """rm -rf, but never through a mount: a bind mount left below would delete what it shows."""
    if not path.exists():
        return
    left = unmount_all(path)
    if left:
        raise PlaneError(f"Not removing {path}: still mounted below it: {', '.join(left)}")
    shutil.rmtree(path)


class RealNode:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    # -- preflight -------------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Why the node cannot start here (empty when it can)."""
        c = self.cfg
        found = []
        if os.geteuid() != 0:
            found.append("the real node needs root (it runs containerd and the kubelet, and sets up "
                         "network interfaces and iptables rules)")
        tools = missing_node_tools()
        if tools:
            found.append(f"missing {', '.join(tools)}: run `make cluster-tools` "
                         "(e2e/cluster/install-node-deps.sh installs them with apt-get)")
        bins = [b for b in ("kubelet", "kube-proxy") if not os.access(binary_path(b), os.X_OK)]
        if bins:
            found.append(f"{', '.join(bins)} not built: run `make cluster-tools`")
        try:
            c.check_ranges()
        except ValueError as err:
            found.append(str(err))
        return found

    # -- host network ----------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        try:
            return json.loads(self.cfg.node_record.read_text())
        except (OSError, ValueError):
            return {}

    def setup_host(self) -> None:
        """Interface, route, iptables chain and sysctls; records what it changes first."""
        c = self.cfg
        if not c.node_record.exists():
            # Only the first `up` after a clean `down` records: later ones would record our own values.
            record = {"sysctls": {k: _read_sysctl(k) for k in SYSCTLS},
                      "dirs": [str(d) for d in (*HOST_DIRS, *_cgroup_parents()) if not d.exists()]}
            c.node_record.write_text(json.dumps(record, indent=2) + "\n")

        self._create_interface()
        # The whole 198.18.0.0/15 stays on this machine: addresses of it that nothing claims (no pod,
        # a ClusterIP that kube-proxy did not translate) end on the interface, which drops them,
        # instead of following the default route off the machine. The pod range's own route (on the
        # bridge) is more specific and wins.
        run(["ip", "route", "replace", ISOLATED_RANGE, "dev", c.node_interface, "src", c.node_ip])
        self._ensure_forward_chain()
        _write_sysctl("net/ipv4/ip_forward", "1")
        if _read_sysctl("net/bridge/bridge-nf-call-iptables") is None:
            raise PlaneError("net.bridge.bridge-nf-call-iptables is missing (no br_netfilter): "
                             "ClusterIPs would not work between pods")
        _write_sysctl("net/bridge/bridge-nf-call-iptables", "1")

    def _create_interface(self) -> None:
        c = self.cfg
        if run(["ip", "link", "show", c.node_interface], check=False).returncode != 0:
            errors = []
            for kind in _IFACE_TYPES:
                proc = run(["ip", "link", "add", c.node_interface, "type", kind], check=False)
                if proc.returncode == 0:
                    break
                errors.append(f"{kind}: {proc.stderr.strip()}")
            else:
                raise PlaneError(f"Cannot create the node interface {c.node_interface}: {'; '.join(errors)}")
        run(["ip", "addr", "replace", f"{c.node_ip}/32", "dev", c.node_interface])
        run(["ip", "link", "set", c.node_interface, "up"])

    def _iptables(self, *args: str, check: bool = True, v6: bool = False):
        return run(["ip6tables" if v6 else "iptables", "-w", "5", *args], check=check)

    def _ensure_forward_chain(self) -> None:
        c = self.cfg
        if self._iptables("-n", "-L", FORWARD_CHAIN, check=False).returncode != 0:
            self._iptables("-N", FORWARD_CHAIN)
        self._iptables("-F", FORWARD_CHAIN)
        self._iptables("-A", FORWARD_CHAIN, "-s", c.node_pod_cidr, "!", "-d", ISOLATED_RANGE,
                       "-m", "comment", "--comment", "llm-operator plane: pods never reach off the machine",
                       "-j", "DROP")
        self._iptables("-A", FORWARD_CHAIN, "-d", c.node_pod_cidr, "!", "-s", ISOLATED_RANGE,
                       "-m", "comment", "--comment", "llm-operator plane: nothing is routed into pods from outside",
                       "-j", "DROP")
        self.ensure_forward_first()

    def ensure_forward_first(self) -> None:
        """Keep the plane's jump the first rule of FORWARD (kube-proxy prepends its own)."""
        rules = [r for r in self._iptables("-S", "FORWARD").stdout.splitlines() if r.startswith("-A ")]
        jump = f"-A FORWARD -j {FORWARD_CHAIN}"
        if rules and rules[0] == jump:
            return
        while self._iptables("-C", "FORWARD", "-j", FORWARD_CHAIN, check=False).returncode == 0:
            self._iptables("-D", "FORWARD", "-j", FORWARD_CHAIN)
        self._iptables("-I", "FORWARD", "1", "-j", FORWARD_CHAIN)

    def kube_proxy_synced(self) -> bool:
        """kube-proxy has made its first full sync: all its jumps into FORWARD exist. It prepends them
        one by one, KUBE-PROXY-FIREWALL last: waiting for KUBE-FORWARD alone let that one land before
        the plane's chain once (seen in CI on 2026-12-06)."""
        rules = self._iptables("-S", "FORWARD", check=False).stdout
        return all(f"-j {chain}" in rules for chain in KUBE_PROXY_FORWARD_JUMPS)

    def forward_rules(self) -> list[str]:
        """The plane's FORWARD chain as `iptables -S` prints it (for tests and `status`)."""
        proc = self._iptables("-S", FORWARD_CHAIN, check=False)
        return proc.stdout.splitlines() if proc.returncode == 0 else []

    # -- configuration files -----------------------------------------------------------------

    def write_configs(self, sandbox_image: str) -> None:
        c = self.cfg
        for d in (c.node_dir, c.containerd_state, c.kubelet_dir, c.pod_logs_dir, c.cni_conf_dir, c.cni_ipam_dir,
                  c.containerd_root):
            d.mkdir(parents=True, exist_ok=True)
        template = string.Template(CONTAINERD_TEMPLATE.read_text())
        c.containerd_config.write_text(template.substitute(
            root=c.containerd_root, state=c.containerd_state, socket=c.containerd_socket,
            sandbox_image=sandbox_image, cni_bin_dir=CNI_BIN_DIR, cni_conf_dir=c.cni_conf_dir))
        (c.cni_conf_dir / CNI_CONFLIST).write_text(json.dumps(self.cni_conflist(), indent=2) + "\n")
        (c.node_dir / "kubelet.json").write_text(json.dumps(self.kubelet_config(), indent=2) + "\n")
        (c.node_dir / "kube-proxy.json").write_text(json.dumps(self.kube_proxy_config(), indent=2) + "\n")

    def cni_conflist(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "cniVersion": "1.0.0",
            "name": c.cni_network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": c.cni_bridge,
                    "isGateway": True,
                    # No SNAT: nothing leaves the machine, so nothing needs the host's address.
                    "ipMasq": False,
                    # A pod can reach itself through its own Service's ClusterIP.
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": c.node_pod_cidr, "gateway": c.pod_gateway}]],
                        # A default route, so programs that look up "their" address by routing
                        # (vLLM connects a UDP socket to a public address) work; the plane's
                        # FORWARD chain drops anything that would really leave.
                        "routes": [{"dst": "0.0.0.0/0"}],
                        # Allocations under the state dir: `down` frees them with the rest.
                        "dataDir": str(c.cni_ipam_dir),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }

    def kubelet_config(self) -> dict[str, Any]:
        c = self.cfg
        p = c.pki
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # Serves (logs, exec, metrics) on the node IP only, with a certificate from the plane's CA;
            # clients authenticate with certificates of that CA (the API server) or tokens (TokenReview),
            # and are authorised by the API server (SubjectAccessReview): as in a kubeadm cluster.
            "address": c.node_ip,
            "port": c.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": c.kubelet_healthz_port,
            "tlsCertFile": str(p / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(p / "kubelet-serving.key"),
            "rotateCertificates": False,
            "serverTLSBootstrap": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True, "cacheTTL": "30s"},
                               "x509": {"clientCAFile": str(p / "ca.crt")}},
            "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "30s",
                                                             "cacheUnauthorizedTTL": "5s"}},
            "containerRuntimeEndpoint": f"unix://{c.containerd_socket}",
            # This machine: cgroup v1 hierarchies (cgroup2 only at /sys/fs/cgroup/unified), which
            # Kubernetes 1.35 refuses unless told; no systemd to delegate cgroups; no QoS cgroups
            # or node allocatable enforcement (the kubelet would need to own the cgroup tree).
            "failCgroupV1": False,
            "cgroupDriver": "cgroupfs",
            "cgroupsPerQOS": False,
            "enforceNodeAllocatable": [],
            "failSwapOn": False,
            # The kubelet cannot lower its own oom_score_adj here either (see containerd.toml).
            "oomScoreAdj": 0,
            # Images are imported from archives and cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "imageMinimumGCAge": "876000h",
            # No eviction for disk (0% disables a signal); memory only when the machine is nearly out.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "0%", "nodefs.inodesFree": "0%",
                             "imagefs.available": "0%", "imagefs.inodesFree": "0%"},
            "registerNode": True,
            "registerWithTaints": [REAL_NODE_TAINT],
            "podLogsDir": str(c.pod_logs_dir),
            "volumePluginDir": str(c.kubelet_dir / "volume-plugins"),
            # No cluster DNS: pods get no nameserver (they use addresses).
            "resolvConf": "",
            "maxPods": 110,
            "shutdownGracePeriod": "0s",
            "containerLogMaxSize": "10Mi",
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
        }

    def kube_proxy_config(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(c.component_kubeconfig("kube-proxy"))},
            "hostnameOverride": c.node_name,
            "bindAddress": c.node_ip,
            "healthzBindAddress": f"127.0.0.1:{c.kube_proxy_healthz_port}",
            "metricsBindAddress": f"127.0.0.1:{c.kube_proxy_metrics_port}",
            "mode": "iptables",
            "clusterCIDR": c.node_pod_cidr,
            "detectLocalMode": "ClusterCIDR",
            # NodePorts on the node IP only (no route_localnet, no host addresses).
            "nodePortAddresses": [f"{c.node_ip}/32"],
            "iptables": {"localhostNodePorts": False, "masqueradeAll": False, "syncPeriod": "30s",
                         "minSyncPeriod": "0s"},
            # 0 = leave the host's conntrack settings alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                          "udpTimeout": "0s", "udpStreamTimeout": "0s"},
            "oomScoreAdj": 0,
            "enableProfiling": False,
        }

    # -- command lines ------------------------------------------------------------------------

    def containerd_argv(self) -> list[str]:
        return [system_tool("containerd") or "containerd", f"--config={self.cfg.containerd_config}"]

    def kubelet_argv(self) -> list[str]:
        c = self.cfg
        label = "=".join(REAL_NODE_LABEL)
        return [str(binary_path("kubelet")),
                f"--config={c.node_dir / 'kubelet.json'}",
                f"--kubeconfig={c.component_kubeconfig('kubelet')}",
                f"--root-dir={c.kubelet_dir}", f"--cert-dir={c.kubelet_dir / 'pki'}",
                f"--hostname-override={c.node_name}", f"--node-ip={c.node_ip}",
                f"--node-labels={label},node.kubernetes.io/instance-type=local", "--v=1"]

    def kube_proxy_argv(self) -> list[str]:
        return [str(binary_path("kube-proxy")), f"--config={self.cfg.node_dir / 'kube-proxy.json'}", "--v=1"]

    # -- containerd ------------------------------------------------------------------------------

    def containerd_ready(self) -> bool:
        if not self.cfg.containerd_socket.exists():
            return False
        return ctr(self.cfg, "version", check=False, timeout=5).returncode == 0

    def ensure_sandbox_image(self) -> None:
        archive, name = pause_image()
        import_image(self.cfg, archive, name)

    # -- API objects ---------------------------------------------------------------------------

    def storage_objects(self) -> list[tuple[str, dict[str, Any]]]:
        """(collection path, object): the local-storage class and the static local PVs."""
        c = self.cfg
        objs = [("/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": LOCAL_STORAGE_CLASS},
            "provisioner": "kubernetes.io/no-provisioner",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Retain",
        })]
        for i in range(c.local_volumes):
            objs.append(("/api/v1/persistentvolumes", {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": f"{c.node_name}-local-{i}", "labels": {REAL_NODE_LABEL[0]: REAL_NODE_LABEL[1]}},
                "spec": {
                    "capacity": {"storage": c.local_volume_size},
                    # The API server accepts both for a local volume; on one node both mean the same.
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": LOCAL_STORAGE_CLASS,
                    "volumeMode": "Filesystem",
                    "local": {"path": str(c.volumes_dir / f"local-{i}")},
                    "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "kubernetes.io/hostname", "operator": "In", "values": [c.node_name]}]}]}},
                },
            }))
        return objs

    def prepare_volumes(self) -> None:
        """Empty directories behind the local PVs (their data never outlives one `up`)."""
        remove_tree(self.cfg.volumes_dir)
        for i in range(self.cfg.local_volumes):
            (self.cfg.volumes_dir / f"local-{i}").mkdir(parents=True)

    # -- teardown -------------------------------------------------------------------------------

    def leftovers(self) -> bool:
        """True when anything of a node (running or crashed) may be on the host."""
        c = self.cfg
        return (c.node_record.exists() or c.node_dir.exists() or c.containerd_socket.exists()
                or Path(f"/sys/class/net/{c.node_interface}").exists()
                or Path(f"/sys/class/net/{c.cni_bridge}").exists())

    def teardown(self, pids: dict[str, dict[str, Any]], spawn_containerd) -> list[str]:
        """Stop the node and undo everything it did on the host. Returns the components it stopped.

        `spawn_containerd()` starts containerd again when it died with pods still running (a crash):
        only containerd can stop its shims and sandboxes cleanly.
        """
        c = self.cfg
        entries = {n: pids[n] for n in NODE_COMPONENTS if entry_alive(pids.get(n))}
        # Processes of this node the PID file does not know (it was lost or half-written).
        for name, entry in self._orphans().items():
            entries.setdefault(name, entry)
        stopped = stop_pids([(n, entries[n]) for n in ("kubelet", "kube-proxy") if n in entries])
        containerd = entries.get("containerd")
        tasks_dir = c.containerd_state / "io.containerd.runtime.v2.task" / "k8s.io"
        task_ids = set(p.name for p in tasks_dir.iterdir()) if tasks_dir.is_dir() else set()
        if containerd is None and tasks_dir.is_dir() and any(tasks_dir.iterdir()) and c.containerd_config.exists():
            containerd = spawn_containerd()
            deadline = time.monotonic() + 20
            while not self.containerd_ready() and time.monotonic() < deadline:
                time.sleep(0.1)
        if entry_alive(containerd):
            task_ids.update(self._remove_pods())
            if stop_pids([("containerd", containerd)]):
                stopped.append("containerd")
            # The CRI keeps each pod's hosts, resolv.conf and status files under its root (the cache
            # dir); the pods are gone, so are these.
            for sub in ("sandboxes", "containers"):
                remove_tree(c.containerd_root / "io.containerd.grpc.v1.cri" / sub)
        self._kill_stray_shims()
        self._remove_shim_sockets(task_ids)
        left = unmount_all(c.node_dir, c.containerd_root)
        if left:
            print(f"Could not unmount: {', '.join(left)}")
        self._cleanup_network()
        self._restore_host()
        try:
            remove_tree(c.node_dir)
        except (PlaneError, OSError) as err:
            print(f"Left {c.node_dir}: {err}")
        return stopped

    def _orphans(self) -> dict[str, dict[str, Any]]:
        """Running node components found by their command line (which names this plane's own files)."""
        c = self.cfg
        return find_by_argument({"containerd": f"--config={c.containerd_config}",
                                 "kubelet": f"--root-dir={c.kubelet_dir}",
                                 "kube-proxy": f"--config={c.node_dir / 'kube-proxy.json'}"})

    def remove_stale_pods(self) -> None:
        """At `up`, with a fresh etcd, every container containerd still knows is a leftover."""
        if ctr(self.cfg, "containers", "ls", "-q", check=False).stdout.split():
            self._remove_pods()

    def _remove_shim_sockets(self, ids: set[str]) -> None:
        """Sockets of shims that were killed (a shim that exits removes its own), in /run/containerd/s
        under the name containerd 1.6 gives them: sha256 of "<containerd address>/<namespace>/<id>"."""
        for cid in ids:
            name = hashlib.sha256(f"{self.cfg.containerd_socket}/k8s.io/{cid}".encode()).hexdigest()
            Path("/run/containerd/s", name).unlink(missing_ok=True)

    def _remove_pods(self) -> list[str]:
        """Every pod's containers and sandbox: network torn down (CNI DEL), tasks killed, deleted."""
        c = self.cfg
        ids = ctr(c, "containers", "ls", "-q", check=False).stdout.split()
        for cid in ids:
            info = ctr(c, "containers", "info", cid, check=False)
            try:
                spec = json.loads(info.stdout)
            except ValueError:
                spec = {}
            if spec.get("Labels", {}).get("io.cri-containerd.kind") == "sandbox":
                namespaces = spec.get("Spec", {}).get("linux", {}).get("namespaces", [])
                netns = next((n.get("path", "") for n in namespaces if n.get("type") == "network"), "")
                self._cni_del(cid, netns)
        for cid in ids:
            ctr(c, "tasks", "delete", "--force", cid, check=False)
        for cid in ids:
            ctr(c, "containers", "delete", cid, check=False)
        return ids

    def _cni_del(self, container_id: str, netns: str) -> None:
        """What containerd does when it stops a sandbox: CNI DEL through the chain, last plugin first.

        The CNI library's cache of the ADD supplies the runtime arguments (portmap needs the port
        mappings to remove its rules) and the previous result; the plane's conflist is the fallback.
        """
        c = self.cfg
        results = Path("/var/lib/cni/results")
        conflist, capability_args, prev_result = self.cni_conflist(), {}, None
        try:
            cached = json.loads((results / f"{c.cni_network}-{container_id}-eth0").read_text())
            conflist = json.loads(base64.b64decode(cached["config"]))
            capability_args = cached.get("capabilityArgs") or {}
            prev_result = cached.get("result")
        except (OSError, ValueError, KeyError):
            pass
        for plugin in reversed(conflist["plugins"]):
            conf = {"cniVersion": conflist["cniVersion"], "name": conflist["name"], **plugin}
            runtime = {k: capability_args[k] for k, on in plugin.get("capabilities", {}).items()
                       if on and k in capability_args}
            if runtime:
                conf["runtimeConfig"] = runtime
            if prev_result is not None:
                conf["prevResult"] = prev_result
            env = {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": container_id,
                   "CNI_NETNS": netns if netns and os.path.exists(netns) else "", "CNI_IFNAME": "eth0",
                   "CNI_PATH": str(CNI_BIN_DIR), "PATH": SYSTEM_PATH}
            proc = subprocess.run([str(CNI_BIN_DIR / plugin["type"])], input=json.dumps(conf), env=env,
                                  capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode != 0:
                print(f"CNI DEL of {plugin['type']} for {container_id[:12]} failed: {proc.stdout or proc.stderr}")
        # The CNI library's result cache: this network's and the loopback's ("cni-loopback").
        for cached_file in results.glob(f"*-{container_id}-*"):
            cached_file.unlink(missing_ok=True)

    def _remove_hostport_chains(self) -> None:
        """portmap's shared chains stay after the last DEL; drop them once no pod uses them."""
        nat = self._iptables("-t", "nat", "-S", check=False).stdout.splitlines()
        if "-N CNI-HOSTPORT-DNAT" in nat and not any(r.startswith("-A CNI-HOSTPORT-DNAT ") for r in nat):
            self._remove_chains("nat", ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"))

    def _kill_stray_shims(self) -> None:
        """Containers and shims that outlived containerd (after a crash it could not clean up).

        Container processes are found through their cgroups (/sys/fs/cgroup/*/k8s.io/<id>, ids from
        containerd's task state), shims by the containerd address on their command line.
        """
        c = self.cfg
        tasks_dir = c.containerd_state / "io.containerd.runtime.v2.task" / "k8s.io"
        ids = [d.name for d in tasks_dir.iterdir()] if tasks_dir.is_dir() else []
        victims: set[int] = set()
        for parent in _cgroup_parents():
            for cid in ids:
                try:
                    victims.update(int(p) for p in (parent / cid / "cgroup.procs").read_text().split())
                except (OSError, ValueError):
                    pass
        address = str(c.containerd_socket)
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                argv = cmdline(int(proc.name))
                if argv and "containerd-shim" in os.path.basename(argv[0]) and address in argv:
                    victims.add(int(proc.name))
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def _cleanup_network(self) -> None:
        c = self.cfg
        kube_proxy = binary_path("kube-proxy")
        if os.access(kube_proxy, os.X_OK):
            run([str(kube_proxy), "--cleanup"], check=False, timeout=60)
        for v6 in (False, True):
            for table, chains in KUBELET_CHAINS.items():
                self._remove_chains(table, chains, v6=v6)
        self._remove_chains("filter", (FORWARD_CHAIN,))
        self._remove_hostport_chains()
        for link in (c.cni_bridge, c.node_interface):
            if Path(f"/sys/class/net/{link}").exists():
                run(["ip", "link", "delete", link], check=False)
        # Connection tracking entries of pods and ClusterIPs would otherwise linger until they time out.
        for flag in ("--orig-src", "--orig-dst"):
            run(["conntrack", "-D", flag, ISOLATED_RANGE], check=False)

    def _remove_chains(self, table: str, chains: tuple[str, ...], v6: bool = False) -> None:
        saved = self._iptables("-t", table, "-S", check=False, v6=v6).stdout.splitlines()
        present = [ch for ch in chains if f"-N {ch}" in saved]
        if not present:
            return
        for rule in saved:
            parts = shlex.split(rule)
            if parts[:1] == ["-A"] and any(f"-j {ch}" in rule for ch in present) and parts[1] not in present:
                self._iptables("-t", table, "-D", *parts[1:], check=False, v6=v6)
        for ch in present:
            self._iptables("-t", table, "-F", ch, check=False, v6=v6)
            self._iptables("-t", table, "-X", ch, check=False, v6=v6)

    def _restore_host(self) -> None:
        c = self.cfg
        record = self._record()
        for key, value in record.get("sysctls", {}).items():
            if value is not None and _read_sysctl(key) != value:
                try:
                    _write_sysctl(key, value)
                except PlaneError as err:
                    print(err)
        # Symlinks the kubelet left in /var/log/containers to our pods' logs.
        logs = Path("/var/log/containers")
        if logs.is_dir():
            for link in logs.iterdir():
                if link.is_symlink() and os.readlink(link).startswith(str(c.pod_logs_dir)):
                    link.unlink()
        for d in record.get("dirs", []):
            try:
                Path(d).rmdir()  # only when empty: something else may use it by now
            except OSError:
                pass
        c.node_record.unlink(missing_ok=True)

    # -- queries ----------------------------------------------------------------------------------

    def kube_proxy_healthy(self) -> bool:
        return get_ok(f"http://127.0.0.1:{self.cfg.kube_proxy_healthz_port}/healthz")

    def kubelet_healthy(self) -> bool:
        return get_ok(f"http://127.0.0.1:{self.cfg.kubelet_healthz_port}/healthz")

