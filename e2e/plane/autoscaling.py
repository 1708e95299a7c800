"""Autoscaling in the plane: Prometheus and KEDA (its operator and its external metrics adapter) run as
host processes on 127.0.0.1, so that a KEDA ScaledObject with a Prometheus trigger scales a Deployment
through the real HorizontalPodAutoscaler controller of kube-controller-manager:

    HPA controller -> kube-apiserver's aggregator (front proxy certificate, user in request headers)
      -> APIService v1beta1.external.metrics.k8s.io -> Service keda/keda-metrics-apiserver, ExternalName
         localhost (the aggregator resolves ExternalName Services itself: no endpoints, no DNS of the cluster)
      -> keda-adapter on 127.0.0.1 (authenticates and authorises the proxied user by delegation)
      -> gRPC with mutual TLS -> keda-operator on 127.0.0.1 -> PromQL -> Prometheus on 127.0.0.1

Prometheus finds pods with its own read-only identity (list/watch pods) and scrapes every 5 s, at
<pod IP>:<port>/metrics, of the Running pods labelled app.kubernetes.io/managed-by=llm-operator:
the port named `http` of vLLM pods and the port named `metrics` of LLMGateway pods (Envoy's
statistics, which wake roles scaled to zero; their `http` is Envoy's API listener). Series carry
`namespace`, `pod` and `container`.

Only pods on the real node are scraped. kwok's pod IPs are made up, from a loopback range
(127.16.0.0/16): a scrape of one would reach whatever host process listens on that port on every
address, and record its metrics under the pod's name. Scraping the simulated pods would fail or lie,
so they are not selected at all (by the API server, through a field selector).

Assumptions: the binaries and KEDA's CRDs are cached by e2e/cluster/build.sh; the API server runs with
the front proxy flags (control_plane.py); etcd is empty at each `up`, so objects are created, not
updated. No admission webhooks and no certificate rotation: the plane's CA signs KEDA's certificates.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
from typing import Any

from .binaries import binary_path, find_binary, keda_crd_dir
from .config import KEDA_METRICS_SERVER_USER, KEDA_NAMESPACE, KEDA_OPERATOR_USER, PROMETHEUS_USER, Config
from .processes import Api, get_ok, run

# Start order; `down` stops them before the control plane, whose clients they are.
AUTOSCALING = ("prometheus", "keda-operator", "keda-adapter")

APISERVICE = "v1beta1.external.metrics.k8s.io"
ADAPTER_SERVICE = "keda-metrics-apiserver"
SCRAPE_JOB = "llm-operator-pods"
# Which pods Prometheus scrapes (see the module docstring), and the container port it scrapes.
SCRAPE_POD_LABELS = "app.kubernetes.io/managed-by=llm-operator"
# (app.kubernetes.io/name of the pod, container port name) pairs scraped, as "name;port".
SCRAPE_PORTS = "vllm;http|llm-gateway;metrics"

# -------------------------------------------------------------------------- files and command lines


def prometheus_config(cfg: Config) -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "5s", "scrape_timeout": "4s", "evaluation_interval": "5s"},
        "scrape_configs": [{
            "job_name": SCRAPE_JOB,
            "metrics_path": "/metrics",
            "kubernetes_sd_configs": [{
                "role": "pod",
                "kubeconfig_file": str(cfg.component_kubeconfig("prometheus")),
                # Filtered by the API server: only these pods are listed and watched at all.
                "selectors": [{"role": "pod", "label": SCRAPE_POD_LABELS,
                               "field": f"spec.nodeName={cfg.node_name},status.phase=Running"}],
            }],
            # The pod role makes one target per container port, at <pod IP>:<port>.
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                                   "__meta_kubernetes_pod_container_port_name"],
                 "separator": ";", "regex": SCRAPE_PORTS, "action": "keep"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                # As the chart's PodMonitor (podTargetLabels) does: what a role's ScaledObject selects by.
                {"source_labels": ["__meta_kubernetes_pod_label_llmops_dev_deployment"],
                 "target_label": "llmops_dev_deployment"},
                {"source_labels": ["__meta_kubernetes_pod_label_llmops_dev_role"], "target_label": "llmops_dev_role"},
            ],
        }],
    }


def write_files(cfg: Config) -> None:
    """Prometheus's configuration, and KEDA's cert dir in the layout KEDA reads (ca.crt, tls.crt, tls.key)."""
    # JSON is YAML: no YAML library needed (`make cluster-down` runs outside the venv).
    cfg.prometheus_config.write_text(json.dumps(prometheus_config(cfg), indent=2) + "\n")
    certs = cfg.keda_cert_dir
    certs.mkdir(parents=True, exist_ok=True)
    for source, target in (("ca.crt", "ca.crt"), ("keda-serving.crt", "tls.crt"), ("keda-serving.key", "tls.key")):
        shutil.copyfile(cfg.pki / source, certs / target)
    (certs / "tls.key").chmod(0o600)


def prometheus_argv(cfg: Config) -> list[str]:
    return [str(binary_path("prometheus")),
            f"--config.file={cfg.prometheus_config}", f"--storage.tsdb.path={cfg.prometheus_data}",
            f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}",
            # Throw-away data (removed at each `up`), like etcd's.
            "--storage.tsdb.retention.time=1d", "--log.level=info"]


def _keda_env(cfg: Config, who: str) -> dict[str, str]:
    # controller-runtime reads KUBECONFIG; the namespace stands in for the pod's own (KEDA's Secrets
    # and cluster-scoped TriggerAuthentications' Secrets live there). WATCH_NAMESPACE empty: all.
    return {"KUBECONFIG": str(cfg.component_kubeconfig(who)), "WATCH_NAMESPACE": "",
            "POD_NAMESPACE": KEDA_NAMESPACE, "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE}


_ZAP = ["--zap-log-level=info", "--zap-encoder=console", "--zap-time-encoding=rfc3339"]


def keda_operator_argv(cfg: Config) -> list[str]:
    return [str(binary_path("keda-operator")),
            # Every listener on loopback (each defaults to all addresses).
            f"--metrics-bind-address=127.0.0.1:{cfg.keda_operator_metrics_port}",
            f"--health-probe-bind-address=127.0.0.1:{cfg.keda_operator_health_port}",
            f"--metrics-service-bind-address=127.0.0.1:{cfg.keda_grpc_port}",
            # The plane's certificates, never rotated; so nothing to patch into webhooks or APIServices.
            "--enable-cert-rotation=false", f"--cert-dir={cfg.keda_cert_dir}",
            "--enable-webhook-patching=false", "--enable-apiservice-patching=false",
            "--leader-elect=false", "--k8s-cluster-name=llm-operator-e2e", *_ZAP]


def keda_operator_env(cfg: Config) -> dict[str, str]:
    return _keda_env(cfg, "keda-operator")


def keda_adapter_argv(cfg: Config) -> list[str]:
    kubeconfig = cfg.component_kubeconfig("keda-metrics-server")
    certs = cfg.keda_cert_dir
    return [str(binary_path("keda-adapter")),
            "--bind-address=127.0.0.1", f"--secure-port={cfg.keda_adapter_port}",
            f"--tls-cert-file={certs / 'tls.crt'}", f"--tls-private-key-file={certs / 'tls.key'}",
            # Also where its gRPC client finds ca.crt, tls.crt and tls.key for the operator's metrics service.
            f"--cert-dir={certs}",
            f"--metrics-service-address=127.0.0.1:{cfg.keda_grpc_port}",
            # Delegated authentication (TokenReview, the front proxy CA from kube-system's
            # extension-apiserver-authentication ConfigMap) and authorisation (SubjectAccessReview).
            f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            # Its own /metrics: loopback too, by build.sh's patch (upstream binds every address).
            f"--port={cfg.keda_adapter_metrics_port}", *_ZAP]


def keda_adapter_env(cfg: Config) -> dict[str, str]:
    return _keda_env(cfg, "keda-metrics-server")


ARGV = {"prometheus": prometheus_argv, "keda-operator": keda_operator_argv, "keda-adapter": keda_adapter_argv}
ENV = {"keda-operator": keda_operator_env, "keda-adapter": keda_adapter_env}  # Prometheus needs none


def orphan_markers(cfg: Config) -> dict[str, str]:
    """An argument each process's command line carries that names this plane's state dir."""
    return {"prometheus": f"--config.file={cfg.prometheus_config}",
            "keda-operator": f"--cert-dir={cfg.keda_cert_dir}",
            "keda-adapter": f"--cert-dir={cfg.keda_cert_dir}"}


def ports(cfg: Config) -> dict[str, int]:
    return {"prometheus": cfg.prometheus_port, "keda-adapter": cfg.keda_adapter_port,
            "keda-adapter metrics": cfg.keda_adapter_metrics_port, "keda-operator gRPC": cfg.keda_grpc_port,
            "keda-operator metrics": cfg.keda_operator_metrics_port,
            "keda-operator health": cfg.keda_operator_health_port}

# -------------------------------------------------------------------------- API objects


def _service_account(user: str) -> dict[str, str]:
    """The RBAC subject of a `system:serviceaccount:<namespace>:<name>` user."""
    _, _, namespace, name = user.split(":")
    return {"kind": "ServiceAccount", "name": name, "namespace": namespace}


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, list[str]]:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


_ALL_WRITES = ["create", "delete", "get", "list", "patch", "update", "watch"]
_READ_PATCH = ["get", "list", "patch", "update", "watch"]


def keda_operator_rules() -> list[dict[str, list[str]]]:
    """KEDA's Helm chart's `keda-operator` ClusterRole, narrowed: scale targets are Deployments and
    StatefulSets only (the chart's default allows every kind's /scale), Secrets only in KEDA's own
    namespace (a Role, below), no APIService or webhook patching (no certificate rotation here)."""
    return [
        _rule([""], ["configmaps", "configmaps/status", "endpoints", "limitranges", "pods", "services",
                     "serviceaccounts"], ["get", "list", "watch"]),
        _rule(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
        _rule(["", "events.k8s.io"], ["events"], ["create", "patch"]),
        _rule(["apps"], ["deployments/scale", "statefulsets/scale"], _READ_PATCH),
        _rule(["apps"], ["deployments", "statefulsets"], ["get", "list", "watch"]),
        _rule(["autoscaling"], ["horizontalpodautoscalers"], _ALL_WRITES),
        _rule(["batch"], ["jobs"], _ALL_WRITES),
        _rule(["eventing.keda.sh"], ["cloudeventsources", "cloudeventsources/status", "clustercloudeventsources",
                                     "clustercloudeventsources/status"], _READ_PATCH),
        _rule(["keda.sh"], ["scaledjobs", "scaledjobs/finalizers", "scaledjobs/status", "scaledobjects",
                            "scaledobjects/finalizers", "scaledobjects/status", "triggerauthentications",
                            "triggerauthentications/status", "clustertriggerauthentications",
                            "clustertriggerauthentications/status"], _READ_PATCH),
    ]


def _rbac(kind: str, name: str, namespace: str | None, **body: Any) -> tuple[str, dict[str, Any]]:
    """(collection path, object) of an RBAC object; cluster-scoped when `namespace` is None."""
    scope = f"namespaces/{namespace}/" if namespace else ""
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return (f"/apis/rbac.authorization.k8s.io/v1/{scope}{kind.lower()}s",
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, **body})


def _role(kind: str, name: str, rules: list[dict[str, list[str]]],
          namespace: str | None = None) -> tuple[str, dict[str, Any]]:
    return _rbac(kind, name, namespace, rules=rules)


def _binding(kind: str, name: str, role_kind: str, role: str, subject: dict[str, str],
             namespace: str | None = None) -> tuple[str, dict[str, Any]]:
    return _rbac(kind, name, namespace, subjects=[subject],
                 roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role})


def api_objects(cfg: Config) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) of KEDA's namespace, every identity's RBAC, and the adapter's Service;
    the APIService comes once the adapter serves (apiservice())."""
    operator, metrics_server = _service_account(KEDA_OPERATOR_USER), _service_account(KEDA_METRICS_SERVER_USER)
    hpa_controller = {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    return [
        ("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KEDA_NAMESPACE}}),
        # The operator.
        _role("ClusterRole", "keda-operator", keda_operator_rules()),
        _binding("ClusterRoleBinding", "keda-operator", "ClusterRole", "keda-operator", operator),
        # Secrets, read in every namespace, as KEDA's chart grants by default: KEDA resolves the
        # environment of the workload it scales, and a vLLM pod's API key comes from a Secret.
        # Confined to KEDA's namespace, its informer never synced and no HPA was ever created.
        _role("ClusterRole", "keda-operator-secrets", [_rule([""], ["secrets"], ["get", "list", "watch"])]),
        _binding("ClusterRoleBinding", "keda-operator-secrets", "ClusterRole", "keda-operator-secrets", operator),
        # The adapter: an aggregated API server checks callers through the API server (as the chart grants).
        _binding("ClusterRoleBinding", "keda-system-auth-delegator", "ClusterRole", "system:auth-delegator",
                 metrics_server),
        _binding("RoleBinding", "keda-auth-reader", "Role", "extension-apiserver-authentication-reader",
                 metrics_server, "kube-system"),
        # The HPA controller (kube-controller-manager runs it as this ServiceAccount) reads external metrics.
        _role("ClusterRole", "keda-external-metrics-reader", [_rule(["external.metrics.k8s.io"], ["*"], ["*"])]),
        _binding("ClusterRoleBinding", "keda-hpa-controller-external-metrics", "ClusterRole",
                 "keda-external-metrics-reader", hpa_controller),
        # Prometheus's service discovery: pods, read-only.
        _role("ClusterRole", "llmops-plane:prometheus", [_rule([""], ["pods"], ["get", "list", "watch"])]),
        _binding("ClusterRoleBinding", "llmops-plane:prometheus", "ClusterRole", "llmops-plane:prometheus",
                 {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": PROMETHEUS_USER}),
        # The APIService's Service, resolved by the aggregator to https://localhost:<APIService port>.
        (f"/api/v1/namespaces/{KEDA_NAMESPACE}/services", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": ADAPTER_SERVICE, "namespace": KEDA_NAMESPACE},
            "spec": {"type": "ExternalName", "externalName": "localhost"}}),
    ]


def apiservice(cfg: Config) -> tuple[str, dict[str, Any]]:
    """The external metrics APIService. The aggregator checks the adapter's certificate against the
    plane's CA (caBundle) for the name keda-metrics-apiserver.keda.svc, which the certificate carries."""
    return "/apis/apiregistration.k8s.io/v1/apiservices", {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
        "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1",
                 "groupPriorityMinimum": 100, "versionPriority": 100,
                 "service": {"namespace": KEDA_NAMESPACE, "name": ADAPTER_SERVICE, "port": cfg.keda_adapter_port},
                 "caBundle": base64.b64encode((cfg.pki / "ca.crt").read_bytes()).decode()}}


def crd_names() -> list[str]:
    """Names of KEDA's CRDs, from their files (<group>_<plural>.yaml)."""
    names = []
    for path in sorted(keda_crd_dir().glob("*.yaml")):
        group, plural = path.stem.split("_", 1)
        names.append(f"{plural}.{group}")
    return names


def apply_crds(cfg: Config) -> None:
    """Every KEDA CRD: the operator watches all of their kinds and exits when one is missing.
    kubectl reads their YAML (the plane's code avoids a YAML library); server-side apply, because
    the biggest exceed the size of client-side apply's annotation."""
    run([str(find_binary("kubectl")), f"--kubeconfig={cfg.kubeconfig}", "apply", "--server-side",
         "--field-manager=llmops-plane", "-f", str(keda_crd_dir())], timeout=60)

# -------------------------------------------------------------------------- readiness


def _condition(obj: dict[str, Any] | None, kind: str) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def crds_established(api: Api) -> bool:
    for name in crd_names():
        status, body = api.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        if status != 200 or not _condition(body, "Established"):
            return False
    return True


def apiservice_available(api: Api) -> bool:
    status, body = api.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}")
    return status == 200 and _condition(body, "Available")


def prometheus_ready(cfg: Config) -> bool:
    return get_ok(f"{cfg.prometheus_url}/-/ready")


def adapter_serving(cfg: Config) -> bool:
    """The adapter answers /readyz over TLS with the certificate the aggregator will check."""
    ctx = ssl.create_default_context(cafile=str(cfg.pki / "ca.crt"))
    return get_ok(f"https://127.0.0.1:{cfg.keda_adapter_port}/readyz", ctx)
