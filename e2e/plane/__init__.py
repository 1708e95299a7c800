"""A real Kubernetes cluster on this machine, for the e2e tests and `make demo`.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (simulated GPU nodes and
pod lifecycles) run as plain processes on 127.0.0.1 from the binaries e2e/cluster/build.sh caches.
A real node joins them (default; LLMOPS_REAL_NODE=0 leaves it out): Debian's containerd, the
kubelet and kube-proxy, where containers really run, with images imported from archives. There is
no Docker here, so no kind; and no Python stand-in for the API server, because the operator's
correctness depends on the real one (server-side apply, CEL, garbage collection, the scheduler).

    python -m plane up       (with e2e/ on sys.path; the Makefile's cluster-up) start, or no-op when healthy
    python -m plane down     stop every process by PID, undo the node's host changes
    python -m plane status   show each component and the nodes

State lives in e2e/.cluster/ (ignored by git): certificates, kubeconfigs, etcd data, the audit
log, component logs, the PID file and the node's runtime state. Each `up` starts from an empty
etcd and empty local volumes so that test runs never see each other's objects. containerd's image
store is kept under the cache dir (${LLMOPS_CACHE_DIR:-~/.cache/llm-operator}/containerd).

Prometheus and KEDA (operator and external metrics adapter) run beside them as host processes on
127.0.0.1 (default; LLMOPS_AUTOSCALING=0 leaves them out): a ScaledObject with a Prometheus trigger
scales a Deployment through the real HPA controller. Prometheus scrapes the operator's vLLM pods on
the real node; see autoscaling.py.

For other code (all on `Plane`, its `cfg: Config`, or module constants):
    Plane().up() / .down() / .healthy()      start (no-op when healthy), stop, check
    Plane.node_name, Plane.node_ip           "real-node-0", "198.18.255.1": the real node and its InternalIP;
                                             host-side servers that pods must reach listen on node_ip
    Plane.service_cidr                       "198.19.0.0/16" (ClusterIPs; cfg.node_pod_cidr "198.18.0.0/24")
    Plane.prometheus_url                     "http://127.0.0.1:16090" (LLMOPS_PROMETHEUS_PORT): for tests, the
                                             operator's --prometheus-url and ScaledObjects' serverAddress
    Plane.import_image(archive, name)        OCI archive -> containerd (k8s.io), skipped when name has the
                                             archive's digest already; True when it imported
    Plane.image_digest(name)                 what containerd holds for name, or None
    REAL_NODE_SELECTOR, REAL_NODE_TOLERATIONS  pod spec fragments that put a pod on the real node
    REAL_NODE_LABEL, REAL_NODE_TAINT         ("llmops.dev/real-node", "true"), the same key as NoSchedule taint
    LOCAL_STORAGE_CLASS                      "local-storage": static local PVs on the real node
    KWOK_NODE_ANNOTATION, GPU_RESOURCE       the simulated GPU nodes
    find_binary(name), binary_path(name)     cached kubectl, helm, ...

Modules: binaries (cached binaries, system tools), config (Config, constants), pki, processes,
control_plane (component command lines, kwok nodes), autoscaling (Prometheus, KEDA), node (the real
node), images (pause and test images, import into containerd), lifecycle (Plane).
"""

from .autoscaling import AUTOSCALING
from .binaries import (
                       BINARIES,
                       BUILD_SCRIPT,
                       E2E_DIR,
                       REPO_DIR,
                       binary_path,
                       cache_dir,
                       find_binary,
                       keda_crd_dir,
                       missing_binaries,
                       missing_node_tools,
                       versions,
)
from .config import (
                       GPU_RESOURCE,
                       ISOLATED_RANGE,
                       KWOK_NODE_ANNOTATION,
                       LOCAL_STORAGE_CLASS,
                       REAL_NODE_LABEL,
                       REAL_NODE_SELECTOR,
                       REAL_NODE_TAINT,
                       REAL_NODE_TOLERATIONS,
                       Config,
)
from .control_plane import CONTROL_PLANE
from .errors import PlaneError
from .images import image_digest, import_image, pause_image, test_server_image
from .lifecycle import Plane
from .node import FORWARD_CHAIN, NODE_COMPONENTS, RealNode
from .pki import ensure_pki, write_kubeconfig
from .processes import Api, tail

# Every component the plane may run.
COMPONENTS = CONTROL_PLANE + AUTOSCALING + NODE_COMPONENTS

__all__ = [
    "AUTOSCALING", "Api", "BINARIES", "BUILD_SCRIPT", "COMPONENTS", "CONTROL_PLANE", "Config", "E2E_DIR",
    "FORWARD_CHAIN", "GPU_RESOURCE", "ISOLATED_RANGE", "KWOK_NODE_ANNOTATION", "LOCAL_STORAGE_CLASS",
    "NODE_COMPONENTS", "Plane", "PlaneError", "REAL_NODE_LABEL", "REAL_NODE_SELECTOR", "REAL_NODE_TAINT",
    "REAL_NODE_TOLERATIONS", "REPO_DIR", "RealNode", "binary_path", "cache_dir", "ensure_pki", "find_binary",
    "image_digest", "import_image", "keda_crd_dir", "missing_binaries", "missing_node_tools", "pause_image", "tail",
    "test_server_image", "versions", "write_kubeconfig",
]
