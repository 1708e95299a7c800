#!/usr/bin/env python3
"""Write an OCI image archive from root filesystem directories, with no Docker engine or registry.

    python3 e2e/cluster/oci_image.py --name NAME --layer DIR [--layer DIR ...] \\
        [--entrypoint JSON] [--cmd JSON] [--env K=V ...] [--user UID:GID] [--workdir DIR] \\
        [--label K=V ...] --output IMAGE.tar

Each --layer is a directory whose contents become one layer, bottom first (an upper layer adds or
replaces files; whiteouts are not needed by the images built here). The result is an OCI image
layout in a tar file, which `ctr images import` and `skopeo copy oci-archive:...` both read.

Layers are stored uncompressed: the archive is only ever imported on this machine, and gzip of a
multi-GiB layer on 2 cores would cost minutes for nothing. File times, owners' names and the order
of entries are normalised, so the same directories always give the same digests.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

EPOCH = 0  # every mtime in a layer, so rebuilding unchanged inputs gives the same image ID


class _HashingWriter(io.RawIOBase):
    """A file that hashes and counts what is written to it, on its way to the real file."""

    def __init__(self, target):
        self.target, self.sha, self.size = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.target.write(data)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = EPOCH
    info.uname = info.gname = ""
    return info


def _write_layer(rootfs: Path, target) -> tuple[str, int]:
    """Tar `rootfs` (sorted, times and names normalised) into `target`; return (sha256, size)."""
    writer = _HashingWriter(target)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                path = Path(dirpath) / name
                arcname = str(path.relative_to(rootfs))
                info = _normalised(tar.gettarinfo(str(path), arcname))
                if info.isreg():
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
                else:
                    tar.addfile(info)
    return writer.sha.hexdigest(), writer.size


def _add_blob(archive: tarfile.TarFile, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    info = _normalised(tarfile.TarInfo(f"blobs/sha256/{digest}"))
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
    return digest, len(data)


def _json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def build(name: str, layers: list[Path], output: Path, entrypoint: list[str] | None = None,
          cmd: list[str] | None = None, env: list[str] | None = None, user: str | None = None,
          workdir: str | None = None, labels: dict[str, str] | None = None) -> str:
    """Write the image archive; return the manifest digest ("sha256:...")."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with open(partial, "wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        diff_ids, layer_descriptors = [], []
        for layer in layers:
            # A layer is spooled to a temporary file first: the tar header of its blob needs its size.
            with tempfile.TemporaryFile(dir=output.parent) as spool:
                digest, size = _write_layer(layer, spool)
                spool.seek(0)
                info = _normalised(tarfile.TarInfo(f"blobs/sha256/{digest}"))
                info.size = size
                archive.addfile(info, spool)
            diff_ids.append(f"sha256:{digest}")
            layer_descriptors.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": f"sha256:{digest}", "size": size})
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {k: v for k, v in {
                "Entrypoint": entrypoint, "Cmd": cmd, "Env": env, "User": user, "WorkingDir": workdir,
                "Labels": labels}.items() if v},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": f"llm-operator oci_image.py layer {layer.name}"} for layer in layers],
        }
        config_digest, config_size = _add_blob(archive, _json(config))
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": f"sha256:{config_digest}", "size": config_size},
            "layers": layer_descriptors,
        }
        manifest_digest, manifest_size = _add_blob(archive, _json(manifest))
        index = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": f"sha256:{manifest_digest}", "size": manifest_size,
                # containerd names the imported image after this annotation.
                "annotations": {"io.containerd.image.name": name,
                                "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1]},
            }],
        }
        for member, data in (("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", _json(index))):
            info = _normalised(tarfile.TarInfo(member))
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    partial.replace(output)
    return f"sha256:{manifest_digest}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", required=True, help="image reference, e.g. registry.local/pause:3.10")
    parser.add_argument("--layer", action="append", required=True, type=Path, help="root filesystem directory")
    parser.add_argument("--entrypoint", type=json.loads, help='JSON list, e.g. ["/pause"]')
    parser.add_argument("--cmd", type=json.loads, help="JSON list")
    parser.add_argument("--env", action="append", help="K=V, repeatable")
    parser.add_argument("--user", help="UID[:GID]")
    parser.add_argument("--workdir")
    parser.add_argument("--label", action="append", default=[], help="K=V, repeatable")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args(argv)
    digest = build(args.name, args.layer, args.output, args.entrypoint, args.cmd, args.env, args.user,
                   args.workdir, dict(label.split("=", 1) for label in args.label))
    print(f"Wrote image {args.name} ({digest}) to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
