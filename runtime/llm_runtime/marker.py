"""The completion marker: the file that says a model directory is complete. Pure functions.

The marker is the last thing written into a download's temporary directory before that
directory is renamed into place, so a directory that has it is complete. It records the source,
the revision (and the commit it resolved to), every file with its size, and the requests
(single file, allow/ignore patterns) it satisfies.

A cache hit is decided from the marker and one `stat` per file: no hub request, no hashing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

MARKER_NAME = ".llmops-complete.json"
MARKER_VERSION = 1


@dataclass(frozen=True)
class Request:
    """What one `llm-runtime download` asked for, apart from source and revision."""

    file: str | None = None
    allow: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()

    @property
    def is_full(self) -> bool:
        return not self.file and not self.allow and not self.ignore

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "allow": list(self.allow), "ignore": list(self.ignore)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        return cls(file=data.get("file"), allow=tuple(data.get("allow") or ()), ignore=tuple(data.get("ignore") or ()))


@dataclass
class Marker:
    source: str
    revision: str
    files: dict[str, int]  # path inside the model dir -> size in bytes
    requests: list[Request] = field(default_factory=list)
    commit: str | None = None
    completed_at: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "version": MARKER_VERSION,
            "source": self.source,
            "revision": self.revision,
            "commit": self.commit,
            "completedAt": self.completed_at,
            "requests": [r.to_json() for r in self.requests],
            "totalBytes": self.total_bytes,
            "files": dict(sorted(self.files.items())),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Marker:
        if data.get("version") != MARKER_VERSION:
            raise ValueError(f"unknown marker version {data.get('version')!r}")
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(v, int) for v in files.values()):
            raise ValueError("marker files must map paths to sizes")
        return cls(
            source=data["source"],
            revision=data["revision"],
            files=dict(files),
            requests=[Request.from_json(r) for r in data.get("requests", [])],
            commit=data.get("commit"),
            completed_at=data.get("completedAt", ""),
        )

    @classmethod
    def loads(cls, text: str) -> Marker:
        return cls.from_json(json.loads(text))


def build_marker(
    source: str,
    revision: str,
    files: dict[str, int],
    request: Request,
    *,
    commit: str | None = None,
    completed_at: str = "",
    previous: Marker | list[Marker] | None = None,
) -> Marker:
    """Marker for a finished download; merges what earlier markers of the same directory held.

    A previous marker is merged only when it describes the same content (`same_content`): the
    files and requests of another source, revision or commit would otherwise be vouched for under
    this one's name and give a later request a false cache hit.
    """
    earlier = [previous] if isinstance(previous, Marker) else list(previous or [])
    earlier = [m for m in earlier if same_content(m, source, revision, commit)]
    all_files: dict[str, int] = {}
    requests: list[Request] = []
    for m in earlier:
        all_files.update(m.files)
        requests += [r for r in m.requests if r not in requests]
    all_files.update(files)
    if request not in requests:
        requests.append(request)
    commit = commit or next((m.commit for m in earlier if m.commit), None)
    return Marker(source, revision, all_files, requests, commit, completed_at)


def same_content(marker: Marker, source: str, revision: str, commit: str | None) -> bool:
    """May files listed by `marker` sit beside a download of `source@revision` resolved to `commit`?

    Same source and revision, and the same commit when both sides know it (a branch that moved
    between two downloads must not mix files of two commits). ModelScope listings carry no commit.
    """
    return (marker.source == source and marker.revision == revision
            and (not marker.commit or not commit or marker.commit == commit))


def satisfies(marker: Marker, source: str, revision: str, request: Request) -> bool:
    """Does a complete directory described by `marker` already answer `request`?"""
    if marker.source != source or marker.revision != revision:
        return False
    if request.file:
        return request.file in marker.files
    return request in marker.requests or any(r.is_full for r in marker.requests)


def read_marker(model_dir: str) -> Marker | None:
    """The marker of a directory, or None when there is none or it is unreadable."""
    try:
        with open(os.path.join(model_dir, MARKER_NAME), encoding="utf-8") as fh:
            return Marker.loads(fh.read())
    except (OSError, ValueError, KeyError, TypeError):
        return None


def files_match(model_dir: str, files: dict[str, int]) -> list[str]:
    """Paths that are missing or have another size than recorded (empty list: all match)."""
    bad = []
    for path, size in files.items():
        try:
            if os.stat(os.path.join(model_dir, path)).st_size != size:
                bad.append(path)
        except OSError:
            bad.append(path)
    return bad


def cache_hit(model_dir: str, source: str, revision: str, request: Request) -> Marker | None:
    """The marker when `model_dir` is complete for this request and its files are intact, else None."""
    marker = read_marker(model_dir)
    if marker is None or not satisfies(marker, source, revision, request):
        return None
    if files_match(model_dir, marker.files):
        return None
    return marker
