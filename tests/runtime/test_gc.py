"""`llm-runtime gc` (issue 11, item 9): what it removes, what it never removes, and that it is safe
beside running downloads."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llm_runtime import cleanup, compile_cache, layout
from llm_runtime import download as dl
from llm_runtime.marker import MARKER_NAME, Request, build_marker

HOUR = 3600


def _age(path: Path, seconds: float) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def make_model(cache: Path, source: str, revision: str | None, used_ago: float) -> Path:
    """A complete model directory as `llm-runtime download` leaves it, last used `used_ago` seconds ago."""
    target = Path(layout.model_dir(str(cache), layout.parse_source(source), revision))
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    rev = layout.effective_revision(layout.parse_source(source), revision)
    (target / MARKER_NAME).write_text(build_marker(source, rev, {"config.json": 2}, Request()).dumps())
    lock = Path(str(target) + dl.LOCK_SUFFIX)
    lock.touch()
    for p in (lock, target / MARKER_NAME):
        _age(p, used_ago)
    return target


def make_leftover(target: Path, name: str, idle: float) -> Path:
    d = target.parent / name
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "model.safetensors").write_bytes(b"w" * 1000)
    _age(d, idle)
    return d


def run_gc(cache: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2] / "runtime"))
    return subprocess.run([sys.executable, "-m", "llm_runtime.cli", "gc", "--cache-dir", str(cache), *args],
                          env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def cache(tmp_path):
    c = tmp_path / "cache"
    c.mkdir()
    return c


def test_gc_removes_abandoned_downloads_and_unused_models_only(cache):
    old = make_model(cache, "modelscope://org/a", None, used_ago=2 * HOUR)
    recent = make_model(cache, "modelscope://org/a", "v1.0", used_ago=5 * 60)
    kept = make_model(cache, "hf://org/b", None, used_ago=2 * HOUR)
    kept_rev = make_model(cache, "modelscope://org/c", "release/v1", used_ago=2 * HOUR)
    stale = make_leftover(old, "master~partial-0123456789ab", idle=2 * HOUR)
    legacy = make_leftover(recent, "v1.0.partial", idle=2 * HOUR)
    live = make_leftover(old, "master~partial-ba9876543210", idle=0)
    young = make_leftover(recent, "v1.0~partial-young", idle=10 * 60)
    replaced = make_leftover(recent, "v1.0~old-0123456789ab", idle=0)
    claim = cache / "models" / "qwen"  # a pvc:// model lives in the same volume: never ours to judge
    claim.mkdir(parents=True)
    (claim / "config.json").write_text("{}")
    _age(claim, 10 * HOUR)
    stranger = cache / "modelscope" / "org" / "a" / "notes"  # not ours either: no marker
    stranger.mkdir()
    _age(stranger, 10 * HOUR)
    everything = sorted(p for p in cache.rglob("*"))

    keep = ["--keep", "hf://org/b", "--keep", "modelscope://org/c@release/v1"]
    r = run_gc(cache, "--older-than", "1h", *keep, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert sorted(p for p in cache.rglob("*")) == everything
    assert r.stderr.count("Would remove") == 4, r.stderr
    assert re.search(r"Would free 3\.\d KiB in 4 directories", r.stderr)

    r = run_gc(cache, "--older-than", "1h", *keep)
    assert r.returncode == 0, r.stderr
    for gone in (old, stale, legacy, replaced):
        assert not gone.exists(), gone
    for there in (recent, kept, kept_rev, live, young, claim, stranger):
        assert there.exists(), there
    assert "Removed unused model " + str(old) in r.stderr
    assert "Removed abandoned partial download " + str(stale) in r.stderr
    # Lock files stay: a process waiting on a deleted one would hold a lock nobody else sees.
    assert Path(str(old) + dl.LOCK_SUFFIX).exists()
    assert not list(cache.rglob("*~old-*"))


def test_gc_skips_a_model_whose_download_holds_the_lock(cache):
    target = make_model(cache, "modelscope://org/a", None, used_ago=2 * HOUR)
    stale = make_leftover(target, "master~partial-0123456789ab", idle=2 * HOUR)
    fd = os.open(str(target) + dl.LOCK_SUFFIX, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = run_gc(cache, "--older-than", "1h")
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    assert "Skipped " + str(target) + ": a download holds its lock" in r.stderr
    assert target.exists() and stale.exists()
    assert run_gc(cache, "--older-than", "1h").returncode == 0
    assert not target.exists() and not stale.exists()


def test_gc_puts_back_a_model_a_downloader_used_while_it_was_judged(cache):
    """The downloader's cache check takes no lock; it stamps the lock file first, and gc re-reads
    the stamp after moving the directory aside."""
    target = make_model(cache, "modelscope://org/a", None, used_ago=2 * HOUR)
    judged = cleanup.Removal(str(target), "model", 0, 2 * HOUR, os.stat(str(target) + dl.LOCK_SUFFIX).st_mtime)
    dl.touch(str(target) + dl.LOCK_SUFFIX)  # a downloader found it meanwhile
    assert cleanup._remove(judged) is False
    assert (target / MARKER_NAME).exists()
    assert not list(cache.rglob("*~old-*"))


def test_gc_beside_a_running_download_without_lock_leaves_its_partial(ms_hub, runner, tiny):
    """Even with --older-than 0 and no shared lock, a partial with a fresh heartbeat is not touched."""
    ms_hub.rate = 2 * 1024 * 1024  # ~2.3 s
    source = "modelscope://tiny-org/tiny-model"
    proc = runner.popen(source, "--no-lock", hub=ms_hub)
    target = Path(layout.model_dir(str(runner.cache), layout.parse_source(source), None))
    deadline = time.monotonic() + 30
    while not (target.parent.exists() and list(target.parent.glob("master~partial-*"))):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    r = run_gc(runner.cache, "--older-than", "0s")
    assert proc.poll() is None, "the download finished before gc ran: slow the hub down"
    assert r.returncode == 0, r.stderr
    assert "Removed" not in r.stderr
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert sorted(ms_hub.file_requests()) == sorted(tiny.files)
    # Unused now (by --older-than 0): gc removes it; the next download fetches it again.
    r = run_gc(runner.cache, "--older-than", "0s")
    assert "Removed unused model " + str(target) in r.stderr
    ms_hub.rate = None
    assert runner.run(source, hub=ms_hub).returncode == 0
    assert (target / MARKER_NAME).exists()


def make_compiled(cache: Path, version: str, device: str, source: str, used_ago: float) -> Path:
    """A key directory of the compile cache as engine starts leave it, last used `used_ago` seconds ago."""
    key = cache / layout.COMPILE_DIR / version / device / layout.model_key(layout.parse_source(source), None)
    (key / "inductor" / "3b").mkdir(parents=True)
    (key / "inductor" / "3b" / "kernel.so").write_bytes(b"k" * 1000)
    stamp = Path(str(key) + compile_cache.USED_SUFFIX)
    stamp.touch()
    _age(stamp, used_ago)
    return key


def test_gc_ages_out_compiled_files_no_start_used(cache):
    unused = make_compiled(cache, "0.32.0", "cpu-a", "modelscope://org/a", used_ago=3 * HOUR)
    old_vllm = make_compiled(cache, "0.31.0", "cpu-a", "modelscope://org/a", used_ago=30 * HOUR)
    used = make_compiled(cache, "0.32.0", "cpu-a", "modelscope://org/b", used_ago=60)
    kept = make_compiled(cache, "0.32.0", "cpu-b", "hf://org/kept", used_ago=30 * HOUR)
    half = used / "inductor" / "3b" / f".kernel2.so.llmops-{'0' * 12}.tmp"  # its publisher died
    half.write_bytes(b"half")
    _age(half, 2 * HOUR)
    fresh_half = used / "inductor" / f".other.so.llmops-{'1' * 12}.tmp"  # being published right now
    fresh_half.write_bytes(b"half")
    everything = sorted(cache.rglob("*"))

    r = run_gc(cache, "--older-than", "2h", "--keep", "hf://org/kept", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert sorted(cache.rglob("*")) == everything and r.stderr.count("Would remove") == 3, r.stderr

    r = run_gc(cache, "--older-than", "2h", "--keep", "hf://org/kept")
    assert r.returncode == 0, r.stderr
    assert "Removed unused compiled files " + str(unused) in r.stderr
    assert "Removed half-published compiled file " + str(half) in r.stderr
    for gone in (unused, old_vllm, half, Path(str(unused) + compile_cache.USED_SUFFIX)):
        assert not gone.exists(), gone
    assert not (cache / layout.COMPILE_DIR / "0.31.0").exists()  # emptied version directories go too
    for there in (used, kept, fresh_half, used / "inductor" / "3b" / "kernel.so"):
        assert there.exists(), there


def test_gc_puts_back_compiled_files_an_engine_start_used_while_they_were_judged(cache):
    key = make_compiled(cache, "0.32.0", "cpu-a", "modelscope://org/a", used_ago=3 * HOUR)
    stamp = str(key) + compile_cache.USED_SUFFIX
    judged = cleanup.Removal(str(key), "compiled", 0, 3 * HOUR, os.stat(stamp).st_mtime)
    dl.touch(stamp)  # an engine started meanwhile
    assert cleanup._remove(judged) is False
    assert (key / "inductor" / "3b" / "kernel.so").exists() and not list(cache.rglob("*~old-*"))


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800),
                                          ("2w", 1209600), ("1d12h", 129600), ("45", 45), ("0s", 0)])
def test_parse_duration(text, seconds):
    assert cleanup.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1y", "h", "1h 30m", "-5m", "5mm"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="duration"):
        cleanup.parse_duration(text)


def test_gc_usage_errors(cache):
    assert run_gc(cache, "--older-than", "soon").returncode == 2
    r = run_gc(cache, "--older-than", "1h", "--keep", "pvc://claim/models")
    assert r.returncode == 1 and "gc never touches pvc:// models" in r.stderr
