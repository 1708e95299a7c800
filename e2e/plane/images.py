"""Container images of the real node: built here (no registry is reachable), cached as OCI archives
under the cache dir, and imported into the plane's containerd (namespace k8s.io, the CRI's)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .binaries import CLUSTER_DIR, NODE_FILES_DIR, SYSTEM_PATH, cache_dir, system_tool
from .config import Config
from .errors import PlaneError
from .processes import run

PAUSE_SOURCE = NODE_FILES_DIR / "pause.c"
TEST_SERVER_DIR = NODE_FILES_DIR / "testserver"
# The sandbox image and the test server run as this non-root user (distroless's "nonroot"), so a
# pod's runAsNonRoot holds even where its securityContext names no user.
NOBODY = 65532


def images_dir() -> Path:
    return cache_dir() / "images"


def _oci_image():
    """e2e/cluster/oci_image.py, loaded by path (e2e/cluster is not a package)."""
    spec = importlib.util.spec_from_file_location("llmops_oci_image", CLUSTER_DIR / "oci_image.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inputs_hash(files: list[Path], *extra: str) -> str:
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for item in extra:
        h.update(item.encode() + b"\0")
    return h.hexdigest()[:12]


def _build_archive(archive: Path, name: str, build_rootfs, **image) -> None:
    """Fill a scratch root filesystem with build_rootfs(dir), then write it as an OCI archive."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent) as scratch:
        rootfs = Path(scratch) / "rootfs"
        rootfs.mkdir()
        build_rootfs(rootfs)
        _oci_image().build(name, [rootfs], archive, **image)


def pause_image() -> tuple[Path, str]:
    """(archive, name) of the pod sandbox image: a static C program that sleeps until SIGTERM.

    Tagged with a hash of its source, so a change to pause.c gives a new image (and a new
    containerd config) instead of a stale one.
    """
    tag = _inputs_hash([PAUSE_SOURCE], "gcc -static -Os -s")
    name = f"llmops.dev/pause:{tag}"
    archive = images_dir() / f"pause-{tag}.tar"
    if not archive.exists():
        gcc = system_tool("gcc")
        if gcc is None:
            raise PlaneError("gcc is needed to build the pause image: run `make cluster-tools` "
                             "(e2e/cluster/install-node-deps.sh installs it)")

        def compile_pause(rootfs: Path) -> None:
            run([gcc, "-static", "-Os", "-s", "-Wall", "-o", str(rootfs / "pause"), str(PAUSE_SOURCE)])

        _build_archive(archive, name, compile_pause, entrypoint=["/pause"], user=f"{NOBODY}:{NOBODY}")
    return archive, name


