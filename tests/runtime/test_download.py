"""`llm-runtime download` with the real ModelScope and Hugging Face SDKs against loopback hubs."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from llm_runtime import download as dl
from llm_runtime import layout
from llm_runtime.cli import main as cli_main
from llm_runtime.errors import EXIT_AUTH, EXIT_CORRUPT, EXIT_NETWORK, EXIT_NO_MODEL, EXIT_NO_SPACE, EXIT_NOT_FOUND
from llm_runtime.marker import MARKER_NAME, Request

MS_REPO = "tiny-org/tiny-model"  # as in conftest.py

GGUF = "gguf/tiny-q4_0.gguf"


def target_dir(cache: Path, source: str, revision: str | None = None) -> Path:
    return Path(layout.model_dir(str(cache), layout.parse_source(source), revision))


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
    assert not Path(str(target) + dl.PARTIAL_SUFFIX).exists()
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
    partial = Path(str(target) + dl.PARTIAL_SUFFIX)
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
    hub.rate = None
    r = runner.run(hub.source, hub=hub)
    assert r.returncode == 0, r.stderr
    assert "Resumed an interrupted download" in r.stderr
    assert_complete(target, tiny)
    assert not partial.exists()


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
    bad = Path(str(target) + dl.PARTIAL_SUFFIX) / "model.safetensors"
    assert not bad.exists()
    # Fixed upstream: the rerun completes.
    hub.corrupt = set()
    assert runner.run(hub.source, hub=hub).returncode == 0


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


def test_no_token_flag_exists():
    from llm_runtime.cli import build_parser

    help_text = build_parser()._subparsers._group_actions[0].choices["download"].format_help()
    assert "--token" not in help_text


def test_request_object_roundtrip():
    assert Request(file=GGUF).to_json() == {"file": GGUF, "allow": [], "ignore": []}


if sys.platform != "linux":  # pragma: no cover
    pytestmark = pytest.mark.skip("flock semantics are tested on Linux")
