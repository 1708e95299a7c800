"""The pure parts of the runtime: marker, cache-hit rule, progress formatting, error classification."""

from __future__ import annotations

import errno
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llm_runtime.errors import (
    AuthError,
    CorruptError,
    DownloadError,
    NetworkError,
    NoSpaceError,
    NotFoundError,
    classify,
    no_space_message,
    redact,
)
from llm_runtime.hubs import Listing, RemoteFile, filter_listing, select_files
from llm_runtime.marker import Marker, Request, build_marker, cache_hit, files_match, satisfies
from llm_runtime.progress import human_bytes, human_duration, progress_line

SRC = "modelscope://Qwen/Qwen2.5-7B-Instruct"


# --- marker ---------------------------------------------------------------------------------------

def test_marker_roundtrip_and_content():
    m = build_marker(SRC, "master", {"b.safetensors": 10, "config.json": 2}, Request(), commit="abc",
                     completed_at="2026-01-01T00:00:00+00:00")
    data = json.loads(m.dumps())
    assert data == {
        "version": 1, "source": SRC, "revision": "master", "commit": "abc",
        "completedAt": "2026-01-01T00:00:00+00:00",
        "requests": [{"file": None, "allow": [], "ignore": []}],
        "totalBytes": 12, "files": {"b.safetensors": 10, "config.json": 2},
    }
    assert Marker.loads(m.dumps()) == m


def test_marker_rejects_unknown_version():
    with pytest.raises(ValueError):
        Marker.from_json({"version": 99, "source": SRC, "revision": "m", "files": {}})


def test_build_marker_merges_previous():
    first = build_marker(SRC, "master", {"a.json": 1}, Request(allow=("*.json",)))
    second = build_marker(SRC, "master", {"w.safetensors": 5}, Request(), previous=first)
    assert second.files == {"a.json": 1, "w.safetensors": 5}
    assert second.requests == [Request(allow=("*.json",)), Request()]
    assert build_marker(SRC, "master", {"a.json": 1}, Request(allow=("*.json",)), previous=first).requests == [
        Request(allow=("*.json",))]


@pytest.mark.parametrize("recorded,asked,hit", [
    ([Request()], Request(), True),
    ([Request()], Request(allow=("*.json",)), True),  # a full snapshot answers any filter
    ([Request()], Request(file="config.json"), True),
    ([Request()], Request(file="missing.gguf"), False),
    ([Request(allow=("*.json",))], Request(), False),
    ([Request(allow=("*.json",))], Request(allow=("*.json",)), True),
    ([Request(allow=("*.json",))], Request(allow=("*.safetensors",)), False),
    ([Request(file="config.json")], Request(file="config.json"), True),
    ([Request(file="config.json")], Request(), False),
])
def test_satisfies(recorded, asked, hit):
    m = Marker(SRC, "master", {"config.json": 2}, recorded)
    assert satisfies(m, SRC, "master", asked) is hit


def test_satisfies_needs_same_source_and_revision():
    m = Marker(SRC, "master", {"config.json": 2}, [Request()])
    assert not satisfies(m, SRC, "v1.0", Request())
    assert not satisfies(m, "hf://Qwen/Qwen2.5-7B-Instruct", "master", Request())


