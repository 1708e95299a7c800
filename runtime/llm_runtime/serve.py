"""`llm-runtime serve`: `vllm serve` with its compiled files kept on the model volume.

    llm-runtime serve --compile-cache DIR --model-key KEY --device CPU|GPU [--work-dir DIR] -- VLLM-SERVE-ARGS...

vLLM runs as this process's child, with the cache variables pointing at a private copy of the key
directory (llm_runtime.compile_cache). Once vLLM answers /health it has compiled everything it
will (it never compiles while serving), so what it compiled is published to the volume then, and
the one result line is logged. Signals are passed on to vLLM, whose exit code this process takes;
vLLM writes to the container's log directly.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Sequence

from .compile_cache import CompileCache

log = logging.getLogger("llm_runtime.serve")

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def health_url(vllm_args: Sequence[str]) -> str:
    """Where this pod's vLLM answers /health: its --port (default 8000) on --host, else loopback."""
    values = {"--port": "8000", "--host": "127.0.0.1"}
    for index, arg in enumerate(vllm_args):
        flag, equals, value = arg.partition("=")
        if flag in values:
            if equals:
                values[flag] = value
            elif index + 1 < len(vllm_args):
                values[flag] = vllm_args[index + 1]
    host = values["--host"] if values["--host"] not in ("", "0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{values['--port']}/health"


def healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through a proxy
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def exit_code(returncode: int) -> int:
    """A child killed by signal N exits as a shell reports it: 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def run(vllm_args: Sequence[str], cache: CompileCache, vllm: Sequence[str] = ("vllm",), poll_seconds: float = 1.0,
        environ: dict[str, str] | None = None) -> int:
    """Run `vllm serve`; publish its compiled files once it is healthy; vLLM's exit code."""
    env = cache.prepare(dict(os.environ if environ is None else environ))
    process = subprocess.Popen([*vllm, "serve", *vllm_args], env=env)
    previous = {sig: signal.signal(sig, lambda number, _frame: process.send_signal(number)) for sig in FORWARDED_SIGNALS}
    url, published = health_url(vllm_args), False
    try:
        while True:
            try:
                return exit_code(process.wait(timeout=poll_seconds))
            except subprocess.TimeoutExpired:
                pass
            if not published and healthy(url):
                published = True
                try:
                    cache.finish()
                except Exception:  # the cache is an optimisation: never stop serving for it
                    log.exception("Failed to store the compiled files; serving goes on")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
