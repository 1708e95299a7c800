"""The plane's certificates and kubeconfigs, generated with the openssl command."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from .config import (
    FRONT_PROXY_CLIENT,
    KEDA_METRICS_SERVER_USER,
    KEDA_NAMESPACE,
    KEDA_OPERATOR_USER,
    PROMETHEUS_USER,
    Config,
)
from .errors import PlaneError

# (file stem, subject) of the certificate authorities. The front proxy CA signs only the API server's
# client certificate towards aggregated API servers, which trust it for request headers alone: a
# separate CA (as kubeadm makes) so that no other client certificate can pass as the front proxy.
_CAS = (("ca", "/CN=llm-operator-e2e-ca"), ("front-proxy-ca", "/CN=llm-operator-e2e-front-proxy-ca"))


def _service_account_subject(user: str) -> str:
    """A subject that authenticates like the ServiceAccount `user` (the groups its tokens carry)."""
    namespace = user.split(":")[2]
    return f"/O=system:serviceaccounts/O=system:serviceaccounts:{namespace}/CN={user}"


def _cert_specs(cfg: Config) -> list[tuple[str, str, str, str | None, str]]:
    """(file stem, subject, extended key usage, SANs, signing CA) of every certificate.

    Group O=system:masters makes the admin, kwok and the API server's kubelet client all-powerful;
    the controller manager, scheduler, kubelet and kube-proxy get their own identities so the
    bootstrap RBAC roles and the Node authorizer apply to them as in a real cluster. So do KEDA and
    Prometheus, with the roles autoscaling.py grants.
    """
    serving = ",".join([
        "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local", "IP:127.0.0.1", f"IP:{cfg.kubernetes_service_ip}"])
    node = cfg.node_name
    # KEDA's serving certificate: the aggregator checks it for the APIService's Service name
    # (<service>.<namespace>.svc), the adapter's gRPC client for the operator's address.
    keda_serving = ",".join([f"DNS:keda-metrics-apiserver.{KEDA_NAMESPACE}.svc",
                             f"DNS:keda-operator.{KEDA_NAMESPACE}.svc", "DNS:localhost", "IP:127.0.0.1"])
    return [
        ("apiserver", "/CN=kube-apiserver", "serverAuth", serving, "ca"),
        ("admin", "/O=system:masters/CN=kubernetes-admin", "clientAuth", None, "ca"),
        ("controller-manager", "/CN=system:kube-controller-manager", "clientAuth", None, "ca"),
        ("scheduler", "/CN=system:kube-scheduler", "clientAuth", None, "ca"),
        ("kwok", "/O=system:masters/CN=kwok-controller", "clientAuth", None, "ca"),
        # The API server's identity towards kubelets (logs, exec, port-forward).
        ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client", "clientAuth", None, "ca"),
        # ... and towards aggregated API servers, which take the user from its request headers.
        ("front-proxy-client", f"/CN={FRONT_PROXY_CLIENT}", "clientAuth", None, "front-proxy-ca"),
        # The real node: the kubelet's client identity (the Node authorizer's "system:node:<name>")
        # and its serving certificate for the node IP, which the API server verifies.
        ("kubelet", f"/O=system:nodes/CN=system:node:{node}", "clientAuth", None, "ca"),
        ("kubelet-serving", f"/CN={node}", "serverAuth", f"DNS:{node},IP:{cfg.node_ip}", "ca"),
        ("kube-proxy", "/CN=system:kube-proxy", "clientAuth", None, "ca"),
        # Autoscaling: KEDA's two processes and Prometheus's service discovery, each its own user;
        # KEDA's gRPC is mutual TLS with one certificate for both ends, as KEDA's own certs are.
        ("keda-operator", _service_account_subject(KEDA_OPERATOR_USER), "clientAuth", None, "ca"),
        ("keda-metrics-server", _service_account_subject(KEDA_METRICS_SERVER_USER), "clientAuth", None, "ca"),
        ("keda-serving", "/CN=keda-metrics-apiserver", "serverAuth,clientAuth", keda_serving, "ca"),
        ("prometheus", f"/CN={PROMETHEUS_USER}", "clientAuth", None, "ca"),
    ]


def _fingerprint(cfg: Config) -> str:
    """Changes whenever a CA, subject or SAN changes (node IP, Service range, node name, a new cert)."""
    return hashlib.sha256(json.dumps([_CAS, _cert_specs(cfg)]).encode()).hexdigest()


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PlaneError(f"openssl {args[0]} failed: {proc.stderr.strip()}")


def pki_complete(cfg: Config) -> bool:
    done = cfg.pki / ".complete"
    try:
        return done.read_text().strip() == _fingerprint(cfg)
    except OSError:
        return False


def ensure_pki(cfg: Config) -> None:
    """CA, serving and client certificates, and the service-account key pair.

    Kept across restarts, so a warm `up` skips it and a kubeconfig copied elsewhere stays valid.
    Regenerated when incomplete or made for other names or addresses: the `.complete` marker holds
    a fingerprint of every certificate's subject and SANs. EC P-256 keys: fast to make, accepted by all.
    """
    pki = cfg.pki
    if pki_complete(cfg):
        return
    if shutil.which("openssl") is None:
        raise PlaneError("The openssl command is needed to generate the plane's certificates")
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca, ca_subject in _CAS:
        _openssl("req", "-x509", "-new", *ec, "-keyout", str(pki / f"{ca}.key"), "-out", str(pki / f"{ca}.crt"),
                 "-days", "3650", "-subj", ca_subject,
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    for stem, subject, usage, sans, ca in _cert_specs(cfg):
        csr = pki / f"{stem}.csr"
        _openssl("req", "-new", *ec, "-keyout", str(pki / f"{stem}.key"), "-out", str(csr), "-subj", subject)
        ext = pki / f"{stem}.ext"
        lines = ["basicConstraints=critical,CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={usage}"]
        if sans:
            lines.append(f"subjectAltName={sans}")
        ext.write_text("\n".join(lines) + "\n")
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(pki / f"{ca}.crt"), "-CAkey", str(pki / f"{ca}.key"),
                 "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "3650",
                 "-extfile", str(ext), "-out", str(pki / f"{stem}.crt"))
        csr.unlink()
        ext.unlink()
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(pki / "sa.key"))
    _openssl("pkey", "-in", str(pki / "sa.key"), "-pubout", "-out", str(pki / "sa.pub"))
    for key in pki.glob("*.key"):
        key.chmod(0o600)
    (pki / ".complete").write_text(_fingerprint(cfg) + "\n")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(cfg: Config, path: Path, user: str, cert_stem: str) -> None:
    """A self-contained kubeconfig (certificates embedded), so it can be copied anywhere."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML; writing it avoids depending on pyyaml outside the venv.
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "llm-operator-e2e", "cluster": {
            "server": cfg.server, "certificate-authority-data": _b64(cfg.pki / "ca.crt")}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": _b64(cfg.pki / f"{cert_stem}.crt"),
            "client-key-data": _b64(cfg.pki / f"{cert_stem}.key")}}],
        "contexts": [{"name": "llm-operator-e2e", "context": {"cluster": "llm-operator-e2e", "user": user}}],
        "current-context": "llm-operator-e2e",
        "preferences": {},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.chmod(0o600)
    tmp.replace(path)


def write_kubeconfigs(cfg: Config) -> None:
    """The admin kubeconfig and one per component, each with its own identity."""
    write_kubeconfig(cfg, cfg.kubeconfig, "kubernetes-admin", "admin")
    for who, user, stem in (("controller-manager", "system:kube-controller-manager", "controller-manager"),
                            ("scheduler", "system:kube-scheduler", "scheduler"),
                            ("kwok", "kwok-controller", "kwok"),
                            ("kubelet", f"system:node:{cfg.node_name}", "kubelet"),
                            ("kube-proxy", "system:kube-proxy", "kube-proxy"),
                            ("keda-operator", KEDA_OPERATOR_USER, "keda-operator"),
                            ("keda-metrics-server", KEDA_METRICS_SERVER_USER, "keda-metrics-server"),
                            ("prometheus", PROMETHEUS_USER, "prometheus")):
        write_kubeconfig(cfg, cfg.component_kubeconfig(who), user, stem)
