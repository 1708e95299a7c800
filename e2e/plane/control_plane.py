"""Command lines of etcd, the API server, controller manager, scheduler and kwok, and the kwok
GPU nodes' manifests. All of it listens on 127.0.0.1 only."""

from __future__ import annotations

from typing import Any

from .binaries import CLUSTER_DIR, binary_path
from .config import FRONT_PROXY_CLIENT, GPU_RESOURCE, KWOK_NODE_ANNOTATION, Config

STAGES_FILE = CLUSTER_DIR / "kwok-stages.yaml"
# Start order of the control plane; stop runs in reverse so nothing loses its API server while it stops.
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

# Metadata level for everything, one event per request (ResponseComplete only), so tests
# can count the operator's writes by verb without double counting RequestReceived.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  - level: Metadata
"""


def etcd_argv(c: Config) -> list[str]:
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


def apiserver_argv(c: Config) -> list[str]:
    p = c.pki
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
            # On by default in OpenShift: setting blockOwnerDeletion needs update on the owner's
            # finalizers, which the chart's RBAC must grant (tested with the chart's ServiceAccount).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            # How the API server reaches a kubelet (logs, exec): its own client certificate, and the
            # kubelet's serving certificate checked against the plane's CA, at the node's InternalIP.
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            # The aggregation layer (KEDA's external metrics API): the API server proxies requests with
            # the front proxy certificate and the authenticated user in these headers; aggregated
            # servers read the same settings from kube-system/extension-apiserver-authentication.
            f"--requestheader-client-ca-file={p / 'front-proxy-ca.crt'}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={p / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={p / 'front-proxy-client.key'}",
            # The built-in `kubernetes` Endpoints would point at 127.0.0.1, which Endpoints
            # validation rejects; no pod here needs to call the API server.
            "--endpoint-reconciler-type=none",
            f"--audit-policy-file={c.state_dir / 'audit-policy.yaml'}",
            f"--audit-log-path={c.audit_log}", "--audit-log-maxsize=500", "--audit-log-maxbackup=1",
            "--audit-log-format=json",
            f"--cert-dir={c.state_dir / 'apiserver-certs'}",
            "--profiling=false", "--v=1"]


def controller_manager_argv(c: Config) -> list[str]:
    p = c.pki
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
            # The HPA controller syncs every 5 s instead of 15 s, so autoscaling tests react within seconds.
            "--horizontal-pod-autoscaler-sync-period=5s",
            # Each controller's client may send 100 requests a second (default 20): at 1,000
            # Deployments the Deployment controller's status writes, not the pods, set the pace.
            "--kube-api-qps=100", "--kube-api-burst=200",
            "--profiling=false", "--v=1"]


def scheduler_argv(c: Config) -> list[str]:
    kc = c.component_kubeconfig("scheduler")
    return [str(binary_path("kube-scheduler")),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            "--bind-address=127.0.0.1", f"--secure-port={c.scheduler_port}",
            f"--cert-dir={c.state_dir / 'scheduler-certs'}",
            "--leader-elect=false", "--profiling=false", "--v=1"]


def kwok_argv(c: Config) -> list[str]:
    key, value = KWOK_NODE_ANNOTATION
    return [str(binary_path("kwok")),
            f"--kubeconfig={c.component_kubeconfig('kwok')}", f"--config={STAGES_FILE}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={key}={value}",
            "--node-ip=127.0.0.1", f"--cidr={c.pod_cidr}",
            f"--server-address=127.0.0.1:{c.kwok_port}", "--node-lease-duration-seconds=40"]


ARGV = {
    "etcd": etcd_argv,
    "kube-apiserver": apiserver_argv,
    "kube-controller-manager": controller_manager_argv,
    "kube-scheduler": scheduler_argv,
    "kwok": kwok_argv,
}


def orphan_markers(c: Config) -> dict[str, str]:
    """An argument each component's command line carries that names this plane's state dir."""
    return {"etcd": f"--data-dir={c.state_dir / 'etcd-data'}",
            "kube-apiserver": f"--cert-dir={c.state_dir / 'apiserver-certs'}",
            "kube-controller-manager": f"--cert-dir={c.state_dir / 'controller-manager-certs'}",
            "kube-scheduler": f"--cert-dir={c.state_dir / 'scheduler-certs'}",
            "kwok": f"--kubeconfig={c.component_kubeconfig('kwok')}"}


def kwok_node_manifest(c: Config, index: int) -> dict[str, Any]:
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
