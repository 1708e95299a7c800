"""`llm-runtime`: what the runtime image runs besides vLLM itself.

    llm-runtime download --source SRC [--revision REV] [--file FILE] [--allow-pattern P ...]
                         [--ignore-pattern P ...] --cache-dir DIR [--make-dir DIR] [--termination-log PATH]
                         [--max-workers N] [--no-lock]
    llm-runtime gc --cache-dir DIR --older-than DURATION [--keep SOURCE[@REV] ...] [--dry-run]
    llm-runtime batch --input FILE --output FILE [--termination-log PATH] [--progress-interval S]
                      [COMPILE-CACHE-OPTIONS] -- VLLM-RUN-BATCH-ARGS...
    llm-runtime serve [COMPILE-CACHE-OPTIONS] -- VLLM-SERVE-ARGS...

COMPILE-CACHE-OPTIONS: --compile-cache DIR --model-key KEY --device CPU|GPU [--work-dir DIR] keep what
vLLM compiles in DIR for the next start (llm_runtime.compile_cache).

Tokens come from MODELSCOPE_API_TOKEN / HF_TOKEN and endpoints from MODELSCOPE_ENDPOINT /
HF_ENDPOINT, never from flags, and never appear in a log line: the process's stdout and stderr
are replaced by streams that redact the tokens, so whatever writes there (our log, the SDKs'
loggers with their own handlers, urllib3, warnings, tracebacks) is covered. On failure the exit
code is non-zero and one actionable line goes to stderr and to the termination-message file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .contract import TOKEN_ENV
from .errors import (
    EXIT_FAILED,
    TERMINATION_MESSAGE_LIMIT,
    DownloadError,
    env_secrets,
    redact,
    write_termination_message,
)

if TYPE_CHECKING:
    from .compile_cache import CompileCache

log = logging.getLogger("llm_runtime")

SECRET_ENVS = tuple(TOKEN_ENV.values())
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class RedactingStream:
    """A text stream that redacts secrets from everything written through it.

    Text is held back until the end of its line (or a flush), so a secret written in two pieces
    is still whole when it is redacted. Everything else is the wrapped stream's.
    """

    def __init__(self, stream: TextIO, secrets: Sequence[str]) -> None:
        self._stream, self._secrets, self._pending = stream, list(secrets), ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            lines, self._pending = self._pending.rsplit("\n", 1)
            self._stream.write(redact(lines + "\n", self._secrets))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(redact(self._pending, self._secrets))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _add_compile_cache_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument("--compile-cache", required=required, metavar="DIR",
                        help="the writable compile directory of the weights volume (llm_runtime.compile_cache)")
    parser.add_argument("--model-key", required=required, metavar="KEY",
                        help="the model's directory below the weights cache, e.g. modelscope/Qwen/Qwen3-8B/master")
    parser.add_argument("--device", choices=("CPU", "GPU"), default="GPU", help="what the engine runs on (default GPU)")
    parser.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "compile-cache"),
                        help="this start's private copy, on the pod's own disk (default: compile-cache in $TMPDIR)")


def _compile_cache(args: argparse.Namespace) -> CompileCache | None:
    from .compile_cache import CompileCache

    if not args.compile_cache:
        return None
    return CompileCache(root=args.compile_cache, model_key=args.model_key, private=args.work_dir, device=args.device)


def build_parser() -> argparse.ArgumentParser:
    from . import cleanup
    from .download import DEFAULT_STALE_SECONDS

    parser = argparse.ArgumentParser(prog="llm-runtime", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download a model into the cache (or check a pvc:// model)")
    d.add_argument("--source", required=True, help="modelscope://org/name, hf://org/name or pvc://claim/path")
    d.add_argument("--revision", help="branch, tag or commit (default: master on ModelScope, main on Hugging Face)")
    d.add_argument("--file", help="download only this file (e.g. one .gguf); vLLM is then given its path")
    d.add_argument("--allow-pattern", action="append", default=[], metavar="GLOB", help="only files matching")
    d.add_argument("--ignore-pattern", action="append", default=[], metavar="GLOB", help="skip files matching")
    d.add_argument("--cache-dir", required=True, help="root of the weights volume")
    d.add_argument("--make-dir", metavar="DIR", help="also make this directory, owned by this pod's user: the "
                   "compile cache's, which the engine mounts by subPath (the kubelet would make it root's)")
    d.add_argument("--termination-log", default=DEFAULT_TERMINATION_LOG if os.path.exists(DEFAULT_TERMINATION_LOG)
                   else None, help="file that receives the one-line failure reason (default: "
                   f"{DEFAULT_TERMINATION_LOG} when it exists, as in every Kubernetes container)")
    d.add_argument("--max-workers", type=int, default=8, help="parallel file downloads (default 8)")
    d.add_argument("--progress-interval", type=float, default=float(os.environ.get("LLM_RUNTIME_PROGRESS_SECONDS", 5)),
                   help="seconds between progress lines (default 5)")
    d.add_argument("--attempts", type=int, default=int(os.environ.get("LLM_RUNTIME_ATTEMPTS", 5)),
                   help="tries on network errors, with exponential backoff (default 5)")
    d.add_argument("--backoff", type=float, default=float(os.environ.get("LLM_RUNTIME_BACKOFF_SECONDS", 2)),
                   help="first retry delay in seconds, doubled each time up to 60 (default 2)")
    d.add_argument("--stale-after", type=float,
                   default=float(os.environ.get("LLM_RUNTIME_STALE_SECONDS", DEFAULT_STALE_SECONDS)),
                   help="seconds a partial download may go untouched before it counts as abandoned, "
                   f"to be resumed or removed (default {DEFAULT_STALE_SECONDS:g}; live downloads touch theirs "
                   "every 2 s)")
    d.add_argument("--no-lock", dest="lock", action="store_false",
                   help="for tests: do not take the flock beside the model directory, as when NFS with local "
                   "locks or a FUSE driver does not share it between nodes; writers then still never mix "
                   "files (each has its own partial directory, the first complete one wins)")
    g = sub.add_parser("gc", help="remove abandoned downloads and models unused for a while",
                       description=cleanup.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--cache-dir", required=True, help="root of the weights volume")
    g.add_argument("--older-than", required=True, type=_duration, metavar="DURATION",
                   help="age after which an abandoned download or an unused model goes: 90s, 30m, 12h, 7d, 2w, 1d12h")
    g.add_argument("--keep", action="append", default=[], metavar="SOURCE[@REVISION]",
                   help="never remove this model (all its revisions without @REVISION); repeatable")
    g.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    b = sub.add_parser("batch", help="run vllm run-batch over an OpenAI batch file, setting malformed lines aside")
    b.add_argument("--input", required=True, help="the requests, one JSON object per line")
    b.add_argument("--output", required=True, help="the answers file to write (replaced when done)")
    b.add_argument("--termination-log", default=DEFAULT_TERMINATION_LOG if os.path.exists(DEFAULT_TERMINATION_LOG)
                   else None, help="file that receives the counts as JSON (default: "
                   f"{DEFAULT_TERMINATION_LOG} when it exists)")
    b.add_argument("--progress-interval", type=float, default=float(os.environ.get("LLM_RUNTIME_PROGRESS_SECONDS", 5)),
                   help="seconds between progress lines while vLLM runs (default 5)")
    _add_compile_cache_options(b, required=False)
    b.add_argument("vllm_args", nargs=argparse.REMAINDER, metavar="-- VLLM-RUN-BATCH-ARGS",
                   help="arguments of vllm run-batch after its -i and -o (--model and the engine settings)")
    s = sub.add_parser("serve", help="run vllm serve, keeping what it compiles on the weights volume")
    _add_compile_cache_options(s, required=True)
    s.add_argument("vllm_args", nargs=argparse.REMAINDER, metavar="-- VLLM-SERVE-ARGS",
                   help="arguments of vllm serve (the model path and the engine settings)")
    return parser


def _duration(text: str) -> float:
    from .cleanup import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def download(args: argparse.Namespace) -> int:
    from . import download as dl
    from .marker import Request

    opts = dl.Options(
        source=args.source,
        cache_dir=args.cache_dir,
        revision=args.revision,
        request=Request(file=args.file, allow=tuple(args.allow_pattern), ignore=tuple(args.ignore_pattern)),
        max_workers=max(1, args.max_workers),
        progress_interval=max(0.1, args.progress_interval),
        attempts=max(1, args.attempts),
        backoff=max(0.0, args.backoff),
        lock=args.lock,
        stale_after=max(0.0, args.stale_after),
    )
    secrets = env_secrets(os.environ)
    if args.make_dir:
        try:
            os.makedirs(args.make_dir, exist_ok=True)
        except OSError as err:  # the engine says what this costs (no compile cache); the model still loads
            log.warning("Could not make %s: %s", args.make_dir, err)
    try:
        dl.run(opts)
        return 0
    except DownloadError as err:
        message, code = redact(err.message, secrets), err.exit_code
    except ValueError as err:  # a malformed source (the operator validates it first)
        message, code = redact(str(err), secrets), EXIT_FAILED
    except Exception as err:  # noqa: BLE001 - last resort: still one line, still a reason
        message, code = redact(f"download of {args.source} failed: {type(err).__name__}: {err}", secrets), EXIT_FAILED
        message = " ".join(message.split())
    log.error("Failed: %s", message)
    write_termination_message(args.termination_log, message, secrets)
    return code


def gc(args: argparse.Namespace) -> int:
    from .cleanup import collect

    try:
        collect(args.cache_dir, args.older_than, args.keep, dry_run=args.dry_run)
    except ValueError as err:  # a malformed --keep
        log.error("Failed: %s", err)
        return EXIT_FAILED
    return 0


def _after_dashes(args: list[str]) -> list[str]:
    return args[1:] if args[:1] == ["--"] else args


def batch(args: argparse.Namespace) -> int:
    from .batch import run, vllm_validator

    try:
        return run(args.input, args.output, _after_dashes(args.vllm_args), args.termination_log,
                   TERMINATION_MESSAGE_LIMIT, validate=vllm_validator(),
                   progress_seconds=max(0.1, args.progress_interval), compile_cache=_compile_cache(args))
    except OSError as err:  # an input missing from its volume, an output claim that is full or read-only
        log.error("Failed: %s", err)
        write_termination_message(args.termination_log, f"batch failed: {err}")
        return EXIT_FAILED


def serve(args: argparse.Namespace) -> int:
    from .serve import run

    cache = _compile_cache(args)
    assert cache is not None  # serve's --compile-cache is required
    return run(_after_dashes(args.vllm_args), cache)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _redact_std_streams(env_secrets(os.environ))
    _setup_logging()
    return {"download": download, "gc": gc, "batch": batch, "serve": serve}[args.command](args)


def _redact_std_streams(secrets: Sequence[str]) -> None:
    """For the rest of the process: a handler bound to sys.stderr before this (none of ours is: the
    SDKs are imported later) would bypass it, and so would a traceback printed after a restore."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream, secrets))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
