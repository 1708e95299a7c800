"""`llm-runtime download`: fill one model directory of the cache, safely on a shared volume.

Order of work, and why:
1. Stamp `<model dir>.lock` as used (its mtime is what `llm-runtime gc` reads as "last used").
2. Cache hit? The directory has its completion marker, the marker answers this request and every
   file has its recorded size -> done, with no lock, no SDK import and no hub request.
3. Take an exclusive flock on `<model dir>.lock` (beside the directory). A second downloader of
   the same model waits here, then finds the first one's marker in step 4 and reuses it.
4. Check the cache again (the holder before us may have finished it).
5. Sweep leftovers of earlier runs: `<model dir>~old-*` (replaced directories) are removed, and a
   partial download nobody is writing any more is resumed (the newest) or removed (the others);
   files that cannot be removed (NFS keeps `.nfsXXXX` files while another pod holds them open)
   are left behind, never fatal, because every name this runtime creates is unique.
6. List the files on the hub; check the volume has room for them (cache volume full: need X, have Y).
7. Let the SDK download into this writer's own `<model dir>~partial-<random>` on the same volume,
   while one thread logs progress and another touches the directory every HEARTBEAT_SECONDS: a
   partial whose mtime is older than `stale_after` (by the volume's clock) is abandoned.
8. Check every file is there with its listed size (and, for Hugging Face, its hash), write the
   marker into the partial directory, then rename it to `<model dir>`. A crash at any point before
   the rename leaves no directory that looks complete.

The flock is not the only guard: on NFS mounted with local locks, and on some FUSE CSI drivers,
writers on two nodes both "hold" it. Each writer therefore has its own partial directory, and the
first complete rename wins: a writer that finishes and finds `<model dir>` already complete for
its request discards its own copy. A lost lock costs bandwidth, never correctness.
Network errors are retried with bounded exponential backoff; other failures are final.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import layout
from .contract import CREDENTIALS_SECRET_ENV, ENDPOINT_ENV, TOKEN_ENV
from .errors import (
    CorruptError,
    DownloadError,
    NoModelError,
    NoSpaceError,
    NotFoundError,
    classify,
    env_secrets,
    no_space_message,
    not_found_message,
)
from .hubs import HuggingFace, Listing, ModelScope, filter_listing, make_hub
from .marker import MARKER_NAME, Marker, Request, build_marker, cache_hit, files_match, read_marker, same_content
from .progress import ProgressWatcher, dir_size, human_bytes, human_duration

log = logging.getLogger("llm_runtime.download")

# Names beside a model directory `<dir>`: `<dir>.lock` (flock, and the last-use stamp),
# `<dir>~partial-<id>` (one writer's download; `<dir>.partial` from older versions) and
# `<dir>~old-<id>` (a replaced directory, being removed). No model directory is named like them
# (see layout.revision_segment).
LOCK_SUFFIX = ".lock"
LEGACY_PARTIAL_SUFFIX = ".partial"
PARTIAL_INFIX = "~partial-"
OLD_INFIX = "~old-"
HEARTBEAT_SECONDS = 2.0
# A partial untouched this long is abandoned: five missed heartbeats; a crashed init container is
# restarted by the kubelet after 10 s at the earliest, so it resumes its own download.
DEFAULT_STALE_SECONDS = 10.0
# Files that make a pvc:// directory (or a file) a model vLLM can load.
MODEL_FILE_SUFFIXES = (".safetensors", ".gguf")


@dataclass
class Options:
    source: str
    cache_dir: str
    revision: str | None = None
    request: Request = Request()
    max_workers: int = 8
    progress_interval: float = 5.0
    attempts: int = 5
    backoff: float = 2.0
    backoff_max: float = 60.0
    lock: bool = True  # False only in tests: what a writer sees when flock is not shared between nodes
    stale_after: float = DEFAULT_STALE_SECONDS


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def unique_id() -> str:
    """A name part no other writer picks: pids are useless (always 1 in an init container)."""
    return uuid.uuid4().hex[:12]


def leftover_kind(name: str, model_name: str) -> str | None:
    """'partial' or 'old' when `name` is one of our leftovers beside the model directory `model_name`."""
    if name == model_name + LEGACY_PARTIAL_SUFFIX or name.startswith(model_name + PARTIAL_INFIX):
        return "partial"
    if name.startswith(model_name + OLD_INFIX):
        return "old"
    return None


def leftovers(target: str) -> list[tuple[str, str]]:
    """(kind, path) of every leftover beside `target`."""
    parent, name = os.path.split(target)
    try:
        entries = sorted(os.listdir(parent))
    except OSError:
        return []
    return [(kind, os.path.join(parent, e)) for e in entries if (kind := leftover_kind(e, name))]


def volume_now(directory: str) -> float:
    """The time by the clock that stamps mtimes on this volume (an NFS server's clock may differ
    from the node's): the mtime of a file created just now. The local clock if that fails."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".llmops-clock-", dir=directory)
    except OSError:
        return time.time()
    try:
        return os.fstat(fd).st_mtime
    finally:
        os.close(fd)
        try:
            os.unlink(probe)
        except OSError:
            pass


def idle_seconds(path: str, now: float) -> float:
    """How long a partial directory has gone without a heartbeat (its own mtime); 0 if it is gone."""
    try:
        return now - os.stat(path).st_mtime
    except OSError:
        return 0.0


def remove_tree(path: str) -> bool:
    """Remove a directory as far as possible; True when it is gone. Files that cannot be removed
    (NFS `.nfsXXXX` files held open by another pod) stay, with a warning: never fatal."""
    failed: list[str] = []
    def keep_going(_function: Any, failed_path: str, _error: Any) -> None:
        failed.append(failed_path)

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=keep_going)
    else:  # onerror is deprecated from 3.12
        shutil.rmtree(path, onerror=keep_going)
    if failed and os.path.lexists(path):
        log.warning("Left %s behind: %d entries could not be removed (held open elsewhere?); "
                    "a later run or llm-runtime gc removes them", path, len(failed))
        return False
    return True


