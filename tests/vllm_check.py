"""vLLM's own argument parser, for tests: does `vllm serve <args...>` accept these arguments?

`make vllm-check-env` builds (once per vLLM version, outside the repo) a virtualenv holding the
pinned vllm wheel installed --no-deps, torch, and the light packages vLLM's argument parser imports
(runtime/vllm-check-requirements.txt). This module runs ONE long-lived Python process in that
virtualenv, which builds the parser exactly as `vllm serve` does (a `serve` subparser of a
FlexibleArgumentParser filled by `make_arg_parser`, then `validate_parsed_serve_args`) and answers
one JSON line per JSON argv line.

Use the session fixture `vllm_parser`:

    def test_x(vllm_parser):
        ok, error = vllm_parser.check(["/models/x", "--served-model-name", "m"])
        assert ok, error

`check(args)` takes what follows `vllm serve` (the model path first) and returns (ok, error):
error is vLLM's own message (e.g. "unrecognized arguments: --task embed"), "" when ok.

Skip rule: outside CI (CI != "true") a missing environment skips with a hint; in CI it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from llm_runtime.versions import VLLM_VERSION

MISSING_HINT = "vLLM check environment missing: run `make vllm-check-env` (or `make test`)"


def env_dir() -> Path:
    cache = os.environ.get("LLMOPS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "llm-operator")
    return Path(cache) / f"vllm-check-{VLLM_VERSION}"


def env_python() -> Path | None:
    """The environment's interpreter when the environment is complete, else None."""
    d = env_dir()
    python = d / "venv" / "bin" / "python"
    return python if (d / ".complete").is_file() and python.exists() else None


# Runs inside the vLLM environment. Reads one JSON list per line, answers {"ok", "error"} per line.
_SERVER = r"""
import contextlib, io, json, os, sys
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
out = sys.stdout
sys.stdout = sys.stderr  # anything vLLM prints must not corrupt the protocol
import vllm
from vllm.utils.argparse_utils import FlexibleArgumentParser
from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.entrypoints.launchers.run_batch import make_arg_parser as make_batch_arg_parser

def build():
    # Exactly how `vllm serve` and `vllm run-batch` build their parsers (vllm/entrypoints/cli/main.py,
    # cli/serve.py and cli/run_batch.py).
    top = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
    sub = top.add_subparsers(required=False, dest="subparser")
    serve = sub.add_parser("serve", usage="vllm serve [model_tag] [options]")
    make_arg_parser(serve)
    make_batch_arg_parser(sub.add_parser("run-batch"))
    return top

parser = build()
PARSED = ("model_tag", "served_model_name", "tensor_parallel_size", "pipeline_parallel_size", "port", "host",
          "api_key", "tokenizer", "runner", "config")
BATCH_PARSED = ("model", "served_model_name", "tensor_parallel_size", "pipeline_parallel_size", "input_file",
                "output_file", "tokenizer", "enable_metrics")
out.write(json.dumps({"ready": True, "vllm": vllm.__version__}) + "\n"); out.flush()
serve = next(a for a in parser._actions if a.dest == "subparser").choices["serve"]
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    argv = json.loads(line)
    if isinstance(argv, dict):  # {"run-batch": [...]}: what follows `vllm run-batch`
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                args = parser.parse_args(["run-batch", *argv["run-batch"]])
            parsed = {key: getattr(args, key, None) for key in BATCH_PARSED}
            reply = {"ok": True, "error": "", "parsed": json.loads(json.dumps(parsed, default=str))}
        except SystemExit as e:
            msg = [l.strip() for l in err.getvalue().splitlines() if l.strip() and not l.startswith("usage:")]
            reply = {"ok": False, "error": (" ".join(msg) if msg else f"exit {e.code}")}
        out.write(json.dumps(reply) + "\n"); out.flush()
        continue
    if argv == "options":  # every flag of `vllm serve`, by the namespace attribute it sets
        out.write(json.dumps({a.dest: a.option_strings for a in serve._actions if a.option_strings}) + "\n")
        out.flush()
        continue
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(["serve", *argv])
            if not getattr(args, "model_tag", None):
                raise ValueError("no model path: `vllm serve` needs the model path as its first argument")
            validate_parsed_serve_args(args)
        parsed = {key: getattr(args, key, None) for key in PARSED}
        reply = {"ok": True, "error": "", "parsed": json.loads(json.dumps(parsed, default=str))}
    except SystemExit as e:
        msg = [l.strip() for l in err.getvalue().splitlines() if l.strip() and not l.startswith("usage:")]
        reply = {"ok": False, "error": (" ".join(msg) if msg else f"exit {e.code}")}
    except Exception as e:
        reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    out.write(json.dumps(reply) + "\n"); out.flush()
"""


