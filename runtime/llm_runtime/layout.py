"""Where a model lives: the one rule shared by the operator's renderer and the runtime.

Pure and dependency-free on purpose: the renderer imports it to know the path it hands to
`vllm serve`, and `llm-runtime download` imports it to know where to put the files. If the two
computed the path separately they would drift.

Assumptions:
- A source is `modelscope://org/name`, `hf://org/name` or `pvc://claim/path/inside/claim`.
- Hub models are stored under `<cache_root>/<hub>/<org>/<name>/<revision segment>`: one directory
  per source and revision, so two revisions never mix files and a cache hit is one `stat`.
- The revision segment is the revision itself when it is plain (letters, digits, '.', '_', '-',
  starting with a letter or digit, at most 128 characters: `master`, `main`, `v1.0`, a commit id),
  so the paths users see and the renderer's golden files stay as they were. Any other revision
  (`release/v1`) becomes a readable sanitized part, '+', and 12 hex digits of the SHA-256 of the
  exact revision string: `release_v1+3f0c...`. A plain segment never contains '+', so the mapping
  is one-to-one: `release/v1` and `release_v1` cannot share a directory.
- Names beside a model directory that end in `.lock` or `.partial`, or contain '~', belong to the
  runtime (lock, partial downloads); a revision spelled like that is not plain, so it is hashed.
- A `pvc://` model is mounted at `cache_root` and used in place: `<cache_root>/<path>`.
- What vLLM compiles is kept under `<cache_root>/compile/` (llm_runtime.compile_cache), below a
  model key: the model directory's path relative to `cache_root`. No hub is named `compile`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

SCHEMES = ("modelscope", "hf", "pvc")

# org/name on ModelScope and Hugging Face: letters, digits, '-', '_', '.'; never '..'.
# A dot is always followed by another character or ends the part, so '..' cannot match: the CRD
# refuses it at `kubectl apply` (Go's regexp, like JSON schema's, has no lookahead to say it).
_REPO_PART = r"[A-Za-z0-9]([A-Za-z0-9_-]|\.[A-Za-z0-9_-])*\.?"
HUB_SOURCE_PATTERN = rf"^(modelscope|hf)://{_REPO_PART}/{_REPO_PART}$"
# A PVC claim name is a DNS-1123 subdomain; the path inside it is relative and non-empty.
PVC_SOURCE_PATTERN = r"^pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[^/].*$"
SOURCE_PATTERN = rf"({HUB_SOURCE_PATTERN})|({PVC_SOURCE_PATTERN})"

DEFAULT_REVISION = {"modelscope": "master", "hf": "main"}
COMPILE_DIR = "compile"


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


_PLAIN_REVISION = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"


def revision_segment(revision: str) -> str:
    """One directory level for a revision, distinct for distinct revisions (see the module docstring).

    Branch names may contain '/', which must not become a directory level, and sanitizing alone is
    not one-to-one (`release/v1` and `release_v1`), hence the hash of the exact string.
    """
    if re.fullmatch(_PLAIN_REVISION, revision) and not revision.endswith((".lock", ".partial")):
        return revision
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", revision)[:64]
    return f"{readable}+{hashlib.sha256(revision.encode()).hexdigest()[:12]}"


def model_dir(cache_root: str, source: ModelSource, revision: str | None) -> str:
    """Directory that holds (or will hold) the model's files."""
    root = PurePosixPath(cache_root)
    if source.scheme == "pvc":
        return str(root / source.path)
    org, name = source.repo.split("/", 1)
    return str(root / source.scheme / org / name / revision_segment(effective_revision(source, revision)))


def model_path(cache_root: str, source: ModelSource, revision: str | None, file: str | None) -> str:
    """What `vllm serve` is given: the model directory, or the single file in it (GGUF)."""
    directory = model_dir(cache_root, source, revision)
    return str(PurePosixPath(directory) / file) if file else directory


def model_key(source: ModelSource, revision: str | None) -> str:
    """A hub model's directory relative to the cache root: where its compiled files are kept."""
    return model_dir("", source, revision).lstrip("/")