def touch(path: str) -> None:
    """Create `path` if needed and set its mtime to now; silently nothing on a read-only volume."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o664))
        os.utime(path)
    except OSError:
        pass


def free_bytes(path: str) -> int:
    """Free space of the volume holding `path` (the nearest existing ancestor)."""
    while not os.path.exists(path):
        path = os.path.dirname(path) or "."
    return shutil.disk_usage(path).free


def check_pvc(directory: str, source: str, file: str | None) -> str:
    """A pvc:// model is used in place: check it is there and looks like a model."""
    claim_hint = "check the claim is mounted and the path inside it in the model source"
    if file:
        path = os.path.join(directory, file)
        if not os.path.isfile(path):
            raise NoModelError(f"no model file at {path} ({source}, file {file!r}): {claim_hint}")
        return path
    if not os.path.isdir(directory):
        raise NoModelError(f"no model directory at {directory} ({source}): {claim_hint}")
    names = os.listdir(directory)
    if "config.json" in names or any(n.endswith(MODEL_FILE_SUFFIXES) for n in names):
        return directory
    raise NoModelError(
        f"no model in {directory} ({source}): expected config.json, *.safetensors or *.gguf; {claim_hint}"
    )


def try_lock(lock_path: str) -> int | None:
    """An fd holding an exclusive flock on `lock_path`, or None when another process holds it."""
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


