"""The plane's real node: containers really run there (kubelet, containerd, runc, CNI, kube-proxy).

One pod of the test server image (e2e/cluster/node/testserver, built and imported here) runs in a
namespace that enforces the `restricted` Pod Security Standard, with a Memory /dev/shm of a fixed
size and a local PersistentVolume. The host reaches it by pod IP and through its Service's ClusterIP;
from inside, it reaches its own Service (kube-proxy) and a server on the node IP (how init containers
download from a host-side hub). Nothing of this may take the kwok GPU nodes away from GPU pods.

Skips outside CI when the real node cannot run (see conftest.real_node); fails with CI=true.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import tarfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import plane

SHM_BYTES = 64 * 1024 * 1024
UID, FS_GROUP = 65532, 2000
# Never through a proxy from the environment: every address here is on this machine.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get(url: str, timeout: float = 5) -> tuple[int, str]:
    with _HTTP.open(url, timeout=timeout) as resp:
        return resp.status, resp.read().decode()


def _get_json(url: str) -> dict:
    status, body = _get(url)
    assert status == 200, body
    return json.loads(body)


def _poll(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OSError:
            value = None
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


@pytest.fixture(scope="module")
def server_image(real_node) -> str:
    archive, name = plane.test_server_image()
    real_node.import_image(archive, name)
    return name


def _manifests(image: str, claim: bool = True) -> list[dict]:
    volumes = [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}}]
    mounts = [{"name": "shm", "mountPath": "/dev/shm"}]
    objs = []
    if claim:
        objs.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
            "spec": {"storageClassName": plane.LOCAL_STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
        })
        volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": "data"}})
        mounts.append({"name": "data", "mountPath": "/data"})
    objs.append({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "nodeSelector": plane.REAL_NODE_SELECTOR,
            "tolerations": plane.REAL_NODE_TOLERATIONS,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": FS_GROUP,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "server",
                "image": image,
                "imagePullPolicy": "Never",
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    })
    objs.append({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    })
    return objs


def _run_web(cluster, namespace: str, image: str, claim: bool = True) -> dict:
    """Apply the pod (in a namespace enforcing the restricted standard) and wait until it is Ready."""
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    cluster.kubectl("-n", namespace, "apply", "-f", "-",
                    input=json.dumps({"apiVersion": "v1", "kind": "List", "items": _manifests(image, claim)}))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/web", "--timeout=90s")
    return json.loads(cluster.kubectl("-n", namespace, "get", "pod", "web", "-o", "json").stdout)


def test_restricted_pod_with_shm_and_local_volume(cluster, real_node, namespace, server_image):
    pod = _run_web(cluster, namespace, server_image)
    cfg = real_node.cfg
    assert pod["spec"]["nodeName"] == real_node.node_name
    pod_ip = pod["status"]["podIP"]
    assert ipaddress.ip_address(pod_ip) in ipaddress.ip_network(cfg.node_pod_cidr)

    # What the server sees from the inside: the restricted security context really applied.
    status = _get_json(f"http://{pod_ip}:8080/status")
    assert status["uid"] == UID and status["gid"] == UID, status
    assert FS_GROUP in status["groups"], status
    assert int(status["capEff"], 16) == 0, status
    assert status["seccomp"] == "2", status  # filter mode: the runtime's default profile
    assert status["noNewPrivs"] == "1", status
    assert status["shmBytes"] == SHM_BYTES, status  # tmpfs sized by the emptyDir's sizeLimit
    assert status["shmWrite"] == "ok" and status["dataWrite"] == "ok", status

    # The claim bound a static local PV of the real node, and the write landed in its directory.
    pvc = json.loads(cluster.kubectl("-n", namespace, "get", "pvc", "data", "-o", "json").stdout)
    assert pvc["status"]["phase"] == "Bound"
    pv = json.loads(cluster.kubectl("get", "pv", pvc["spec"]["volumeName"], "-o", "json").stdout)
    assert pv["spec"]["storageClassName"] == plane.LOCAL_STORAGE_CLASS
    terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"][0]["values"] == [real_node.node_name]
    written = Path(pv["spec"]["local"]["path"]) / "written-by-web"
    assert written.read_text() == "web\n"
    assert written.stat().st_uid == UID and written.stat().st_gid == FS_GROUP

    # kubectl logs goes API server -> kubelet on the node IP (client certificates both ways).
    logs = cluster.kubectl("-n", namespace, "logs", "web").stdout
    assert "testserver listening on :8080" in logs, logs
    assert "GET /status" in logs, logs


def test_service_and_node_ip_reachable(cluster, real_node, namespace, server_image):
    pod = _run_web(cluster, namespace, server_image, claim=False)
    cfg = real_node.cfg
    pod_ip = pod["status"]["podIP"]
    svc = json.loads(cluster.kubectl("-n", namespace, "get", "service", "web", "-o", "json").stdout)
    cluster_ip = svc["spec"]["clusterIP"]
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(cfg.service_cidr)

    # Host -> pod IP, and host -> ClusterIP (kube-proxy's rules; the endpoint may take a moment).
    assert _get(f"http://{pod_ip}:8080/healthz") == (200, "ok\n")
    assert _poll(lambda: _get(f"http://{cluster_ip}/healthz", timeout=2) == (200, "ok\n"), 30), \
        f"ClusterIP {cluster_ip} never answered from the host"

    # Pod -> its own Service's ClusterIP (hairpin through kube-proxy).
    fetched = _get_json(f"http://{pod_ip}:8080/fetch?url=http://{cluster_ip}/healthz")
    assert fetched == {"status": 200, "body": "ok\n"}, fetched

    # Pod -> a server on the host listening on the node IP (the way init containers reach a hub).
    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            body = f"hello {self.client_address[0]}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((real_node.node_ip, 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://{real_node.node_ip}:{server.server_address[1]}/"
        fetched = _get_json(f"http://{pod_ip}:8080/fetch?url={url}")
        # The pod's own address arrives: no masquerading on the way to the host.
        assert fetched == {"status": 200, "body": f"hello {pod_ip}"}, fetched
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_is_forwarded_off_the_machine(real_node):
    cfg = real_node.cfg
    forward = subprocess.run(["iptables", "-w", "5", "-S", "FORWARD"], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    rules = [r for r in forward if r.startswith("-A ")]
    assert rules[0] == f"-A FORWARD -j {plane.FORWARD_CHAIN}", forward
    chain = real_node.node.forward_rules()
    leaving = f"-s {cfg.node_pod_cidr} ! -d {plane.ISOLATED_RANGE}"
    drop_out = [r for r in chain if leaving in r and r.endswith("-j DROP")]
    assert drop_out, chain
    # No SNAT of the pod range to the host's addresses (the bridge plugin's ipMasq is off).
    nat = subprocess.run(["iptables", "-w", "5", "-t", "nat", "-S", "POSTROUTING"], capture_output=True, text=True,
                         check=True).stdout
    assert cfg.node_pod_cidr not in nat, nat
    # Addresses of the isolated range that nothing claims stay on the node's interface.
    route = subprocess.run(["ip", "route", "get", "198.19.255.254"], capture_output=True, text=True,
                           check=True).stdout
    assert f"dev {cfg.node_interface}" in route, route


def test_real_node_keeps_apart_from_gpu_nodes(cluster, real_node, namespace):
    node = json.loads(cluster.kubectl("get", "node", real_node.node_name, "-o", "json").stdout)
    key, value = plane.REAL_NODE_LABEL
    assert node["metadata"]["labels"][key] == value
    assert plane.REAL_NODE_TAINT in node["spec"]["taints"], node["spec"]["taints"]
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == real_node.node_ip
    assert plane.GPU_RESOURCE not in node["status"]["allocatable"]

    gpu_nodes = json.loads(cluster.kubectl("get", "nodes", "-l", "nvidia.com/gpu.present=true", "-o",
                                           "json").stdout)["items"]
    assert len(gpu_nodes) == real_node.cfg.nodes
    gpu_pod = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "gpu"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "gpu"}}, "template": {
            "metadata": {"labels": {"app": "gpu"}},
            "spec": {
                # Tolerating both taints: only the GPU request decides where it goes.
                "tolerations": [{"key": plane.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
                                *plane.REAL_NODE_TOLERATIONS],
                "containers": [{"name": "server", "image": "vllm/vllm-openai:latest",
                                "resources": {"limits": {plane.GPU_RESOURCE: "4"}}}],
            }}},
    }
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(gpu_pod))
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Available", "deployment/gpu", "--timeout=90s")
    pods = json.loads(cluster.kubectl("-n", namespace, "get", "pods", "-l", "app=gpu", "-o", "json").stdout)["items"]
    assert len(pods) == 2
    assert all(p["spec"]["nodeName"].startswith("kwok-gpu-") for p in pods), [p["spec"]["nodeName"] for p in pods]


def test_storage_class_and_local_volumes(cluster, real_node):
    sc = json.loads(cluster.kubectl("get", "storageclass", plane.LOCAL_STORAGE_CLASS, "-o", "json").stdout)
    assert sc["provisioner"] == "kubernetes.io/no-provisioner"
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    pvs = json.loads(cluster.kubectl("get", "pv", "-l", "=".join(plane.REAL_NODE_LABEL), "-o", "json").stdout)["items"]
    assert len(pvs) == real_node.cfg.local_volumes
    for pv in pvs:
        assert set(pv["spec"]["accessModes"]) == {"ReadWriteOnce", "ReadWriteMany"}
        assert Path(pv["spec"]["local"]["path"]).is_dir()


def test_image_import_is_idempotent(real_node, server_image):
    archive, name = plane.test_server_image()
    started = time.monotonic()
    assert real_node.import_image(archive, name) is False  # imported by the fixture already
    assert time.monotonic() - started < 5
    digest, _ = plane.images.archive_manifest(archive, name)
    assert real_node.image_digest(name) == digest


def test_an_image_imported_again_leaves_its_old_version_nowhere(cluster, real_node, namespace, tmp_path):
    """The kubelet names every image it runs by its ID as well (`sha256:<config digest>`). An import
    that gives the name a new image must drop that name of the old one too, or the old image, all
    its layers, stays in containerd for good (several GiB for each rebuild of the CPU image)."""
    pause_archive, _ = plane.images.pause_image()
    name = "llmops.dev/e2e-replaced:latest"
    old_archive, new_archive = tmp_path / "old.tar", tmp_path / "new.tar"
    with tarfile.open(pause_archive) as image:  # the pause binary, to give each image a process
        layer = next(m for m in image.getmembers() if m.isfile() and m.size > 10_000)
        with tarfile.open(fileobj=image.extractfile(layer)) as files:
            binary = files.extractfile("pause").read()

    def rootfs_with(marker: str):
        def build(rootfs: Path) -> None:
            (rootfs / "pause").write_bytes(binary)
            (rootfs / "pause").chmod(0o755)
            (rootfs / "version").write_text(marker)
        return build
    plane.images._build_archive(old_archive, name, rootfs_with("old"), entrypoint=["/pause"], user="65532:65532")
    plane.images._build_archive(new_archive, name, rootfs_with("new"), entrypoint=["/pause"], user="65532:65532")

    assert real_node.import_image(old_archive, name)
    old = real_node.image_digest(name)
    cluster.kubectl("-n", namespace, "run", "old-image", f"--image={name}", "--image-pull-policy=Never", "--restart=Never",
                    f"--overrides={json.dumps({'spec': {'nodeSelector': plane.REAL_NODE_SELECTOR, 'tolerations': plane.REAL_NODE_TOLERATIONS}})}")
    cluster.kubectl("-n", namespace, "wait", "--for=condition=Ready", "pod/old-image", "--timeout=60s")
    cluster.kubectl("-n", namespace, "delete", "pod", "old-image", "--wait=true", "--timeout=60s")
    ids = [line.split()[0] for line in plane.images.ctr(real_node.cfg, "images", "ls").stdout.splitlines()[1:]
           if line.split()[2] == old and line.split()[0].startswith("sha256:")]
    assert ids, "the kubelet named the image by its ID: the case this test is about did not happen"

    assert real_node.import_image(new_archive, name)
    left = [line.split()[0] for line in plane.images.ctr(real_node.cfg, "images", "ls").stdout.splitlines()[1:]
            if line.split()[2] == old]
    plane.images.ctr(real_node.cfg, "images", "rm", name, check=False)
    assert left == [], f"the replaced image is still held by {left}"
