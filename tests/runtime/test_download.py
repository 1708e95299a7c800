"""`llm-runtime download` with the real ModelScope and Hugging Face SDKs against loopback hubs."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from llm_runtime import download as dl
from llm_runtime import layout
from llm_runtime.cli import main as cli_main
from llm_runtime.errors import EXIT_AUTH, EXIT_CORRUPT, EXIT_NETWORK, EXIT_NO_MODEL, EXIT_NO_SPACE, EXIT_NOT_FOUND
from llm_runtime.marker import MARKER_NAME, Request
from tests.hubs import HFHub, ModelScopeHub, TinyModel

MS_REPO = "tiny-org/tiny-model"  # as in conftest.py

GGUF = "gguf/tiny-q4_0.gguf"


def target_dir(cache: Path, source: str, revision: str | None = None) -> Path:
    return Path(layout.model_dir(str(cache), layout.parse_source(source), revision))


def beside(target: Path) -> list[str]:
    """What lies beside a model directory, apart from the directory and its lock: leftovers."""
    return sorted(p.name for p in target.parent.iterdir() if p.name not in (target.name, target.name + dl.LOCK_SUFFIX))


def assert_complete(directory: Path, tiny, files: list[str] | None = None) -> dict:
    files = sorted(files or tiny.files)
    marker = json.loads((directory / MARKER_NAME).read_text())
    assert sorted(marker["files"]) == files
    for path in files:
        assert (directory / path).read_bytes() == tiny.files[path], path
        assert marker["files"][path] == len(tiny.files[path])
    assert marker["totalBytes"] == sum(len(tiny.files[p]) for p in files)
    return marker


def test_fresh_download(hub, runner, tiny):
    r = runner.run(hub.source, hub=hub)
    assert r.returncode == 0, r.stderr
    target = target_dir(runner.cache, hub.source)
    marker = assert_complete(target, tiny)
    assert marker["source"] == hub.source and marker["revision"] == hub.default_revision
    assert marker["requests"] == [{"file": None, "allow": [], "ignore": []}]
    # Every file fetched exactly once; nothing half-done left beside the model.
    assert sorted(hub.file_requests()) == sorted(tiny.files)
    assert beside(target) == []
    assert Path(str(target) + dl.LOCK_SUFFIX).exists()
    assert not (target / ".cache").exists()
    # Log lines: capitalised, past tense.
    assert "Started download of" in r.stderr and "Completed " in r.stderr
    assert r.stderr.count("\n") < 30, "the SDKs' own chatter should stay out of the log"


def test_second_run_is_a_cache_hit_with_zero_hub_requests(hub, runner, tiny):
    assert runner.run(hub.source, hub=hub).returncode == 0
    hub.reset_counts()
    started = time.monotonic()
    r = runner.run(hub.source, hub=hub)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert hub.request_count == 0, hub.requests
    assert "Found complete model" in r.stderr
    # The decision itself, in-process (no interpreter start-up): well under a second.
    opts = dl.Options(source=hub.source, cache_dir=str(runner.cache))
    started = time.monotonic()
    dl.run(opts)
    assert time.monotonic() - started < 1.0
    assert hub.request_count == 0
    assert elapsed < 10


def test_cache_hit_rechecks_sizes(hub, runner, tiny):
    assert runner.run(hub.source, hub=hub).returncode == 0
    target = target_dir(runner.cache, hub.source)
    with open(target / "model.safetensors", "r+b") as fh:
        fh.truncate(10)  # damaged on the volume after completion
    hub.reset_counts()
    r = runner.run(hub.source, hub=hub)
    assert r.returncode == 0, r.stderr
    assert hub.file_requests() == ["model.safetensors"] or "model.safetensors" in hub.file_requests()
    assert_complete(target, tiny)


def test_two_concurrent_downloaders_one_downloads_the_other_reuses(hub, runner, tiny):
    hub.rate = 3 * 1024 * 1024  # ~1.5 s for the model: long enough to overlap
    first = runner.popen(hub.source, hub=hub)
    time.sleep(0.3)
    second = runner.popen(hub.source, hub=hub)
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    # Each file crossed the wire once: only one process downloaded.
    assert sorted(hub.file_requests()) == sorted(tiny.files)
    logs = err1 + err2
    assert "Waiting for another downloader" in logs
    assert "downloaded by another pod; reused it" in logs
    assert_complete(target_dir(runner.cache, hub.source), tiny)


def test_crash_mid_download_then_rerun_completes(hub, runner, tiny):
    hub.rate = 1024 * 1024  # ~4.5 s for the model
    target = target_dir(runner.cache, hub.source)
    proc = runner.popen(hub.source, hub=hub)
    deadline = time.monotonic() + 60
    # Kill once the weights are on the wire (huggingface_hub writes in 10 MB chunks, so the
    # server's view is the reliable one), plus a moment for some bytes to land.
    while "model.safetensors" not in hub.file_requests():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("download never started: " + proc.communicate()[1])
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "finished before the crash: slow the hub down"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    # Nothing that looks complete: no model directory at all, no marker anywhere.
    assert not target.exists()
    assert not list(runner.cache.rglob(MARKER_NAME))
    [partial] = beside(target)
    hub.rate = None
    # A partial whose heartbeat is this fresh may be a live writer's (when the lock is not shared):
    # it is left alone, and a new one is started.
    r = runner.run(hub.source, hub=hub, LLM_RUNTIME_STALE_SECONDS="30")
    assert r.returncode == 0, r.stderr
    assert "Resumed" not in r.stderr
    assert_complete(target, tiny)
    assert beside(target) == [partial]
    # Once it has gone without a heartbeat for the stale time, it is resumed.
    shutil.rmtree(target)
    hub.reset_counts()
    r = runner.run(hub.source, hub=hub, LLM_RUNTIME_STALE_SECONDS="0.5")
    assert r.returncode == 0, r.stderr
    assert "Resumed an interrupted download" in r.stderr and partial in r.stderr
    assert_complete(target, tiny)
    assert beside(target) == []


@pytest.mark.parametrize("token", [None, "wrong-token-value"])
def test_private_model_without_valid_token_gives_actionable_401(hub, runner, token):
    hub.token = "the-right-token"
    extra = {("MODELSCOPE_API_TOKEN" if hub.scheme == "modelscope" else "HF_TOKEN"): token} if token else {}
    r = runner.run(hub.source, hub=hub, **extra)
    assert r.returncode == EXIT_AUTH, r.stderr
    message = runner.message()
    assert message.count("\n") == 1, "exactly one line"
    assert message.startswith("private or gated model: set spec.credentialsSecretRef")
    assert ("HTTP 401") in message
    assert ("the token given was refused" if token else "no token was given") in message
    # The hub's own words, as its server sent them (tests/hubs/server.py), end the line.
    assert ("login required for private model" if hub.scheme == "modelscope" else "invalid credentials") in message
    assert "MODELSCOPE_API_TOKEN" in message if hub.scheme == "modelscope" else "HF_TOKEN" in message
    assert "the-right-token" not in r.stderr + message
    if token:
        assert token not in r.stderr + message
    assert not target_dir(runner.cache, hub.source).exists()


def test_a_named_credentials_secret_that_gave_no_token_is_named_when_the_hub_refuses(hub, runner):
    """The operator mounts the hub token keys optional (a Secret may hold one hub's token only), so a
    missing Secret means no token: the message names it, not just "set credentialsSecretRef"."""
    hub.token = "the-right-token"
    r = runner.run(hub.source, hub=hub, LLMOPS_CREDENTIALS_SECRET="hub-tokens")
    assert r.returncode == EXIT_AUTH, r.stderr
    token_key = "MODELSCOPE_API_TOKEN" if hub.scheme == "modelscope" else "HF_TOKEN"
    assert runner.message().startswith(
        f"private or gated model: the Secret hub-tokens of spec.credentialsSecretRef is missing or has no key {token_key}")
    assert "HTTP 401" in runner.message()


def test_private_model_with_token_from_env(hub, runner, tiny):
    hub.token = "the-right-token"
    env = {("MODELSCOPE_API_TOKEN" if hub.scheme == "modelscope" else "HF_TOKEN"): "the-right-token"}
    r = runner.run(hub.source, hub=hub, **env)
    assert r.returncode == 0, r.stderr
    assert "the-right-token" not in r.stderr
    assert set(hub.seen_auth) == {"Bearer the-right-token"}
    assert_complete(target_dir(runner.cache, hub.source), tiny)


def test_gated_hf_model_gives_actionable_403(hf_hub, runner):
    hf_hub.gated = True
    r = runner.run(f"hf://{MS_REPO}", hub=hf_hub, HF_TOKEN="a-token-without-access")
    assert r.returncode == EXIT_AUTH, r.stderr
    assert runner.message().startswith("private or gated model: set spec.credentialsSecretRef")
    assert "HTTP 403" in runner.message()
    assert "Access to model tiny-org/tiny-model is restricted" in runner.message()


def test_unknown_model_gives_404(hub, runner):
    source = f"{hub.scheme}://tiny-org/no-such-model"
    r = runner.run(source, hub=hub)
    assert r.returncode == EXIT_NOT_FOUND, r.stderr
    assert runner.message().startswith("model or revision not found: " + source)
    assert not target_dir(runner.cache, source).exists()


def test_unknown_revision_gives_404(hub, runner):
    r = runner.run(hub.source, "--revision", "no-such-branch", hub=hub)
    assert r.returncode == EXIT_NOT_FOUND, r.stderr
    assert runner.message().startswith("model or revision not found")
    assert "'no-such-branch'" in runner.message()


def test_corrupted_file_fails_and_is_not_marked_complete(hub, runner):
    hub.corrupt = {"model.safetensors"}
    r = runner.run(hub.source, hub=hub, timeout=180)
    assert r.returncode == EXIT_CORRUPT, r.stderr
    message = runner.message()
    assert message.startswith("corrupted download of " + hub.source)
    assert "model.safetensors" in message or "SHA-256" in message or "Hash" in message
    target = target_dir(runner.cache, hub.source)
    assert not target.exists()
    assert not list(runner.cache.rglob(MARKER_NAME))
    # The bad bytes were not kept under the file's name.
    [partial] = beside(target)
    assert not (target.parent / partial / "model.safetensors").exists()
    # Fixed upstream: the rerun completes, resuming the partial the failed run gave up at once.
    hub.corrupt = set()
    r = runner.run(hub.source, hub=hub)
    assert r.returncode == 0, r.stderr
    assert "Resumed an interrupted download" in r.stderr
    assert beside(target) == []


def test_single_gguf_file(hub, runner, tiny):
    r = runner.run(hub.source, "--file", GGUF, hub=hub)
    assert r.returncode == 0, r.stderr
    assert hub.file_requests() == [GGUF]
    target = target_dir(runner.cache, hub.source)
    marker = assert_complete(target, tiny, [GGUF])
    assert marker["requests"] == [{"file": GGUF, "allow": [], "ignore": []}]
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == sorted(
        [GGUF, MARKER_NAME])
    # What vLLM is given: the file itself.
    src = layout.parse_source(hub.source)
    assert layout.model_path(str(runner.cache), src, None, GGUF) == str(target / GGUF)
    hub.reset_counts()
    assert runner.run(hub.source, "--file", GGUF, hub=hub).returncode == 0
    assert hub.request_count == 0


def test_missing_single_file_is_404(hub, runner):
    r = runner.run(hub.source, "--file", "nope.gguf", hub=hub)
    assert r.returncode == EXIT_NOT_FOUND, r.stderr
    assert "nope.gguf" in runner.message()


def test_patterns_then_full_download_extends_the_directory(hub, runner, tiny):
    r = runner.run(hub.source, "--allow-pattern", "*.json", hub=hub)
    assert r.returncode == 0, r.stderr
    target = target_dir(runner.cache, hub.source)
    assert_complete(target, tiny, ["config.json", "tokenizer.json"])
    hub.reset_counts()
    assert runner.run(hub.source, "--allow-pattern", "*.json", hub=hub).returncode == 0
    assert hub.request_count == 0
    r = runner.run(hub.source, "--ignore-pattern", "*.gguf", "--ignore-pattern", "README.md", hub=hub)
    assert r.returncode == 0, r.stderr
    marker = assert_complete(target, tiny, ["config.json", "model.safetensors", "tokenizer.json"])
    assert len(marker["requests"]) == 2
    assert "config.json" not in hub.file_requests() or hub.scheme == "hf"


def test_progress_is_logged(hub, runner):
    hub.rate = 2 * 1024 * 1024
    r = runner.run(hub.source, "--progress-interval", "0.3", hub=hub)
    assert r.returncode == 0, r.stderr
    lines = re.findall(r"Downloaded [\d.]+ (?:B|KiB|MiB) of 4\.5 MiB \(\d+%\) at [\d.]+ \w+/s, ETA \S+", r.stderr)
    assert lines, r.stderr


def test_network_error_is_retried(hub, runner, tiny):
    hub.drop_first = 2  # the first connections are closed without an answer
    r = runner.run(hub.source, hub=hub)
    assert r.returncode == 0, r.stderr
    assert_complete(target_dir(runner.cache, hub.source), tiny)


def test_unreachable_hub_fails_after_bounded_retries(hub, runner):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {("MODELSCOPE_ENDPOINT" if hub.scheme == "modelscope" else "HF_ENDPOINT"): f"http://127.0.0.1:{port}"}
    started = time.monotonic()
    r = runner.run(hub.source, LLM_RUNTIME_ATTEMPTS="2", **env)
    assert r.returncode == EXIT_NETWORK, r.stderr
    assert time.monotonic() - started < 90
    assert runner.message().startswith(f"could not download {hub.source}")
    assert "gave up after 2 attempts" in runner.message()
    assert "Failed attempt 1 of 2" in r.stderr


def test_cache_volume_full(hub, sandbox, monkeypatch, capsys):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT" if hub.scheme == "modelscope" else "HF_ENDPOINT", hub.url)
    monkeypatch.setattr(dl, "free_bytes", lambda path: 1024)
    log = sandbox / "termination-log"
    code = cli_main(["download", "--source", hub.source, "--cache-dir", str(sandbox / "cache"),
                     "--termination-log", str(log)])
    assert code == EXIT_NO_SPACE
    message = log.read_text()
    assert message.startswith("cache volume full: need 4.5 MiB, have 1.0 KiB")
    assert hub.file_requests() == []


def test_pvc_model_present(runner):
    model = runner.cache / "models" / "qwen"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    r = runner.run("pvc://weights/models/qwen")
    assert r.returncode == 0, r.stderr
    assert "nothing to download" in r.stderr
    (runner.cache / "gguf").mkdir()
    (runner.cache / "gguf" / "m.gguf").write_bytes(b"GGUF")
    assert runner.run("pvc://weights/gguf", "--file", "m.gguf").returncode == 0


@pytest.mark.parametrize("setup,expect", [
    (None, "no model directory at"),
    ("empty", "expected config.json, *.safetensors or *.gguf"),
])
def test_pvc_model_missing(runner, setup, expect):
    if setup == "empty":
        (runner.cache / "models" / "qwen").mkdir(parents=True)
        (runner.cache / "models" / "qwen" / "notes.txt").write_text("x")
    r = runner.run("pvc://weights/models/qwen")
    assert r.returncode == EXIT_NO_MODEL
    assert expect in runner.message()
    assert runner.message().count("\n") == 1


# --- issue 11 ---------------------------------------------------------------------------------

@contextmanager
def serve(scheme: str, repos: dict[str, dict[str, TinyModel]]):
    """A hub of either kind serving `repos`, with `.source(repo)` for its URIs."""
    cls = ModelScopeHub if scheme == "modelscope" else HFHub
    with cls(repos) as hub:
        hub.scheme = scheme
        yield hub


def embedding_model(tiny) -> TinyModel:
    """The sentence-transformers layout embedding models use: config in subfolders."""
    pooling = {"word_embedding_dimension": 64, "pooling_mode_mean_tokens": True}
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
    return TinyModel(files={
        "config.json": tiny.files["config.json"],
        "model.safetensors": tiny.files["model.safetensors"],
        "tokenizer.json": tiny.files["tokenizer.json"],
        "modules.json": json.dumps(modules).encode(),
        "config_sentence_transformers.json": b'{"prompts": {}}',
        "1_Pooling/config.json": json.dumps(pooling).encode(),
        "onnx/deep/model.onnx": b"onnx" * 100,
    })


@pytest.mark.parametrize("scheme", ["modelscope", "hf"])
def test_embedding_model_with_subfolders_downloads_then_hits_the_cache(scheme, runner, tiny):
    """Issue 11, item 5: ModelScope lists folders as "tree" entries; they are not files."""
    model = embedding_model(tiny)
    with serve(scheme, {"BAAI/bge-tiny": {"master" if scheme == "modelscope" else "main": model}}) as hub:
        source = f"{scheme}://BAAI/bge-tiny"
        r = runner.run(source, hub=hub)
        assert r.returncode == 0, r.stderr + runner.message()
        target = target_dir(runner.cache, source)
        assert_complete(target, model)
        assert (target / "1_Pooling" / "config.json").is_file()
        hub.reset_counts()
        r = runner.run(source, hub=hub)
        assert r.returncode == 0, r.stderr
        assert "Found complete model" in r.stderr
        assert hub.request_count == 0, hub.requests


def _variant(tiny, tag: str) -> TinyModel:
    files = dict(tiny.files)
    files["config.json"] = json.dumps({"model_type": "llama", "variant": tag}).encode()
    files["model.safetensors"] = tiny.files["model.safetensors"][:-len(tag)] + tag.encode()  # same size
    return TinyModel(files=files)


@pytest.mark.parametrize("scheme", ["modelscope", "hf"])
def test_revisions_that_sanitize_alike_never_share_files(scheme, runner, tiny):
    """Issue 11, item 7: `release/v1` and `release_v1` were one directory, and a merged marker gave
    a false cache hit on the other revision's weights."""
    slash, underscore = _variant(tiny, "slash"), _variant(tiny, "underscore")
    with serve(scheme, {MS_REPO: {"release/v1": slash, "release_v1": underscore}}) as hub:
        source = f"{scheme}://{MS_REPO}"
        assert runner.run(source, "--revision", "release/v1", hub=hub).returncode == 0
        r = runner.run(source, "--revision", "release_v1", "--file", "config.json", hub=hub)
        assert r.returncode == 0, r.stderr
        r = runner.run(source, "--revision", "release_v1", hub=hub)
        assert r.returncode == 0, r.stderr
        assert target_dir(runner.cache, source, "release/v1") != target_dir(runner.cache, source, "release_v1")
        assert_complete(target_dir(runner.cache, source, "release/v1"), slash)
        marker = assert_complete(target_dir(runner.cache, source, "release_v1"), underscore)
        assert marker["revision"] == "release_v1"
        hub.reset_counts()
        for revision in ("release/v1", "release_v1"):
            assert runner.run(source, "--revision", revision, hub=hub).returncode == 0
        assert hub.request_count == 0


def test_unremovable_leftovers_never_block_a_download(ms_hub, sandbox, monkeypatch, tiny):
    """Issue 11, item 6: a replaced directory is moved aside and removed; on NFS a file another pod
    holds open survives as `.nfsXXXX`. The aside name was `<dir>.old-<pid>` (pid 1 in every init
    container), so the next replacement failed with ENOTEMPTY, for good."""
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", ms_hub.url)
    real_rmtree = shutil.rmtree

    def nfs_rmtree(path, ignore_errors=False, onerror=None, **kwargs):
        """rmtree on NFS while another pod holds files open: their `.nfs*` names cannot be removed."""
        held = sorted(Path(path).rglob(".nfs*"))
        if not held:
            return real_rmtree(path, ignore_errors, onerror, **kwargs)
        for p in sorted(Path(path).rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if p.is_dir():
                if not any(p.iterdir()):
                    p.rmdir()
            elif p not in held:
                p.unlink()
        handler = onerror or kwargs.get("onexc")
        if handler:
            handler(os.unlink, str(held[0]), None)
        elif not ignore_errors:
            raise OSError(errno.EBUSY, "Device or resource busy", str(held[0]))

    monkeypatch.setattr(shutil, "rmtree", nfs_rmtree)
    source = f"modelscope://{MS_REPO}"
    cache = str(sandbox / "cache")
    target = target_dir(sandbox / "cache", source)
    requests = [Request(allow=("*.json",)), Request(ignore=("*.gguf",)), Request()]
    for request in requests:
        if target.exists():
            (target / ".nfs000000000001").write_text("held open by another pod")
        dl.run(dl.Options(source=source, cache_dir=cache, request=request, attempts=1))
    assert_complete(target, tiny)
    stuck = beside(target)
    assert len(stuck) == 2 and all("~old-" in name for name in stuck), stuck
    assert all([p.name for p in (target.parent / n).iterdir()] == [".nfs000000000001"] for n in stuck)


def test_two_writers_without_a_shared_lock_both_succeed(hub, runner, tiny):
    """Issue 11, item 8: with flock not shared between nodes (NFS local locks, some FUSE drivers) two
    writers used to write one `.partial` directory. Each has its own now; the first complete one wins."""
    hub.rate = 3 * 1024 * 1024  # ~1.5 s for the model: long enough to overlap
    target = target_dir(runner.cache, hub.source)
    first = runner.popen(hub.source, "--no-lock", hub=hub)
    deadline = time.monotonic() + 30
    while not (target.parent.exists() and beside(target)):  # the first one's partial directory
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    second = runner.popen(hub.source, "--no-lock", hub=hub)
    out1, err1 = first.communicate(timeout=120)
    out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    logs = err1 + err2
    assert "Waiting for another downloader" not in logs
    # Both downloaded (the bandwidth a lost lock costs), one copy was kept.
    assert sorted(hub.file_requests()) == sorted(list(tiny.files) * 2)
    assert logs.count("Completed ") == 1
    assert "downloaded by another writer first; discarded this copy" in logs
    assert_complete(target, tiny)
    assert beside(target) == []


def test_sweep_resumes_the_newest_abandoned_partial_and_leaves_live_ones(tmp_path):
    """Issue 11, items 6 and 8: under the lock, leftovers are swept; a partial with a fresh heartbeat
    belongs to a live writer (possible only when the lock is not shared) and is left alone."""
    target = tmp_path / "hf" / "org" / "name" / "main"
    target.parent.mkdir(parents=True)
    now = time.time()
    made = {}
    for name, age, size in [("main.partial", 900, 10), ("main~partial-aaaa", 600, 10), ("main~partial-bbbb", 60, 99),
                            ("main~partial-live", 0, 999), ("main~old-cccc", 0, 10), ("main.partial-x", 900, 10),
                            ("mainx~old-1", 900, 10)]:
        d = target.parent / name
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_text(name.ljust(size))
        os.utime(d, (now - age, now - age))
        made[name] = d
    partial, resumed = dl._start_partial(str(target), stale_after=30)
    assert resumed == str(made["main~partial-bbbb"])  # the abandoned one with the most bytes
    assert (Path(partial) / "sub" / "f").read_text().strip() == "main~partial-bbbb"
    assert Path(partial).name.startswith("main~partial-") and Path(partial).name != "main~partial-bbbb"
    # Stale partials and replaced directories are gone; a live writer's partial and other models'
    # names ("main.partial-x" is the directory of revision "main.partial-x") are untouched.
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        [Path(partial).name, "main~partial-live", "main.partial-x", "mainx~old-1"])


TOKEN = "tok-" + "0123456789abcdefghijklmnopqrstuvwxyz"


def test_token_echoed_by_the_hub_appears_in_no_output(hub, runner):
    """Issue 11, item 10: a hub that echoes the token in a redirect URL and in its error body. The SDKs'
    own loggers (ModelScope's does not propagate) printed it, and the termination message was cut
    before it was redacted, so half a token survived."""
    hub.token = TOKEN
    hub.echo_token = True
    r = runner.run(hub.source, hub=hub, **{("MODELSCOPE_API_TOKEN" if hub.scheme == "modelscope" else "HF_TOKEN"):
                                            TOKEN})
    assert r.returncode == EXIT_AUTH, r.stderr
    assert "signature rejected" in runner.message()
    assert "/signed/" in r.stderr if hub.scheme == "modelscope" else True  # the SDK logged the URL
    for where, text in (("stdout", r.stdout), ("stderr", r.stderr), ("termination message", runner.message())):
        assert TOKEN[:8] not in text, f"{where} leaks the token: ...{text[text.find(TOKEN[:8]) - 80:][:200]}..."


def test_no_token_flag_exists():
    from llm_runtime.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["download"].format_help()
    assert "--token" not in help_text


def test_request_object_roundtrip():
    assert Request(file=GGUF).to_json() == {"file": GGUF, "allow": [], "ignore": []}


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("flock semantics are tested on Linux")
