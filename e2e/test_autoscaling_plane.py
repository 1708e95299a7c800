"""The plane's autoscaling stack (e2e/plane/autoscaling.py): Prometheus, KEDA's external metrics API
behind the aggregation layer, and a real ScaledObject scaling a Deployment through the real HPA.

These test the plane, not the operator: if one fails, the operator's autoscaling tests would fail for
the plane's sake. Times are printed (run with -s to see them).

Outside CI, skips when the plane runs without Prometheus and KEDA (LLMOPS_AUTOSCALING=0); the scrape
test also needs the real node (see conftest.real_node). With CI=true both fail instead.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
import urllib.parse
import urllib.request
from pathlib import Path

import plane
from operator_process import eventually

# Never through a proxy from the environment: every address here is on this machine.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
MANAGED_BY = {"app.kubernetes.io/managed-by": "llm-operator", "app.kubernetes.io/name": "vllm"}  # scraped like a vLLM pod


def _prometheus(p: plane.Plane, path: str, **params: str) -> dict:
    url = f"{p.prometheus_url}{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with _HTTP.open(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def _query(p: plane.Plane, promql: str) -> list[dict]:
    return _prometheus(p, "/api/v1/query", query=promql)["result"]


def _since(start: float) -> str:
    return f"{time.monotonic() - start:.1f} s"


# -------------------------------------------------------------------------- listeners


def _listening_addresses(pid: int) -> set[str]:
    """host:port of every TCP socket `pid` listens on (from /proc: no ss or lsof needed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, family in (("tcp", 4), ("tcp6", 6)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            raw, port = local.split(":")
            packed = bytes.fromhex(raw)
            # /proc prints the address as 32-bit words in host (little-endian) order.
            packed = b"".join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
            found.add(f"{ipaddress.ip_address(packed) if family == 4 else ipaddress.IPv6Address(packed)}:"
                      f"{int(port, 16)}")
    return found


def test_autoscaling_processes_listen_on_loopback_only(cluster, autoscaling):
    pids = json.loads(autoscaling.cfg.pids_file.read_text())
    for name in plane.AUTOSCALING:
        addresses = _listening_addresses(pids[name]["pid"])
        print(f"{name} listens on {', '.join(sorted(addresses))}")
        assert addresses, f"{name} listens on nothing"
        assert all(a.startswith("127.0.0.1:") for a in addresses), (name, addresses)


# -------------------------------------------------------------------------- Prometheus


def _metrics_pod(name: str, image: str, real: bool) -> dict:
    """A test server pod that Prometheus should scrape: the operator's label, a port named http."""
    placement = ({"nodeSelector": plane.REAL_NODE_SELECTOR, "tolerations": plane.REAL_NODE_TOLERATIONS} if real else
                 {"nodeSelector": {"type": "kwok"},
                  "tolerations": [{"key": plane.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]})
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {**MANAGED_BY, "app.kubernetes.io/component": "e2e-metrics"}},
        "spec": {
            **placement,
            "automountServiceAccountToken": False,
            "containers": [{
                "name": "server", "image": image, "imagePullPolicy": "Never",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            }],
        },
    }


def test_prometheus_scrapes_operator_pods_on_real_node(cluster, autoscaling, real_node, namespace):
    archive, image = plane.test_server_image()
    real_node.import_image(archive, image)
    start = time.monotonic()
    pods = {"items": [_metrics_pod("real", image, real=True), _metrics_pod("simulated", image, real=False)]}
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", **pods}))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/real", "pod/simulated", "--timeout=90s")
    print(f"pods Ready after {_since(start)}")

    selector = f'namespace="{namespace}",pod="real",container="server"'
    up = eventually(lambda: [r for r in _query(autoscaling, f"up{{{selector}}}") if r["value"][1] == "1"],
                    timeout=60, interval=1, what="up == 1 for the real node's pod")
    print(f"Prometheus scraped {up[0]['metric']['instance']} after {_since(start)}")
    served = _query(autoscaling, f"testserver_requests_total{{{selector}}}")
    assert served and served[0]["metric"]["job"] == plane.autoscaling.SCRAPE_JOB, served

    # The kwok pod has the same labels but a made-up address: never a target (see autoscaling.py).
    targets = _prometheus(autoscaling, "/api/v1/targets", state="active")["activeTargets"]
    ours = {t["labels"]["pod"] for t in targets if t["labels"].get("namespace") == namespace}
    assert ours == {"real"}, targets