def test_server_image() -> tuple[Path, str]:
    """(archive, name) of e2e/cluster/node/testserver: a static Go HTTP server for the e2e tests."""
    files = [p for p in TEST_SERVER_DIR.iterdir() if p.is_file()]
    go = system_tool("go")
    if go is None:
        raise PlaneError("The Go toolchain is needed to build the test server image")
    go_version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    tag = _inputs_hash(files, go_version)
    name = f"llmops.dev/e2e-testserver:{tag}"
    archive = images_dir() / f"e2e-testserver-{tag}.tar"
    if not archive.exists():
        def compile_server(rootfs: Path) -> None:
            argv = [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", str(rootfs / "testserver"), "."]
            proc = subprocess.run(argv, cwd=TEST_SERVER_DIR, capture_output=True, text=True,
                                  env={**os.environ, "PATH": SYSTEM_PATH, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
                                       "GOFLAGS": "-mod=mod"}, check=False)
            if proc.returncode != 0:
                raise PlaneError(f"Building the test server failed: {proc.stderr.strip()}")
            (rootfs / "tmp").mkdir()
            (rootfs / "tmp").chmod(0o1777)

        _build_archive(archive, name, compile_server, entrypoint=["/testserver"], user=f"{NOBODY}:{NOBODY}")
    return archive, name


# --------------------------------------------------------------------------- containerd


def ctr(cfg: Config, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    """`ctr` against the plane's containerd, in the CRI's namespace."""
    return run(["ctr", f"--address={cfg.containerd_socket}", "--namespace=k8s.io", *args],
               check=check, timeout=timeout)


def image_digest(cfg: Config, name: str) -> str | None:
    """The manifest (or index) digest containerd holds for `name`, or None when it has none."""
    out = ctr(cfg, "images", "ls", f"name=={name}").stdout.splitlines()
    for line in out[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == name:
            return fields[2]
    return None


def archive_manifest(archive: Path, name: str) -> tuple[str, str | None]:
    """(digest containerd will record, name the archive gives it) for an OCI archive.

    A manifest annotated with `io.containerd.image.name` (as oci_image.py writes) is imported under
    that name with the manifest's digest; an archive without the annotation is imported whole, by
    its index, under `name`.
    """
    with tarfile.open(archive, "r:") as tar:  # seeks over the layers: instant even for GiBs
        member = tar.getmember("index.json")
        raw = tar.extractfile(member).read()
    index = json.loads(raw)
    manifests = index.get("manifests", [])
    named = [m for m in manifests if m.get("annotations", {}).get("io.containerd.image.name")]
    chosen = next((m for m in named if m["annotations"]["io.containerd.image.name"] == name), None)
    if chosen is None and len(named) == 1:
        chosen = named[0]
    if chosen is not None:
        return chosen["digest"], chosen["annotations"]["io.containerd.image.name"]
    return "sha256:" + hashlib.sha256(raw).hexdigest(), None


# Set on an image once its import (and so its unpack into snapshots) completed: a failed import can
# leave the image record behind, at the right digest, with nothing unpacked.
UNPACKED_LABEL = "llmops.dev/unpacked"


def _labels(cfg: Config, name: str) -> dict[str, str]:
    out = ctr(cfg, "images", "ls", f"name=={name}").stdout.splitlines()
    for line in out[1:]:
        fields = line.split()
        if fields and fields[0] == name and fields[-1] != "-":
            return dict(item.split("=", 1) for item in fields[-1].split(",") if "=" in item)
    return {}


def import_image(cfg: Config, archive: Path, name: str) -> bool:
    """Import an OCI archive as `name`, unless containerd already has `name` at the archive's digest,
    completely unpacked.

    Returns True when it imported. Warm (already there): two `ctr images ls`, a few milliseconds.
    """
    archive = Path(archive)
    digest, annotated = archive_manifest(archive, name)
    previous = image_digest(cfg, name)
    if previous == digest and _labels(cfg, name).get(UNPACKED_LABEL) == digest:
        return False
    # While `ctr images import` moves `name` to the new manifest, the old one's snapshots are held by
    # nothing, and containerd's garbage collector can remove a base layer's snapshot that the new
    # image shares, in the middle of the unpack ("parent snapshot ... does not exist"). An alias holds
    # the old image until the new one is unpacked.
    alias = f"{name}-previous-import"
    if previous:
        ctr(cfg, "images", "tag", "--force", name, alias)
    try:
        args = ["images", "import"]
        if annotated is None:
            args.append(f"--index-name={name}")
        # Multi-GiB archives: unpacking into overlayfs snapshots takes minutes on this machine.
        ctr(cfg, *args, str(archive), timeout=3600)
        if annotated is not None and annotated != name:
            ctr(cfg, "images", "tag", "--force", annotated, name)
        got = image_digest(cfg, name)
        if got != digest:
            raise PlaneError(f"Importing {archive} gave {name} the digest {got}, expected {digest}")
        ctr(cfg, "images", "label", name, f"{UNPACKED_LABEL}={digest}")
        if previous and previous != digest:
            _forget_ids_of(cfg, previous)
    finally:
        if previous:
            ctr(cfg, "images", "rm", alias, check=False)
    return True


def _forget_ids_of(cfg: Config, manifest: str) -> None:
    """Remove the kubelet's `sha256:<image ID>` names of a replaced image. The kubelet names every
    image it runs by its ID too; after an import moved `name` on, that name alone kept the old image
    and all its layers, so each rebuilt image left several GiB behind for good."""
    for line in ctr(cfg, "images", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0].startswith("sha256:") and fields[2] == manifest:
            ctr(cfg, "images", "rm", fields[0], check=False)
