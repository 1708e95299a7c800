"""`llm-runtime`: what the runtime image runs besides vLLM itself.

    llm-runtime download --source SRC [--revision REV] [--file FILE] [--allow-pattern P ...]
                         [--ignore-pattern P ...] --cache-dir DIR [--termination-log PATH]
                         [--max-workers N]

Tokens come from MODELSCOPE_API_TOKEN / HF_TOKEN and endpoints from MODELSCOPE_ENDPOINT /
HF_ENDPOINT, never from flags, and never appear in a log line. On failure the exit code is
non-zero and one actionable line goes to stderr and to the termination-message file.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .contract import TOKEN_ENV
from .errors import DownloadError, EXIT_FAILED, redact

log = logging.getLogger("llm_runtime")

SECRET_ENVS = tuple(TOKEN_ENV.values())
DEFAULT_TERMINATION_LOG = "/dev/termination-log"


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), [os.environ.get(k, "") for k in SECRET_ENVS])


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-runtime", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("download", help="download a model into the cache (or check a pvc:// model)")
    d.add_argument("--source", required=True, help="modelscope://org/name, hf://org/name or pvc://claim/path")
    d.add_argument("--revision", help="branch, tag or commit (default: master on ModelScope, main on Hugging Face)")
    d.add_argument("--file", help="download only this file (e.g. one .gguf); vLLM is then given its path")
    d.add_argument("--allow-pattern", action="append", default=[], metavar="GLOB", help="only files matching")
    d.add_argument("--ignore-pattern", action="append", default=[], metavar="GLOB", help="skip files matching")
    d.add_argument("--cache-dir", required=True, help="root of the weights volume")
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
    return parser


def write_termination_message(path: str | None, message: str) -> None:
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(message[:4000] + "\n")
    except OSError as exc:
        log.warning("Failed to write the termination message to %s: %s", path, exc)


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
    )
    secrets = [os.environ.get(k, "") for k in SECRET_ENVS]
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
    write_termination_message(args.termination_log, message)
    return code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging()
    if args.command == "download":
        return download(args)
    return 2  # pragma: no cover - argparse enforces the subcommand


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