# -------------------------------------------------------------------------- external metrics API


def test_external_metrics_api_answers_through_the_aggregator(cluster, autoscaling):
    api = json.loads(cluster.kubectl("get", "apiservice", plane.autoscaling.APISERVICE, "-o", "json").stdout)
    available = next(c for c in api["status"]["conditions"] if c["type"] == "Available")
    assert available["status"] == "True", available
    start = time.monotonic()
    discovery = json.loads(cluster.kubectl("get", "--raw", "/apis/external.metrics.k8s.io/v1beta1").stdout)
    print(f"external.metrics.k8s.io discovery answered in {_since(start)}")
    assert discovery["kind"] == "APIResourceList", discovery
    assert discovery["groupVersion"] == "external.metrics.k8s.io/v1beta1", discovery


# -------------------------------------------------------------------------- ScaledObject -> HPA


def _kwok_deployment(name: str) -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                # On the simulated nodes (kwok runs the pods; the image is never pulled), no GPU asked.
                "nodeSelector": {"type": "kwok"},
                "tolerations": [{"key": plane.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}],
            }}},
    }


def _scaled_object(name: str, prometheus_url: str, query: str) -> dict:
    return {
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"name": name},
            "minReplicaCount": 1, "maxReplicaCount": 5, "pollingInterval": 5,
            # The HPA's default scale-down window is 5 minutes.
            "advanced": {"horizontalPodAutoscalerConfig": {
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}},
            # AverageValue (the default): replicas = ceil(query / threshold).
            "triggers": [{"type": "prometheus",
                          "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": "1"}}],
        },
    }


def _replicas(cluster, namespace: str, name: str) -> tuple[int, int]:
    deployment = json.loads(cluster.kubectl("-n", namespace, "get", "deployment", name, "-o", "json").stdout)
    return deployment["spec"]["replicas"], deployment["status"].get("readyReplicas", 0)


def test_scaled_object_scales_a_deployment_through_the_hpa(cluster, autoscaling, namespace):
    name = "web"
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(_kwok_deployment(name)))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Available", f"deployment/{name}", "--timeout=90s")

    start = time.monotonic()
    cluster.kubectl("-n", namespace, "apply", "-f", "-",
                    input=json.dumps(_scaled_object(name, autoscaling.prometheus_url, "vector(3)")))
    eventually(lambda: cluster.kubectl("-n", namespace, "get", "hpa", f"keda-hpa-{name}", check=False).returncode == 0,
               timeout=60, interval=0.5, what="KEDA creates the HPA")
    print(f"KEDA created HPA keda-hpa-{name} in {_since(start)}")
    eventually(lambda: _replicas(cluster, namespace, name) == (3, 3), timeout=90, interval=0.5,
               what="the HPA scales to 3 ready replicas (vector(3) / threshold 1)")
    print(f"scaled 1 -> 3 replicas in {_since(start)}")

    def average_value():
        hpa = json.loads(cluster.kubectl("-n", namespace, "get", "hpa", f"keda-hpa-{name}", "-o", "json").stdout)
        metrics = hpa["status"].get("currentMetrics") or [{}]
        return metrics[0].get("external", {}).get("current", {}).get("averageValue")

    # The metric went through KEDA's adapter: 3 over 3 pods (the sync that scaled saw 3 over 1).
    eventually(lambda: average_value() == "1", timeout=30, interval=0.5, what="the HPA reads 1 per pod")

    start = time.monotonic()
    cluster.kubectl("-n", namespace, "patch", "scaledobject", name, "--type=json", "-p", json.dumps(
        [{"op": "replace", "path": "/spec/triggers/0/metadata/query", "value": "vector(0)"}]))
    eventually(lambda: _replicas(cluster, namespace, name) == (1, 1), timeout=90, interval=0.5,
               what="the HPA scales back to minReplicaCount 1")
    print(f"scaled 3 -> 1 replica in {_since(start)} (stabilization window 5 s)")
