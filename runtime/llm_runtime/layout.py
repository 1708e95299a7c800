"""Where a model lives: the one rule shared by the operator's renderer and the runtime.

Pure and dependency-free on purpose: the renderer imports it to know the path it hands to
`vllm serve`, and `llm-runtime download` imports it to know where to put the files. If the two
computed the path separately they would drift.

Assumptions:
- A source is `modelscope://org/name`, `hf://org/name` or `pvc://claim/path/inside/claim`.
- Hub models are stored under `<cache_root>/<hub>/<org>/<name>/<revision>`: one directory per
  source and revision, so two revisions never mix files and a cache hit is one `stat`.
- A `pvc://` model is mounted at `cache_root` and used in place: `<cache_root>/<path>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

SCHEMES = ("modelscope", "hf", "pvc")

# org/name on ModelScope and Hugging Face: letters, digits, '-', '_', '.'; never '..'.
_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
HUB_SOURCE_PATTERN = rf"^(modelscope|hf)://{_REPO_PART}/{_REPO_PART}$"
# A PVC claim name is a DNS-1123 subdomain; the path inside it is relative and non-empty.
PVC_SOURCE_PATTERN = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^/].*$"
SOURCE_PATTERN = rf"({HUB_SOURCE_PATTERN})|({PVC_SOURCE_PATTERN})"

DEFAULT_REVISION = {"modelscope": "master", "hf": "main"}


@dataclass(frozen=True)
class ModelSource:
    scheme: str  # modelscope | hf | pvc
    repo: str  # org/name for hubs; the claim name for pvc
    path: str = ""  # path inside the claim, pvc only

    @property
    def is_hub(self) -> bool:
        return self.scheme in ("modelscope", "hf")


def parse_source(source: str) -> ModelSource:
    """Parse a model source URI; raise ValueError naming what is wrong."""
    if re.fullmatch(HUB_SOURCE_PATTERN, source):
        scheme, repo = source.split("://", 1)
        if ".." in repo:
            raise ValueError(f"model source {source!r}: '..' is not allowed in a repository name")
        return ModelSource(scheme=scheme, repo=repo)
    if re.fullmatch(PVC_SOURCE_PATTERN, source):
        claim, path = source[len("pvc://"):].split("/", 1)
        if ".." in PurePosixPath(path).parts:
            raise ValueError(f"model source {source!r}: the path inside the claim may not contain '..'")
        return ModelSource(scheme="pvc", repo=claim, path=path.rstrip("/"))
    raise ValueError(
        f"model source {source!r} is not one of modelscope://org/name, hf://org/name, pvc://claim/path"
    )


def effective_revision(source: ModelSource, revision: str | None) -> str:
    """The revision actually fetched: the given one, else the hub's default branch."""
    if not source.is_hub:
        return ""
    return revision or DEFAULT_REVISION[source.scheme]


def _safe_segment(value: str) -> str:
    """A revision may contain '/' (branch names): keep it one directory level, readable."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", value)


def model_dir(cache_root: str, source: ModelSource, revision: str | None) -> str:
    """Directory that holds (or will hold) the model's files."""
    root = PurePosixPath(cache_root)
    if source.scheme == "pvc":
        return str(root / source.path)
    org, name = source.repo.split("/", 1)
    return str(root / source.scheme / org / name / _safe_segment(effective_revision(source, revision)))


def model_path(cache_root: str, source: ModelSource, revision: str | None, file: str | None) -> str:
    """What `vllm serve` is given: the model directory, or the single file in it (GGUF)."""
    directory = model_dir(cache_root, source, revision)
    return str(PurePosixPath(directory) / file) if file else directory