def test_cache_hit_checks_sizes(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    m = build_marker(SRC, "master", {"config.json": 2}, Request())
    (tmp_path / ".llmops-complete.json").write_text(m.dumps())
    assert cache_hit(str(tmp_path), SRC, "master", Request()) == m
    (tmp_path / "config.json").write_text("{ }")
    assert files_match(str(tmp_path), m.files) == ["config.json"]
    assert cache_hit(str(tmp_path), SRC, "master", Request()) is None
    (tmp_path / ".llmops-complete.json").write_text("{not json")
    assert cache_hit(str(tmp_path), SRC, "master", Request()) is None
    assert cache_hit(str(tmp_path / "nope"), SRC, "master", Request()) is None


# --- file selection -------------------------------------------------------------------------------

PATHS = ["config.json", "tokenizer.json", "model-00001.safetensors", "gguf/q4.gguf", "onnx/model.onnx", "README.md"]


@pytest.mark.parametrize("request_,expected", [
    (Request(), PATHS),
    (Request(allow=("*.json",)), ["config.json", "tokenizer.json"]),
    (Request(ignore=("*.gguf", "onnx/")), ["config.json", "tokenizer.json", "model-00001.safetensors", "README.md"]),
    (Request(allow=("*.json", "*.safetensors"), ignore=("tokenizer.json",)), ["config.json", "model-00001.safetensors"]),
    (Request(file="gguf/q4.gguf"), ["gguf/q4.gguf"]),
])
def test_select_files(request_, expected):
    assert select_files(PATHS, request_) == expected


def test_filter_listing_missing_file_is_not_found():
    listing = Listing([RemoteFile(p, 1) for p in PATHS], "c0ffee")
    assert filter_listing(listing, Request(file="gguf/q4.gguf"), SRC, "master").files == [RemoteFile("gguf/q4.gguf", 1)]
    with pytest.raises(NotFoundError, match="model or revision not found.*'x.gguf' is not in the repository"):
        filter_listing(listing, Request(file="x.gguf"), SRC, "master")


# --- progress -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,text", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (5 * 1024**3, "5.0 GiB")])
def test_human_bytes(n, text):
    assert human_bytes(n) == text


@pytest.mark.parametrize("s,text", [(0, "0s"), (59.4, "59s"), (75, "1m15s"), (3725, "1h02m")])
def test_human_duration(s, text):
    assert human_duration(s) == text


def test_progress_line():
    mib = 1024 * 1024
    assert progress_line(12 * mib, 40 * mib, 2.0) == "Downloaded 12.0 MiB of 40.0 MiB (30%) at 6.0 MiB/s, ETA 5s"
    # Bytes that were already there (a resumed download) do not inflate the rate.
    assert progress_line(12 * mib, 40 * mib, 2.0, done_at_start=10 * mib).endswith("at 1.0 MiB/s, ETA 28s")
    assert progress_line(0, 40 * mib, 1.0) == "Downloaded 0 B of 40.0 MiB (0%) at 0 B/s, ETA unknown"


@given(done=st.integers(0, 10**13), total=st.integers(1, 10**13), elapsed=st.floats(0, 1e6))
def test_progress_line_is_always_one_sane_line(done, total, elapsed):
    line = progress_line(done, total, elapsed)
    assert "\n" not in line and line.startswith("Downloaded ")
    pct = int(line.split("(")[1].split("%")[0])
    assert 0 <= pct <= 100


# --- error classification -------------------------------------------------------------------------

class _Resp:
    def __init__(self, status_code):
        self.status_code = status_code


def _http_error(name: str, status: int | None, base=Exception) -> BaseException:
    cls = type(name, (base,), {})
    err = cls(f"{name} {status}")
    if status is not None:
        err.response = _Resp(status)
    return err


def _classify(exc, token_given=False):
    return classify(exc, source=SRC, revision="master", scheme="modelscope", token_given=token_given)


@pytest.mark.parametrize("exc,kind", [
    (_http_error("HTTPError", 401), AuthError),
    (_http_error("HTTPError", 403), AuthError),
    (_http_error("GatedRepoError", None), AuthError),
    (_http_error("AuthenticationError", None), AuthError),
    (_http_error("HTTPError", 404), NotFoundError),
    (_http_error("RevisionNotFoundError", None), NotFoundError),
    (_http_error("NotExistError", None), NotFoundError),
    (_http_error("FileIntegrityError", None), CorruptError),
    (_http_error("HTTPError", 503), NetworkError),
    (_http_error("ConnectError", None), NetworkError),
    (ConnectionResetError("reset"), NetworkError),
    (OSError(errno.ENOSPC, "No space left on device"), NoSpaceError),
    (ValueError("something else"), DownloadError),
])
def test_classify_kinds(exc, kind):
    err = _classify(exc)
    assert type(err) is kind
    assert "\n" not in err.message


def test_classify_401_message_is_actionable():
    err = _classify(_http_error("HTTPError", 401))
    assert err.message.startswith("private or gated model: set spec.credentialsSecretRef to a Secret with "
                                  "MODELSCOPE_API_TOKEN")
    assert "(HTTP 401)" in err.message and "no token was given" in err.message
    assert "the token given was refused" in _classify(_http_error("HTTPError", 403), token_given=True).message


def test_classify_looks_through_wrappers_and_failed_files():
    inner = _http_error("NotExistError", 404)
    try:
        try:
            raise inner
        except Exception as e:
            raise RuntimeError("LocalEntryNotFoundError: could not locate files") from e
    except RuntimeError as outer:
        assert isinstance(_classify(outer), NotFoundError)
    wrapper = _http_error("FileDownloadError", None)
    wrapper.failed_files = {"model.safetensors": _http_error("FileIntegrityError", None)}
    assert isinstance(_classify(wrapper), CorruptError)


def test_auth_wins_over_network_in_a_chain():
    outer = _http_error("HTTPError", 500)
    outer.__cause__ = _http_error("HTTPError", 401)
    assert isinstance(_classify(outer), AuthError)


def test_no_space_message():
    assert no_space_message(150 * 1024**3, 20 * 1024**3, "/models").startswith(
        "cache volume full: need 150.0 GiB, have 20.0 GiB free at /models")


def test_redact():
    assert redact("Bearer hf_secret123 failed", ["hf_secret123", "", "ab"]) == "Bearer *** failed"


def test_download_error_is_one_line():
    assert DownloadError("a\nb\n  c").message == "a b c"
