"""What the images built here hold, read from their OCI archives (built by `make test`'s set-up).

Every Python image must carry bytecode that stays valid although every file time in the archive is 0
(e2e/cluster/oci_image.py sets them so): with pip's mtime-checked bytecode, every Python process in
the image compiled each module it imported again (vLLM's processes spent twice as long starting).
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNCHECKED_HASH = 0b01  # PEP 552 flags of a .pyc: hash-based, source never checked
# Where the images' processes import from: the venv and Debian's standard library (not Debian's own
# packaging tools under /usr/share/python3, which nothing in the image runs).
IMPORTED_FROM = ("opt/", "usr/lib/python3.11/")
# One module each image's main process imports, which must be among the checked files.
IMAGES = {
    "runtime/cpu-image.sh": "opt/venv/lib/python3.11/site-packages/vllm/__pycache__/__init__.cpython-311.pyc",
    "runtime/gateway-image.sh": "opt/gateway/lib/python3.11/site-packages/vllm_router/__pycache__/__init__.cpython-311.pyc",
    "runtime/chat-page-image.sh": "opt/open-webui/lib/python3.11/site-packages/open_webui/__pycache__/main.cpython-311.pyc",
}


def _archive(script: str) -> Path:
    out = subprocess.run(["bash", str(REPO / script), "--print"], capture_output=True, text=True, check=True,
                         timeout=60, cwd=REPO).stdout
    archive = Path(dict(line.split(" ", 1) for line in out.splitlines())["archive"])
    if not archive.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {archive} is missing: `make test` builds it before the tests", pytrace=False)
        pytest.skip(f"{archive} is not built: run `make {Path(script).stem}` to enable this test")
    return archive


def bytecode_flags(archive: Path) -> dict[str, int]:
    """The PEP 552 flags of every .pyc in the image's layers, by path (an upper layer's file wins)."""
    flags: dict[str, int] = {}
    with tarfile.open(archive, "r:") as image:
        for blob in image.getmembers():
            if not (blob.isfile() and "/blobs/sha256/" in f"/{blob.name}" and blob.size > 10 << 10):
                continue
            try:
                with tarfile.open(fileobj=image.extractfile(blob), mode="r:") as layer:
                    for member in layer:
                        if member.isfile() and member.name.endswith(".pyc") and member.name.startswith(IMPORTED_FROM):
                            flags[member.name] = int.from_bytes(layer.extractfile(member).read(8)[4:8], "little")
            except tarfile.ReadError:  # the manifest or config, not a layer
                continue
    return flags


@pytest.mark.parametrize("script", IMAGES)
def test_every_bytecode_file_of_the_image_is_checked_by_hash_not_by_time(script):
    flags = bytecode_flags(_archive(script))
    assert IMAGES[script] in flags, f"{IMAGES[script]} is not in the image: nothing was compiled"
    timestamped = sorted(path for path, flag in flags.items() if flag != UNCHECKED_HASH)
    assert not timestamped, f"{len(timestamped)} of {len(flags)} .pyc files are checked against mtimes: {timestamped[:5]}"
