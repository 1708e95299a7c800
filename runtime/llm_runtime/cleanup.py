"""`llm-runtime gc`: remove what the model cache no longer needs; safe while downloads run.

    llm-runtime gc --cache-dir DIR --older-than DURATION [--keep SOURCE[@REVISION] ...] [--dry-run]

Only `<cache>/modelscope/` and `<cache>/hf/` are looked at (a pvc:// model's files are never
touched), and only names `llm-runtime download` creates. Beside each model directory it removes:
- `<dir>~old-*`: directories a download replaced and could not remove; always garbage;
- `<dir>~partial-*` (and `<dir>.partial` of older versions): a download nobody has touched for
  DURATION (and never one touched in the last 10 s, whatever DURATION: a running downloader
  touches its partial directory every 2 s). An abandoned one is what a later download resumes;
- the model directory itself (the one with the completion marker) when no `llm-runtime download`
  has used it for DURATION, unless a --keep names it. "Used" is the mtime of `<dir>.lock`, which
  every download stamps, cache hits included. A pod that keeps running stamps nothing: pass --keep
  for every model in use (`SOURCE@REVISION`, or `SOURCE` for all its revisions), or choose a
  DURATION longer than your pods live.
Lock files stay (a process waiting on a deleted lock file would hold a lock nobody else sees),
and so do directories without the marker that are not leftovers: they are not ours to judge.

Below `<cache>/compile/` (the compile cache, llm_runtime.compile_cache) it removes each key
directory `<vLLM version>/<device kind>/<model key>` that no engine start has used for DURATION
(its `.used` stamp; --keep protects a model's compiled files too), files left half-published by an
engine that died while storing them (an hour old), and the version and device directories that
end up empty. The compiled files of an old vLLM or of a device the cluster no longer has are
never used again: they go once DURATION has passed.

Safe beside downloads: for each model it takes the downloader's lock without waiting and skips
the model when a download holds it; ages are read by the volume's clock (an NFS server's may
differ from the node's). A downloader checks the cache without the lock, after stamping the
lock file; so a model directory is first moved aside, the stamp is read again, and the directory
is moved back if a downloader stamped it meanwhile. Files that cannot be removed (NFS `.nfsXXXX`
files held open by a pod) stay, with a warning, for a later run.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import layout
from .compile_cache import PUBLISHING_PATTERN, USED_SUFFIX
from .download import (
    DEFAULT_STALE_SECONDS,
    LEGACY_PARTIAL_SUFFIX,
    LOCK_SUFFIX,
    OLD_INFIX,
    leftovers,
    remove_tree,
    try_lock,
    unique_id,
    volume_now,
)
from .marker import MARKER_NAME, read_marker
from .progress import dir_size, human_bytes, human_duration

log = logging.getLogger("llm_runtime.gc")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '12h', '7d', '2w', combinations such as '1d12h', or plain seconds -> seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+)([smhdw])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"duration {text!r}: expected e.g. 90s, 30m, 12h, 7d, 2w or 1d12h")
    return float(sum(int(n) * _UNITS[u] for n, u in parts))


def kept_keys(keeps: list[str]) -> list[str]:
    """What --keep protects, relative to the cache: a model's directory (`SOURCE@REVISION`) or every
    revision of a source (`SOURCE`, its `<hub>/<org>/<name>`); the same below `compile/<version>/<device>/`."""
    out = []
    for keep in keeps:
        source_text, _, revision = keep.partition("@")
        source = layout.parse_source(source_text)
        if not source.is_hub:
            raise ValueError(f"--keep {keep!r}: gc never touches pvc:// models; name a hub model")
        key = layout.model_key(source, revision or None)
        out.append(key if revision else os.path.dirname(key))
    return out


def kept_paths(cache_dir: str, keeps: list[str]) -> list[str]:
    """The model directories (or a source's parent of them) that --keep protects."""
    return [os.path.join(cache_dir, key) for key in kept_keys(keeps)]


def _is_kept(path: str, kept: list[str]) -> bool:
    return any(path == k or path.startswith(k + os.sep) for k in kept)


def model_slots(cache_dir: str) -> list[str]:
    """Every `<cache>/<hub>/<org>/<name>/<revision segment>` path the downloader has used: the
    bases of the lock files and leftovers there, and the directories with our marker."""
    slots = set()
    for hub in ("modelscope", "hf"):
        for org in _subdirs(os.path.join(cache_dir, hub)):
            for name in _subdirs(org):
                for entry in _listdir(name):
                    if "~" in entry:
                        slots.add(os.path.join(name, entry.split("~", 1)[0]))
                    elif entry.endswith((LOCK_SUFFIX, LEGACY_PARTIAL_SUFFIX)):
                        slots.add(os.path.join(name, entry.rsplit(".", 1)[0]))
                    elif os.path.isfile(os.path.join(name, entry, MARKER_NAME)):
                        slots.add(os.path.join(name, entry))
    return sorted(slots)


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _subdirs(path: str) -> list[str]:
    return [os.path.join(path, e) for e in _listdir(path) if os.path.isdir(os.path.join(path, e))]


def _fresh_mtime(path: str) -> float:
    """mtime read through open(): NFS revalidates attributes on open, a bare stat may be cached."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return 0.0
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Removal:
    path: str
    kind: str  # partial | old | model | compiled | publishing
    size: int
    idle: float  # seconds
    stamp: float = 0.0  # model only: the mtime of its lock file when it was judged unused


def collect(cache_dir: str, older_than: float, keeps: Sequence[str] = (), dry_run: bool = False) -> list[Removal]:
    """Remove (or with dry_run only report) what the module docstring describes; return it."""
    kept = kept_paths(cache_dir, list(keeps))  # a malformed --keep is refused before anything is removed
    now = volume_now(cache_dir)
    removed: list[Removal] = []
    for model in model_slots(cache_dir):
        fd = try_lock(model + LOCK_SUFFIX)
        if fd is None:
            log.info("Skipped %s: a download holds its lock", model)
            continue
        try:
            removed += _collect_model(model, now, older_than, kept, dry_run)
        finally:
            os.close(fd)
    removed += _collect_compiled(cache_dir, now, older_than, kept_keys(list(keeps)), dry_run)
    verb = "Would free" if dry_run else "Freed"
    log.info("%s %s in %d directories of %s", verb, human_bytes(sum(r.size for r in removed)), len(removed), cache_dir)
    return removed


def _collect_model(model: str, now: float, older_than: float, kept: list[str], dry_run: bool) -> list[Removal]:
    """One model directory and its leftovers, under its lock."""
    out = []
    for kind, path in leftovers(model):
        try:
            idle = now - os.stat(path).st_mtime
        except OSError:
            continue
        # A partial with a fresh heartbeat is a live download, whatever --older-than says.
        if kind == "old" or idle >= max(older_than, DEFAULT_STALE_SECONDS):
            out.append(Removal(path, kind, dir_size(path), idle))
    if read_marker(model) is not None and not _is_kept(model, kept):
        stamp = _fresh_mtime(model + LOCK_SUFFIX)
        used = max(stamp, _fresh_mtime(os.path.join(model, MARKER_NAME)))  # stamped, or completed
        if now - used >= older_than:
            out.append(Removal(model, "model", dir_size(model), now - used, stamp))
    return _remove_all(out, dry_run)


_WHAT = {"partial": "abandoned partial download", "old": "replaced directory", "model": "unused model",
         "compiled": "unused compiled files", "publishing": "half-published compiled file"}


def _remove_all(out: list[Removal], dry_run: bool) -> list[Removal]:
    done = []
    for r in out:
        what = _WHAT[r.kind]
        if dry_run:
            log.info("Would remove %s %s (%s, idle %s)", what, r.path, human_bytes(r.size), human_duration(r.idle))
            done.append(r)
        elif _remove(r):
            log.info("Removed %s %s (%s, idle %s)", what, r.path, human_bytes(r.size), human_duration(r.idle))
            done.append(r)
    return done


def _remove(r: Removal) -> bool:
    """Remove one directory; a model directory is moved aside first and put back if a downloader
    stamped it since it was judged unused (the downloader's cache check takes no lock, but it
    stamps first: whoever stamped before the move sees the change here, whoever stamps after it
    finds no directory and downloads). Compiled files go the same way, by their `.used` stamp: an
    engine that starts meanwhile finds the directory back, or none and compiles."""
    if r.kind == "publishing":
        try:
            os.unlink(r.path)
            return True
        except OSError:
            return False
    if r.kind not in ("model", "compiled"):
        return remove_tree(r.path)
    stamp = r.path + (LOCK_SUFFIX if r.kind == "model" else USED_SUFFIX)
    aside = f"{r.path}{OLD_INFIX}{unique_id()}"
    try:
        os.rename(r.path, aside)
    except OSError as exc:
        log.warning("Could not move %s aside: %s", r.path, exc)
        return False
    if _fresh_mtime(stamp) != r.stamp:
        os.rename(aside, r.path)
        log.info("Kept %s: %s used it just now", r.path, "a download" if r.kind == "model" else "an engine start")
        return False
    remove_tree(aside)
    if r.kind == "compiled":
        try:
            os.unlink(stamp)
        except OSError:
            pass
    return True


# Files being published are renamed into place within seconds: one an hour old was left by an engine
# that died while storing it.
PUBLISHING_STALE_SECONDS = 3600.0
_KEY_DEPTH = 6  # <vLLM version>/<device kind>/<hub>/<org>/<name>/<revision>


def _collect_compiled(cache_dir: str, now: float, older_than: float, kept_keys: list[str],
                      dry_run: bool) -> list[Removal]:
    """Key directories of the compile cache unused for `older_than`, files half-published long ago,
    and (after a real run) the directories left empty. `kept_keys` are model keys (or, for a
    --keep without revision, their `<hub>/<org>/<name>` prefixes) whose compiled files stay."""
    root = os.path.join(cache_dir, layout.COMPILE_DIR)
    out: list[Removal] = []
    for parent, dirs, _files in os.walk(root):
        depth = 0 if parent == root else os.path.relpath(parent, root).count(os.sep) + 1
        if OLD_INFIX in os.path.basename(parent):
            out.append(Removal(parent, "old", dir_size(parent), 0.0))
        elif depth == _KEY_DEPTH:
            key = os.path.relpath(parent, root).split(os.sep, 2)[2]
            stamp = _fresh_mtime(parent + USED_SUFFIX) or _fresh_mtime(parent)
            if not _is_kept(key, kept_keys) and now - stamp >= older_than:
                out.append(Removal(parent, "compiled", dir_size(parent), now - stamp, stamp))
        if depth >= _KEY_DEPTH or OLD_INFIX in os.path.basename(parent):
            dirs[:] = []  # below a key directory is vLLM's and torch's own layout
    going = [r.path for r in out]
    for parent, _dirs, files in os.walk(root):
        if any(parent == path or parent.startswith(path + os.sep) for path in going):
            continue
        for name in files:
            path = os.path.join(parent, name)
            if PUBLISHING_PATTERN.match(name):
                info = os.stat(path)
                if now - info.st_mtime >= PUBLISHING_STALE_SECONDS:
                    out.append(Removal(path, "publishing", info.st_size, now - info.st_mtime))
    done = _remove_all(out, dry_run)
    if not dry_run:
        _remove_empty_directories(root)
    return done


def _remove_empty_directories(root: str) -> None:
    for parent, _dirs, _files in os.walk(root, topdown=False):
        if parent != root:
            try:
                os.rmdir(parent)  # only succeeds when empty
            except OSError:
                pass