@contextmanager
def model_lock(lock_path: str, what: str, enabled: bool = True) -> Iterator[None]:
    """Exclusive flock on a file beside the model directory; logs while it waits for another holder.

    Lock files are never deleted: a process waiting on a deleted file's lock would hold a lock
    nobody else sees.
    """
    if not enabled:
        log.info("Skipped the lock on %s (--no-lock)", what)
        yield
        return
    fd = try_lock(lock_path)
    if fd is None:
        log.info("Waiting for another downloader of %s to finish (lock %s)", what, lock_path)
        started = last = time.monotonic()
        while (fd := try_lock(lock_path)) is None:
            time.sleep(0.2)
            if time.monotonic() - last >= 30:
                last = time.monotonic()
                log.info("Still waiting for another downloader of %s (%s)", what, human_duration(last - started))
        log.info("Acquired lock on %s after waiting %s", what, human_duration(time.monotonic() - started))
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _heartbeat(path: str, interval: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Touch `path` every `interval` seconds, so other writers see this partial is alive."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                os.utime(path)
            except OSError:
                pass  # renamed into place, or adopted by another writer: nothing to keep alive

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def _start_partial(target: str, stale_after: float) -> tuple[str, str | None]:
    """Sweep leftovers beside `target` and return (this writer's partial directory, the abandoned
    partial it resumes or None). Called under the lock, and tolerant of writers that ignore it."""
    now = volume_now(os.path.dirname(target))
    abandoned = []
    for kind, path in leftovers(target):
        if kind == "old":
            remove_tree(path)  # what a finished writer moved aside and could not remove
        elif idle_seconds(path, now) >= stale_after:
            abandoned.append(path)
        # else: a live writer's heartbeat (possible only when the flock is not shared): leave it be
    partial = f"{target}{PARTIAL_INFIX}{unique_id()}"
    resumed = None
    for path in sorted(abandoned, key=dir_size, reverse=True):  # resume the one that holds the most bytes
        if resumed is None:
            try:
                os.rename(path, partial)
                resumed = path
                continue
            except OSError:
                pass  # another writer took it first
        remove_tree(path)
    os.makedirs(partial, exist_ok=True)
    try:
        os.unlink(os.path.join(partial, MARKER_NAME))  # a crash between marker and rename: not ours to trust
    except OSError:
        pass
    os.utime(partial)
    return partial, resumed


def _release(partial: str) -> None:
    """Give up a partial directory on failure: mtime 0 lets the next writer resume it at once."""
    try:
        os.utime(partial, (0, 0))
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _link_tree(src: str, dst: str, files: dict[str, int]) -> None:
    """Seed a temporary directory with an existing complete directory's files (hard links: free)."""
    for path in files:
        s, d = os.path.join(src, path), os.path.join(dst, path)
        if os.path.exists(d):
            continue
        os.makedirs(os.path.dirname(d), exist_ok=True)
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)


def _reusable_marker(opts: Options, target: str, revision: str, commit: str | None) -> Marker | None:
    """The marker of `target` when its files may join this download (same content, intact), else None."""
    previous = read_marker(target)
    if previous and same_content(previous, opts.source, revision, commit) and not files_match(target, previous.files):
        return previous
    return None


def _present_bytes(directory: str, listing: Listing) -> int:
    done = 0
    for f in listing.files:
        try:
            if os.path.getsize(os.path.join(directory, f.path)) == f.size:
                done += f.size
        except OSError:
            pass
    return done


@contextmanager
def _sdk_environment() -> Iterator[None]:
    """Give the SDKs private, throw-away cache and config dirs unless the user chose some.

    With local_dir the SDKs still write lock files and refs under their home; a non-root container
    may have no writable HOME, and nothing of it should outlive the run.
    """
    scratch = tempfile.mkdtemp(prefix="llm-runtime-")
    defaults = {
        "HF_HOME": os.path.join(scratch, "hf"),
        "MODELSCOPE_CACHE": os.path.join(scratch, "modelscope"),
        "MODELSCOPE_HOME": os.path.join(scratch, "modelscope-home"),
        "MODELSCOPE_LOG_LEVEL": str(logging.WARNING),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "DO_NOT_TRACK": "1",
        "TQDM_DISABLE": "1",
    }
    added = [k for k in defaults if k not in os.environ]
    for k in added:
        os.environ[k] = defaults[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)
        shutil.rmtree(scratch, ignore_errors=True)


