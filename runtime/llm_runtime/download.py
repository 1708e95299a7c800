"""`llm-runtime download`: fill one model directory of the cache, safely on a shared volume.

Order of work, and why:
1. Cache hit? The directory has its completion marker, the marker answers this request and every
   file has its recorded size -> done, with no lock, no SDK import and no hub request.
2. Take an exclusive flock on `<model dir>.lock` (beside the directory). A second downloader of
   the same model waits here, then finds the first one's marker in step 3 and reuses it.
3. Check the cache again (the holder before us may have finished it).
4. List the files on the hub; check the volume has room for them (cache volume full: need X, have Y).
5. Let the SDK download into `<model dir>.partial` on the same volume (a rerun after a crash resumes
   there: the SDKs skip files that are complete and verified), while a thread logs progress.
6. Check every file is there with its listed size (and, for Hugging Face, its hash), write the
   marker into the temporary directory, then rename it to `<model dir>`. A crash at any point before
   the rename leaves no directory that looks complete.
Network errors are retried with bounded exponential backoff; other failures are final.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from . import layout
from .contract import ENDPOINT_ENV, TOKEN_ENV
from .errors import (
    CorruptError,
    NoModelError,
    NoSpaceError,
    NotFoundError,
    classify,
    no_space_message,
    not_found_message,
)
from .hubs import Listing, filter_listing, make_hub
from .marker import MARKER_NAME, Request, build_marker, cache_hit, files_match, read_marker
from .progress import ProgressWatcher, human_bytes, human_duration

log = logging.getLogger("llm_runtime.download")

PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
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


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


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


@contextmanager
def model_lock(lock_path: str, what: str):
    """Exclusive flock on a file beside the model directory; logs while it waits for another holder."""
    os.makedirs(os.path.dirname(lock_path), exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for another downloader of %s to finish (lock %s)", what, lock_path)
            started = time.monotonic()
            last = started
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.2)
                    if time.monotonic() - last >= 30:
                        last = time.monotonic()
                        log.info("Still waiting for another downloader of %s (%s)", what,
                                 human_duration(last - started))
            log.info("Acquired lock on %s after waiting %s", what, human_duration(time.monotonic() - started))
        yield
    finally:
        os.close(fd)  # releases the lock


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
def _sdk_environment():
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


def _fetch_once(opts: Options, hub, repo: str, revision: str, target: str, partial: str) -> Listing:
    listing = filter_listing(hub.list(repo, revision), opts.request, opts.source, revision)
    if not listing.files:
        raise NotFoundError(not_found_message(opts.source, revision, "no file matches the allow/ignore patterns"))
    total = listing.total_bytes
    os.makedirs(partial, exist_ok=True)
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


def _finish(opts: Options, target: str, partial: str, revision: str, listing: Listing) -> None:
    """Write the marker last, then move the directory into place in one rename."""
    previous = read_marker(target)
    marker = build_marker(opts.source, revision, {f.path: f.size for f in listing.files}, opts.request,
                          commit=listing.commit, completed_at=_now(), previous=previous)
    shutil.rmtree(os.path.join(partial, ".cache", "huggingface"), ignore_errors=True)
    try:
        os.rmdir(os.path.join(partial, ".cache"))
    except OSError:
        pass
    tmp_marker = os.path.join(partial, MARKER_NAME + ".tmp")
    with open(tmp_marker, "w", encoding="utf-8") as fh:
        fh.write(marker.dumps())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_marker, os.path.join(partial, MARKER_NAME))
    _fsync_dir(partial)
    old = None
    if os.path.lexists(target):
        old = f"{target}.old-{os.getpid()}"
        os.rename(target, old)
    os.rename(partial, target)
    _fsync_dir(os.path.dirname(target))
    if old:
        shutil.rmtree(old, ignore_errors=True)


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
    marker = cache_hit(target, opts.source, revision, opts.request)
    if marker:
        log.info("Found complete model %s@%s in cache at %s (%d files, %s); skipped download in %.0f ms",
                 opts.source, revision, target, len(marker.files), human_bytes(marker.total_bytes),
                 1000 * (time.monotonic() - t0))
        return path

    what = f"{opts.source}@{revision}"
    with model_lock(target + LOCK_SUFFIX, what):
        marker = cache_hit(target, opts.source, revision, opts.request)
        if marker:
            log.info("Found complete model %s in cache at %s, downloaded by another pod; reused it", what, target)
            return path
        partial = target + PARTIAL_SUFFIX
        if os.path.isdir(partial):
            log.info("Resumed an interrupted download of %s in %s", what, partial)
        previous = read_marker(target)
        if previous and not files_match(target, previous.files):
            # Complete for another request (other patterns or file): keep its files, add the new ones.
            os.makedirs(partial, exist_ok=True)
            _link_tree(target, partial, previous.files)
        log.info("Started download of %s into %s", what, target)
        repo = source.repo
        token_env = TOKEN_ENV[source.scheme]
        token = os.environ.get(token_env)
        endpoint_env = ENDPOINT_ENV[source.scheme]
        attempt = 0
        with _sdk_environment():
            hub = make_hub(source.scheme)
            while True:
                attempt += 1
                try:
                    listing = _fetch_once(opts, hub, repo, revision, target, partial)
                    break
                except Exception as exc:  # noqa: BLE001 - every failure is classified below
                    err = classify(exc, source=opts.source, revision=revision, scheme=source.scheme,
                                   token_given=bool(token), endpoint=os.environ.get(endpoint_env, ""))
                    if not err.retryable or attempt >= opts.attempts:
                        if err.retryable:
                            err = type(err)(f"{err.message} (gave up after {attempt} attempts)")
                        raise err from exc
                    delay = min(opts.backoff * 2 ** (attempt - 1), opts.backoff_max)
                    log.warning("Failed attempt %d of %d to download %s: %s; retrying in %s", attempt,
                                opts.attempts, what, err.message, human_duration(delay))
                    time.sleep(delay)
        _finish(opts, target, partial, revision, listing)
        log.info("Completed %s: %d files, %s, at %s", what, len(listing.files),
                 human_bytes(listing.total_bytes), path)
        return path
