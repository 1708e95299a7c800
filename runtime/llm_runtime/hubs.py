"""The two hub SDKs behind one small interface: list a revision's files, fetch them into a directory.

The SDKs are imported lazily: a cache hit never imports them (importing ModelScope alone takes
most of a second) and never talks to a hub.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .contract import ENDPOINT_ENV, TOKEN_ENV
from .errors import CorruptError, NotFoundError, not_found_message
from .marker import Request

if TYPE_CHECKING:
    from huggingface_hub import HfApi


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None = None  # content hash, when the hub publishes it (LFS files, every ModelScope file)
    git_sha1: str | None = None  # git blob id (Hugging Face non-LFS files)


@dataclass
class Listing:
    files: list[RemoteFile]
    commit: str | None = None

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


SDK_LOGGERS = ("modelscope", "modelscope_hub", "huggingface_hub", "httpx", "httpx2", "filelock", "urllib3", "requests")


def quiet_sdk_loggers() -> None:
    """The SDKs log per-file chatter at INFO (some set their level on import): keep warnings and errors."""
    import logging

    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
        for child in list(logging.root.manager.loggerDict):
            if child.startswith(name + "."):
                logging.getLogger(child).setLevel(logging.WARNING)


def _glob(pattern: str) -> str:
    return pattern + "*" if pattern.endswith("/") else pattern


def select_files(paths: list[str], request: Request) -> list[str]:
    """The paths a request selects, filtered the way both SDKs do (fnmatch; 'dir/' means 'dir/*')."""
    if request.file:
        return [p for p in paths if p == request.file]
    out = []
    for p in paths:
        if request.allow and not any(fnmatch.fnmatch(p, _glob(a)) for a in request.allow):
            continue
        if request.ignore and any(fnmatch.fnmatch(p, _glob(i)) for i in request.ignore):
            continue
        out.append(p)
    return out


def filter_listing(listing: Listing, request: Request, source: str, revision: str) -> Listing:
    by_path = {f.path: f for f in listing.files}
    chosen = select_files(sorted(by_path), request)
    if request.file and not chosen:
        raise NotFoundError(not_found_message(source, revision, f"file {request.file!r} is not in the repository"))
    return Listing([by_path[p] for p in chosen], listing.commit)


def modelscope_listing(entries: Iterable[Any]) -> Listing:
    """The files of a ModelScope listing (modelscope_hub FileInfo entries, or their raw dicts).

    A recursive listing names every folder too, as an entry of type "tree" (sentence-transformers'
    `1_Pooling/`, for one); taken for a file, its "size" would never match the directory on disk.
    The SDK's snapshot_download skips exactly the "tree" entries, so this does the same: the files
    we check are the files it fetches.
    """
    files = []
    for e in entries:
        wire = e if isinstance(e, dict) else {"Path": e.path, "Size": e.size, "Type": e.type, "Sha256": e.sha256}
        if wire.get("Path") and (wire.get("Type") or "blob") != "tree":
            files.append(RemoteFile(wire["Path"], int(wire.get("Size") or 0), wire.get("Sha256") or None))
    return Listing(files)


class ModelScope:
    scheme = "modelscope"

    def __init__(self, endpoint: str | None, token: str | None) -> None:
        self.endpoint = endpoint or None
        self.token = token or None

    def list(self, repo: str, revision: str) -> Listing:
        # modelscope_hub is what `modelscope` delegates to; its typed listing keeps each entry's
        # type, which the legacy `HubApi.get_model_files` drops.
        from modelscope_hub import HubApi

        quiet_sdk_loggers()
        api = HubApi(endpoint=self.endpoint, token=self.token)
        return modelscope_listing(api.list_repo_files(repo, "model", revision=revision, recursive=True))

    def fetch(self, repo: str, revision: str, request: Request, dest: str, max_workers: int, listing: Listing) -> None:
        # ModelScope checks every file's SHA-256 against its listing itself and never leaves a
        # file that failed the check at its final path.
        if request.file:
            from modelscope.hub.file_download import model_file_download

            model_file_download(repo, request.file, revision=revision, local_dir=dest, token=self.token,
                                endpoint=self.endpoint)
            return
        from modelscope.hub.snapshot_download import snapshot_download

        snapshot_download(
            repo,
            revision=revision,
            local_dir=dest,
            allow_patterns=list(request.allow) or None,
            ignore_patterns=list(request.ignore) or None,
            max_workers=max_workers,
            token=self.token,
            endpoint=self.endpoint,
        )


class HuggingFace:
    scheme = "hf"

    def __init__(self, endpoint: str | None, token: str | None) -> None:
        self.endpoint = endpoint or None
        self.token = token or None

    def _api(self) -> HfApi:
        from huggingface_hub import HfApi

        quiet_sdk_loggers()
        return HfApi(endpoint=self.endpoint, token=self.token or False)

    def list(self, repo: str, revision: str) -> Listing:
        from huggingface_hub.hf_api import RepoFile

        api = self._api()
        commit = api.repo_info(repo, revision=revision).sha
        files = []
        for entry in api.list_repo_tree(repo, revision=commit or revision, recursive=True):
            if isinstance(entry, RepoFile):
                lfs = entry.lfs
                files.append(RemoteFile(entry.path, int(entry.size), lfs.sha256 if lfs else None,
                                        None if lfs else entry.blob_id))
        return Listing(files, commit)

    def fetch(self, repo: str, revision: str, request: Request, dest: str, max_workers: int, listing: Listing) -> None:
        import huggingface_hub

        # Fetch the commit the listing resolved, so a branch that moves meanwhile cannot mix files.
        rev = listing.commit or revision
        token = self.token or False
        if request.file:
            huggingface_hub.hf_hub_download(repo, request.file, revision=rev, local_dir=dest, token=token,
                                            endpoint=self.endpoint)
        else:
            huggingface_hub.snapshot_download(
                repo,
                revision=rev,
                local_dir=dest,
                allow_patterns=list(request.allow) or None,
                ignore_patterns=list(request.ignore) or None,
                max_workers=max_workers,
                token=token,
                endpoint=self.endpoint,
            )
        # huggingface_hub checks sizes but not content: check each file against the listed hash.
        for f in listing.files:
            verify_file(os.path.join(dest, f.path), f, source=f"hf://{repo}")


def file_digest(path: str, algorithm: str, prefix: bytes = b"") -> str:
    h = hashlib.new(algorithm)
    h.update(prefix)
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def verify_file(path: str, remote: RemoteFile, source: str) -> None:
    """Raise CorruptError when the file's content is not what the hub listed (and delete it)."""
    if remote.sha256:
        actual, expected, what = file_digest(path, "sha256"), remote.sha256, "SHA-256"
    elif remote.git_sha1:
        size = os.path.getsize(path)
        actual, expected, what = file_digest(path, "sha1", b"blob %d\0" % size), remote.git_sha1, "git blob id"
    else:
        return
    if actual.lower() != expected.lower():
        os.unlink(path)
        raise CorruptError(
            f"corrupted download of {source}: {remote.path} failed its {what} check "
            f"(expected {expected[:12]}, got {actual[:12]}); the file was discarded: retry, or check HF_ENDPOINT"
        )


def make_hub(scheme: str) -> ModelScope | HuggingFace:
    hubs: dict[str, type[ModelScope] | type[HuggingFace]] = {"modelscope": ModelScope, "hf": HuggingFace}
    if scheme in hubs:
        return hubs[scheme](os.environ.get(ENDPOINT_ENV[scheme]), os.environ.get(TOKEN_ENV[scheme]))
    raise ValueError(f"no hub for scheme {scheme!r}")