def _fetch_once(opts: Options, hub: ModelScope | HuggingFace, repo: str, revision: str, target: str,
                partial: str) -> Listing:
    listing = filter_listing(hub.list(repo, revision), opts.request, opts.source, revision)
    if not listing.files:
        raise NotFoundError(not_found_message(opts.source, revision, "no file matches the allow/ignore patterns"))
    total = listing.total_bytes
    os.makedirs(partial, exist_ok=True)
    previous = _reusable_marker(opts, target, revision, listing.commit)
    if previous:
        # Complete for another request (other patterns or file): keep its files, add the new ones.
        _link_tree(target, partial, previous.files)
    need = total - _present_bytes(partial, listing)
    have = free_bytes(partial)
    # A little headroom: the SDKs write temporary files and metadata beside the data.
    if need > 0 and have < need + min(need // 100, 64 << 20):
        raise NoSpaceError(no_space_message(need, have, os.path.dirname(target)))
    log.info("Listed %d files (%s) of %s@%s%s; %s left to download", len(listing.files), human_bytes(total),
             opts.source, revision, f" (commit {listing.commit[:12]})" if listing.commit else "",
             human_bytes(max(need, 0)))
    started = time.monotonic()
    with ProgressWatcher(partial, total, log.info, opts.progress_interval):
        hub.fetch(repo, revision, opts.request, partial, opts.max_workers, listing)
    elapsed = time.monotonic() - started
    bad = files_match(partial, {f.path: f.size for f in listing.files})
    if bad:
        raise CorruptError(
            f"incomplete download of {opts.source}: {', '.join(bad[:3])} missing or of the wrong size after the "
            f"hub SDK finished; retry"
        )
    rate = human_bytes(max(need, 0) / elapsed) if elapsed > 0 else "?"
    log.info("Downloaded %s in %s (%s/s)", human_bytes(max(need, 0)), human_duration(elapsed), rate)
    return listing


def _write_marker(opts: Options, target: str, partial: str, revision: str, listing: Listing) -> None:
    """The marker goes in last, atomically. It also vouches for the files of a complete `target` of
    the same content, linked in first (another request's files, or another writer's), and keeps
    what this partial's marker from an earlier turn of `_finish` held."""
    current = _reusable_marker(opts, target, revision, listing.commit)
    if current:
        _link_tree(target, partial, current.files)
    earlier = [m for m in (read_marker(partial), current) if m]
    marker = build_marker(opts.source, revision, {f.path: f.size for f in listing.files}, opts.request,
                          commit=listing.commit, completed_at=_now(), previous=earlier)
    tmp_marker = os.path.join(partial, MARKER_NAME + ".tmp")
    with open(tmp_marker, "w", encoding="utf-8") as fh:
        fh.write(marker.dumps())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_marker, os.path.join(partial, MARKER_NAME))
    _fsync_dir(partial)


def _finish(opts: Options, target: str, partial: str, revision: str, listing: Listing) -> bool:
    """Move the partial directory into place; True if it was, False if another writer's complete
    copy was there first and ours was discarded.

    `rename(partial, target)` fails while `target` exists, so of two writers that ignore each other's
    lock exactly one wins; the other finds the winner's marker and reuses it. A `target` that does
    not answer this request (other patterns) is moved aside under a unique name, then removed.
    """
    shutil.rmtree(os.path.join(partial, ".cache", "huggingface"), ignore_errors=True)
    try:
        os.rmdir(os.path.join(partial, ".cache"))
    except OSError:
        pass
    moved_aside = []
    try:
        for _ in range(10):  # each turn either ends or moves a directory another writer just put in place
            if cache_hit(target, opts.source, revision, opts.request):
                remove_tree(partial)
                return False
            _write_marker(opts, target, partial, revision, listing)
            try:
                os.rename(partial, target)
                _fsync_dir(os.path.dirname(target))
                return True
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
            old = f"{target}{OLD_INFIX}{unique_id()}"
            try:
                os.rename(target, old)
                moved_aside.append(old)
            except FileNotFoundError:
                pass  # another writer moved it first
        raise DownloadError(f"could not move the download of {opts.source} into {target}: other writers "
                            f"keep replacing it; retry")
    finally:
        for old in moved_aside:
            remove_tree(old)


