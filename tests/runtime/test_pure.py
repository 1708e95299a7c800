"""The pure parts of the runtime: marker, cache-hit rule, progress formatting, error classification."""

from __future__ import annotations

import errno
import json
import re

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


# --- issue 11 -------------------------------------------------------------------------------------

def test_modelscope_listing_skips_tree_entries():
    """Item 5: folders are listed as "tree" entries, also one with nothing listed beneath it."""
    from modelscope_hub.types import FileInfo

    from llm_runtime.hubs import modelscope_listing

    entries = [
        {"Path": "1_Pooling", "Name": "1_Pooling", "Type": "tree", "Size": 0, "Sha256": None},
        {"Path": "1_Pooling/config.json", "Type": "blob", "Size": 190, "Sha256": "ab"},
        {"Path": "onnx", "Type": "tree", "Size": 0},  # e.g. a folder past the listing's size cap
        {"Path": "modules.json", "Size": 349},  # no type: a blob, as the SDK reads it
        FileInfo(path="2_Dense", type="tree"),
        FileInfo(path="model.safetensors", size=1000, sha256="cd"),
    ]
    assert modelscope_listing(entries).files == [
        RemoteFile("1_Pooling/config.json", 190, "ab"), RemoteFile("modules.json", 349),
        RemoteFile("model.safetensors", 1000, "cd")]


def test_plain_revisions_keep_their_path():
    """Item 7: what the renderer's golden files pin does not move."""
    from llm_runtime.layout import model_dir, parse_source

    ms, hf = parse_source("modelscope://Qwen/Qwen3-8B"), parse_source("hf://meta-llama/Llama-3.1-8B-Instruct")
    assert model_dir("/models", ms, None) == "/models/modelscope/Qwen/Qwen3-8B/master"
    assert model_dir("/models", hf, "main") == "/models/hf/meta-llama/Llama-3.1-8B-Instruct/main"
    for plain in ("v1.0", "release_v1", "a" * 40, "2024-01-01", "V2.5-GPTQ"):
        assert model_dir("/models", ms, plain) == f"/models/modelscope/Qwen/Qwen3-8B/{plain}"


@pytest.mark.parametrize("revision", ["release/v1", "feature/a/b", "a" * 129, "main.lock", "v1.partial", "x~y",
                                      "..", "."])
def test_other_revisions_get_a_readable_hashed_segment(revision):
    from llm_runtime.layout import revision_segment

    segment = revision_segment(revision)
    assert "/" not in segment and segment not in (".", "..") and len(segment) <= 77
    assert re.fullmatch(r"[A-Za-z0-9._-]*\+[0-9a-f]{12}", segment)
    assert not segment.endswith((".lock", ".partial")) and "~" not in segment


def test_revisions_that_sanitize_alike_get_distinct_directories():
    from llm_runtime.layout import revision_segment

    assert revision_segment("release/v1").startswith("release_v1+")
    assert revision_segment("release_v1") == "release_v1"
    assert len({revision_segment(r) for r in ("release/v1", "release_v1", "release-v1", "release//v1")}) == 4


@given(st.lists(st.text(alphabet="ab_/.-~+0", min_size=1, max_size=6), min_size=2, max_size=2, unique=True))
def test_revision_segments_are_one_to_one(pair):
    from llm_runtime.layout import revision_segment

    a, b = pair
    assert revision_segment(a) != revision_segment(b)


def test_build_marker_ignores_a_previous_marker_of_other_content():
    """Item 7: the marker of another revision, source or commit is not merged (no false cache hit)."""
    full = build_marker(SRC, "release/v1", {"w.safetensors": 5, "config.json": 2}, Request(), commit="c1")
    for source, revision, commit in ((SRC, "release_v1", None), ("hf://Qwen/Qwen2.5-7B-Instruct", "release/v1", "c1"),
                                     (SRC, "release/v1", "c2")):
        m = build_marker(source, revision, {"config.json": 3}, Request(file="config.json"), commit=commit,
                         previous=full)
        assert m.files == {"config.json": 3} and m.requests == [Request(file="config.json")]
        assert not satisfies(m, source, revision, Request())
    same = build_marker(SRC, "release/v1", {"config.json": 2}, Request(file="config.json"), commit="c1", previous=full)
    assert satisfies(same, SRC, "release/v1", Request())


def test_build_marker_merges_several_previous_markers():
    a = build_marker(SRC, "master", {"a.json": 1}, Request(allow=("*.json",)))
    b = build_marker(SRC, "master", {"b.gguf": 2}, Request(file="b.gguf"))
    m = build_marker(SRC, "master", {"w.safetensors": 5}, Request(ignore=("*.gguf",)), previous=[a, b])
    assert m.files == {"a.json": 1, "b.gguf": 2, "w.safetensors": 5}
    assert m.requests == [Request(allow=("*.json",)), Request(file="b.gguf"), Request(ignore=("*.gguf",))]


TOKEN = "hf_" + "0123456789abcdefghijklmnopqrstuvwxyzABCD"


def test_redact_covers_url_encoded_and_cut_tokens():
    """Item 10: a token in a URL, and one an SDK cut short when it logged a response body."""
    odd = "ms+tok/en=="
    assert redact(f"GET /x?t={TOKEN}&a=1", [TOKEN]) == "GET /x?t=***&a=1"
    assert redact("GET /x?t=ms%2Btok%2Fen%3D%3D and ms%2Btok%2Fen%3D%3D", [odd]) == "GET /x?t=*** and ***"
    assert redact(f"'Message': 'bad token={TOKEN[:20]}...'", [TOKEN]) == "'Message': 'bad token=***...'"
    assert redact(f"cut {TOKEN[:12]}\u2026", [TOKEN]) == "cut ***\u2026"
    assert redact("hf_... and short words...", [TOKEN]) == "hf_... and short words..."


@pytest.mark.parametrize("offset", range(0, 60, 7))
def test_classify_redacts_before_it_cuts(offset):
    """Item 10: the hub's words are cut to size after the token is redacted, never before."""
    text = "x" * (150 + offset) + " " + TOKEN + " more"
    for exc in (_http_error("HTTPError", 403), ValueError("boom"), _http_error("HTTPError", 503)):
        exc.args = (text,)
        err = classify(exc, source=SRC, revision="master", scheme="hf", token_given=True, secrets=[TOKEN])
        assert TOKEN[:6] not in err.message, err.message


def test_termination_message_is_redacted_then_cut(tmp_path):
    from llm_runtime.errors import TERMINATION_MESSAGE_LIMIT, write_termination_message

    path = tmp_path / "termination-log"
    message = "y" * (TERMINATION_MESSAGE_LIMIT - 10) + TOKEN
    write_termination_message(str(path), message, [TOKEN])
    assert TOKEN[:6] not in path.read_text()
    assert path.read_text().endswith("y***\n")


def test_redacting_stream_sees_a_token_written_in_pieces():
    import io

    from llm_runtime.cli import RedactingStream

    out = io.StringIO()
    stream = RedactingStream(out, [TOKEN])
    stream.write("url=" + TOKEN[:10])
    stream.write(TOKEN[10:] + " done\nnext ")
    assert out.getvalue() == "url=*** done\n"
    stream.write(TOKEN)
    stream.flush()
    assert out.getvalue() == "url=*** done\nnext ***"