class VLLMParser:
    """One subprocess in the vLLM environment; `check()` is cheap (a line each way)."""

    def __init__(self, python: Path) -> None:
        env = dict(os.environ, VLLM_TARGET_DEVICE="cpu", PYTHONDONTWRITEBYTECODE="1", TORCH_CPP_LOG_LEVEL="ERROR")
        env.pop("PYTHONPATH", None)
        self._proc = subprocess.Popen(
            [str(python), "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env, cwd="/",
        )
        self._stderr: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self._lock = threading.Lock()
        self.vllm_version: str | None = None  # known once ready

    def wait_ready(self) -> VLLMParser:
        """Wait for the process to have imported vLLM and built its parser."""
        if self.vllm_version is None:
            hello = self._proc.stdout.readline()
            if not hello:
                self._proc.wait(timeout=10)
                raise RuntimeError("vLLM parser process died at start:\n" + "".join(self._stderr[-40:]))
            self.vllm_version = json.loads(hello)["vllm"]
        return self

    def _drain(self) -> None:
        for line in self._proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-200]

    def _ask(self, request: Any) -> Any:
        with self._lock:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("vLLM parser process died:\n" + "".join(self._stderr[-40:]))
        return json.loads(line)

    def check(self, args: list[str]) -> tuple[bool, str]:
        """Does `vllm serve <args...>` accept these arguments? -> (ok, vLLM's error message)."""
        ok, error, _ = self.parse(args)
        return ok, error

    def parse(self, args: list[str]) -> tuple[bool, str, dict[str, Any]]:
        """Like check(), plus what vLLM read into the settings the operator owns (served_model_name,
        tensor/pipeline_parallel_size, port, host, api_key, tokenizer, runner, config, model_tag)."""
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"arguments must be strings: {args!r}")
        reply = self._ask(list(args))
        return reply["ok"], reply["error"], reply.get("parsed") or {}

    def parse_run_batch(self, args: list[str]) -> tuple[bool, str, dict[str, Any]]:
        """Does `vllm run-batch <args...>` accept these arguments? -> (ok, vLLM's error, what it read
        into model, served_model_name, the parallel sizes, input_file, output_file, tokenizer, enable_metrics)."""
        if not all(isinstance(a, str) for a in args):
            raise TypeError(f"arguments must be strings: {args!r}")
        reply = self._ask({"run-batch": list(args)})
        return reply["ok"], reply["error"], reply.get("parsed") or {}

    def options(self) -> dict[str, list[str]]:
        """Every flag of `vllm serve`, keyed by the namespace attribute it sets."""
        return self._ask("options")

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()  # it holds no state worth a clean exit (torch's teardown takes seconds)
            self._proc.wait()


_early: VLLMParser | None = None  # started by start_early, handed to the first open_parser


def start_early(items: list[pytest.Item]) -> None:
    """Start the parser's process as soon as the run is known to need it: importing vLLM and torch
    takes tens of seconds, which then pass while the tests before the first user of it run."""
    global _early
    python = env_python()
    needed = any("vllm_parser" in getattr(item, "fixturenames", ()) for item in items)
    if _early is None and python is not None and needed:
        _early = VLLMParser(python)


def stop_early() -> None:
    """Kill a process start_early started that no test took (all of them deselected or failed)."""
    global _early
    if _early is not None:
        _early.close()
        _early = None


def open_parser() -> VLLMParser:
    """The parser, or a skip (outside CI) / failure (CI=true) when the environment is missing."""
    global _early
    python = env_python()
    if python is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MISSING_HINT} (looked in {env_dir()})", pytrace=False)
        pytest.skip(MISSING_HINT)
    parser, _early = _early or VLLMParser(python), None
    return parser.wait_ready()


@pytest.fixture(scope="session")
def vllm_parser():
    parser = open_parser()
    if parser.vllm_version != VLLM_VERSION:
        parser.close()
        pytest.fail(f"vLLM check environment holds vllm {parser.vllm_version}, expected {VLLM_VERSION}: "
                    f"rerun `make vllm-check-env`")
    yield parser
    parser.close()