def run(opts: Options) -> str:
    """Make the model available under the cache; return the path to give `vllm serve`."""
    source = layout.parse_source(opts.source)
    revision = layout.effective_revision(source, opts.revision)
    target = layout.model_dir(opts.cache_dir, source, opts.revision)
    path = layout.model_path(opts.cache_dir, source, opts.revision, opts.request.file)

    if source.scheme == "pvc":
        check_pvc(target, opts.source, opts.request.file)
        log.info("Checked %s: model present at %s; nothing to download", opts.source, path)
        return path

    t0 = time.monotonic()
    lock_path = target + LOCK_SUFFIX
    # Stamped before the check: `llm-runtime gc` re-reads the stamp after moving a directory aside
    # and puts it back when a downloader stamped it meanwhile.
    touch(lock_path)
    marker = cache_hit(target, opts.source, revision, opts.request)
    if marker:
        log.info("Found complete model %s@%s in cache at %s (%d files, %s); skipped download in %.0f ms",
                 opts.source, revision, target, len(marker.files), human_bytes(marker.total_bytes),
                 1000 * (time.monotonic() - t0))
        return path

    what = f"{opts.source}@{revision}"
    with model_lock(lock_path, what, enabled=opts.lock):
        marker = cache_hit(target, opts.source, revision, opts.request)
        if marker:
            log.info("Found complete model %s in cache at %s, downloaded by another pod; reused it", what, target)
            return path
        partial, resumed = _start_partial(target, opts.stale_after)
        if resumed:
            log.info("Resumed an interrupted download of %s from %s", what, resumed)
        log.info("Started download of %s into %s", what, target)
        try:
            with _heartbeat(partial):
                listing = _download(opts, source, revision, target, partial)
                placed = _finish(opts, target, partial, revision, listing)
        except BaseException:
            _release(partial)
            raise
        touch(lock_path)
        if placed:
            log.info("Completed %s: %d files, %s, at %s", what, len(listing.files),
                     human_bytes(listing.total_bytes), path)
        else:
            log.info("Found complete model %s at %s, downloaded by another writer first; discarded this copy",
                     what, target)
        return path


def _download(opts: Options, source: layout.ModelSource, revision: str, target: str, partial: str) -> Listing:
    """Fetch into `partial`, retrying network errors with bounded exponential backoff."""
    token = os.environ.get(TOKEN_ENV[source.scheme])
    endpoint = os.environ.get(ENDPOINT_ENV[source.scheme], "")
    what = f"{opts.source}@{revision}"
    attempt = 0
    with _sdk_environment():
        hub = make_hub(source.scheme)
        while True:
            attempt += 1
            try:
                return _fetch_once(opts, hub, source.repo, revision, target, partial)
            except Exception as exc:  # every failure is classified below
                err = classify(exc, source=opts.source, revision=revision, scheme=source.scheme,
                               token_given=bool(token), endpoint=endpoint, secrets=env_secrets(os.environ),
                               credentials_secret=os.environ.get(CREDENTIALS_SECRET_ENV, ""))
                if not err.retryable or attempt >= opts.attempts:
                    if err.retryable:
                        err = type(err)(f"{err.message} (gave up after {attempt} attempts)")
                    raise err from exc
                delay = min(opts.backoff * 2 ** (attempt - 1), opts.backoff_max)
                log.warning("Failed attempt %d of %d to download %s: %s; retrying in %s", attempt,
                            opts.attempts, what, err.message, human_duration(delay))
                time.sleep(delay)
