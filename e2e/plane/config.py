"""The plane's configuration (ports, address ranges, node shapes, paths) and its public constants."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from .binaries import E2E_DIR, cache_dir

# Annotation kwok is told to manage; nodes without it are left alone.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
GPU_RESOURCE = "nvidia.com/gpu"

# The real node: a label to select it and a taint that keeps every pod off it unless the pod
# tolerates it, so the scheduling tests keep landing on the kwok GPU nodes.
REAL_NODE_LABEL = ("llmops.dev/real-node", "true")
REAL_NODE_TAINT = {"key": "llmops.dev/real-node", "value": "true", "effect": "NoSchedule"}
# Pod spec fragments that place a pod on the real node.
REAL_NODE_SELECTOR = {REAL_NODE_LABEL[0]: REAL_NODE_LABEL[1]}
REAL_NODE_TOLERATIONS = [{"key": REAL_NODE_TAINT["key"], "operator": "Equal", "value": REAL_NODE_TAINT["value"],
                          "effect": REAL_NODE_TAINT["effect"]}]

# Static local PersistentVolumes on the real node are of this class (no provisioner, bound when
# the first pod using the claim is scheduled).
LOCAL_STORAGE_CLASS = "local-storage"

# Identities of the autoscaling components towards the API server (client certificates, see pki.py).
# KEDA's are the ServiceAccounts its Helm chart runs under, so RBAC written for the chart's
# subjects reads the same here; no ServiceAccount object exists (nothing runs in a pod).
KEDA_NAMESPACE = "keda"
KEDA_OPERATOR_USER = f"system:serviceaccount:{KEDA_NAMESPACE}:keda-operator"
KEDA_METRICS_SERVER_USER = f"system:serviceaccount:{KEDA_NAMESPACE}:keda-metrics-server"
PROMETHEUS_USER = "llmops-plane:prometheus"
# The front proxy identity the API server presents to aggregated API servers (KEDA's adapter),
# and the only name they accept request headers from.
FRONT_PROXY_CLIENT = "front-proxy-client"

# Every address the real node uses lies in 198.18.0.0/15 (RFC 2544, benchmarking): no real network
# uses it, and the plane's iptables chain drops anything from the pod range that would leave it.
ISOLATED_RANGE = "198.18.0.0/15"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Config:
    """Ports, ranges and node shapes; every field can be set from the environment (see from_env)."""

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
    # ClusterIPs; kube-proxy on the real node makes them work from the host and from pods.
    service_cidr: str = "198.19.0.0/16"

    # The real node (kubelet, kube-proxy, containerd): LLMOPS_REAL_NODE=0 leaves it out.
    real_node: bool = True
    node_name: str = "real-node-0"
    # The node's InternalIP, on an interface the plane creates (the kubelet refuses loopback).
    # Host-side servers that pods must reach (e.g. a model hub) listen on it.
    node_ip: str = "198.18.255.1"
    node_interface: str = "llmops0"
    # Pod IPs of the real node (CNI bridge, host-local IPAM); the first address is the bridge's.
    node_pod_cidr: str = "198.18.0.0/24"
    cni_bridge: str = "llmops-cni0"
    kubelet_port: int = 16250
    kubelet_healthz_port: int = 16248
    kube_proxy_healthz_port: int = 16256
    kube_proxy_metrics_port: int = 16249
    local_volumes: int = 8
    local_volume_size: str = "50Gi"

    # Prometheus and KEDA (operator + external metrics adapter) as host processes on loopback:
    # LLMOPS_AUTOSCALING=0 leaves them out.
    autoscaling: bool = True
    prometheus_port: int = 16090
    keda_adapter_port: int = 16444          # external.metrics.k8s.io (HTTPS), behind the APIService
    keda_adapter_metrics_port: int = 16445
    keda_grpc_port: int = 16666             # the operator's metrics service, which the adapter asks
    keda_operator_metrics_port: int = 16280
    keda_operator_health_port: int = 16281

    @classmethod
    def from_env(cls) -> Config:
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
            real_node=_env_bool("LLMOPS_REAL_NODE", d.real_node),
            kubelet_port=_env_int("LLMOPS_KUBELET_PORT", d.kubelet_port),
            kubelet_healthz_port=_env_int("LLMOPS_KUBELET_HEALTHZ_PORT", d.kubelet_healthz_port),
            kube_proxy_healthz_port=_env_int("LLMOPS_KUBE_PROXY_HEALTHZ_PORT", d.kube_proxy_healthz_port),
            kube_proxy_metrics_port=_env_int("LLMOPS_KUBE_PROXY_METRICS_PORT", d.kube_proxy_metrics_port),
            autoscaling=_env_bool("LLMOPS_AUTOSCALING", d.autoscaling),
            prometheus_port=_env_int("LLMOPS_PROMETHEUS_PORT", d.prometheus_port),
            keda_adapter_port=_env_int("LLMOPS_KEDA_ADAPTER_PORT", d.keda_adapter_port),
            keda_adapter_metrics_port=_env_int("LLMOPS_KEDA_ADAPTER_METRICS_PORT", d.keda_adapter_metrics_port),
            keda_grpc_port=_env_int("LLMOPS_KEDA_GRPC_PORT", d.keda_grpc_port),
            keda_operator_metrics_port=_env_int("LLMOPS_KEDA_OPERATOR_METRICS_PORT", d.keda_operator_metrics_port),
            keda_operator_health_port=_env_int("LLMOPS_KEDA_OPERATOR_HEALTH_PORT", d.keda_operator_health_port),
        )

    # -- addresses -----------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def prometheus_url(self) -> str:
        """Where Prometheus answers queries: the tests, the operator's --prometheus-url and the
        ScaledObjects' serverAddress (KEDA runs on the host too) all use this one URL."""
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def kubernetes_service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP: the first address of the Service range."""
        return str(ipaddress.ip_network(self.service_cidr)[1])

    @property
    def pod_gateway(self) -> str:
        """The CNI bridge's address, the pods' default gateway."""
        return str(ipaddress.ip_network(self.node_pod_cidr)[1])

    def check_ranges(self) -> None:
        """Raise ValueError unless every real-node range lies inside ISOLATED_RANGE, apart."""
        isolated = ipaddress.ip_network(ISOLATED_RANGE)
        pods = ipaddress.ip_network(self.node_pod_cidr)
        services = ipaddress.ip_network(self.service_cidr)
        node = ipaddress.ip_address(self.node_ip)
        for what, net in (("node pod range", pods), ("Service range", services)):
            if not net.subnet_of(isolated):
                raise ValueError(f"The {what} {net} must lie inside {isolated}")
        if node not in isolated:
            raise ValueError(f"The node IP {node} must lie inside {isolated}")
        if pods.overlaps(services) or node in pods or node in services:
            raise ValueError(f"The pod range {pods}, Service range {services} and node IP {node} must not overlap")

    # -- paths in the state dir ----------------------------------------------------------

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
    def prometheus_config(self) -> Path:
        return self.state_dir / "prometheus.yml"

    @property
    def prometheus_data(self) -> Path:
        return self.state_dir / "prometheus-data"

    @property
    def keda_cert_dir(self) -> Path:
        """ca.crt, tls.crt and tls.key as KEDA reads them (its --cert-dir): the operator's gRPC server,
        the adapter's gRPC client and HTTPS server share them, as in KEDA's own deployment."""
        return self.state_dir / "keda-certs"

    def component_kubeconfig(self, who: str) -> Path:
        return self.state_dir / "kubeconfigs" / f"{who}.kubeconfig"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    # The real node's runtime state: everything mounted or created while it runs is below node_dir,
    # which `down` unmounts and removes.
    @property
    def node_dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def containerd_state(self) -> Path:
        return self.node_dir / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd_state / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.node_dir / "containerd.toml"

    @property
    def kubelet_dir(self) -> Path:
        return self.node_dir / "kubelet"

    @property
    def pod_logs_dir(self) -> Path:
        """The real node's container logs (kubelet podLogsDir): kept after `down`, like the others."""
        return self.logs_dir / "pods"

    @property
    def cni_conf_dir(self) -> Path:
        return self.node_dir / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.node_dir / "cni" / "ipam"

    @property
    def volumes_dir(self) -> Path:
        """Directories behind the static local PersistentVolumes (recreated empty at each `up`)."""
        return self.state_dir / "volumes"

    @property
    def node_record(self) -> Path:
        """What the node changed on the host (sysctls, directories it created), so `down` can undo it."""
        return self.state_dir / "node-host-changes.json"

    # Outside the state dir: containerd's root (images and their snapshots) survives `down`,
    # because the images are imported from archives that take minutes for the big ones.
    @property
    def containerd_root(self) -> Path:
        return cache_dir() / "containerd"

    @property
    def cni_network(self) -> str:
        return "llmops-pods"
