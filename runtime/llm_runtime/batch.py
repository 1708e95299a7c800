"""`llm-runtime batch`: run `vllm run-batch` over a file in OpenAI's batch format so that a malformed
line costs one answer, not the whole batch.

`vllm run-batch` parses every line first and gives up on the first it refuses. So the lines are
checked here first, with vLLM's own parser: the malformed ones are set aside by line number, vLLM
runs over the rest, and the output file gets one
line per request in input order (an error line for each malformed one). The counts go to the
container's termination message as one JSON object, which the operator copies into the LLMBatch's
status. When vLLM itself fails, no message is written: the pod's termination message is then the
end of its log (`FallbackToLogsOnError`), which is vLLM's own error.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .compile_cache import CompileCache
from .contract import BATCH_PROGRESS
from .errors import write_termination_message

log = logging.getLogger("llm_runtime.batch")

# The status lists at most this many malformed lines; the counts include all of them.
MALFORMED_REPORTED = 20
ERROR_TEXT_LIMIT = 160
COMPILE_LINE_LIMIT = 400
OUTPUT_UNWRITABLE = 3  # the exit code when the answers could not be written: vLLM was never run


@dataclass
class Requests:
    """The input file, checked: the lines vLLM gets, and the malformed ones by line number."""

    valid: list[tuple[int, str]] = field(default_factory=list)  # (line number, line)
    malformed: list[tuple[int, str, str | None]] = field(default_factory=list)  # (line number, error, custom_id)

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.malformed)


Validator = Callable[[str], Any]  # raises on a request vLLM would refuse


def vllm_validator() -> Validator | None:
    """vLLM's own parser of a batch line, which also checks the body against the API of its `url`.

    `vllm run-batch` parses every line before it answers any and gives up on the first it refuses:
    checking with the same parser here is what keeps one bad line from failing the batch. None
    where vLLM is not installed (then only the envelope is checked, and vLLM has the last word)."""
    # Where vLLM keeps it: launchers/ since 0.33, openai/ before (the CPU build lags a release).
    for module in ("vllm.entrypoints.launchers.run_batch", "vllm.entrypoints.openai.run_batch"):
        try:
            return importlib.import_module(module).BatchRequestInput.model_validate_json
        except (ImportError, AttributeError):
            continue
    log.warning("Found no vLLM batch request parser: only each line's envelope is checked")
    return None


def _refusal(error: Exception) -> str:
    """A parser's refusal in one line: pydantic's errors as "field: message", anything else as is."""
    details = getattr(error, "errors", None)
    if callable(details):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg', '')}" for d in details())
        except Exception:  # noqa: BLE001 - not pydantic's after all
            pass
    return " ".join(str(error).split())


def line_error(text: str, seen_ids: dict[str, int], validate: Validator | None = None) -> tuple[str | None, str | None]:
    """What is wrong with one request line (None when nothing is), and its custom_id when it has one."""
    try:
        request = json.loads(text)
    except ValueError as error:
        return f"not JSON: {error}", None
    if not isinstance(request, dict):
        return "not a JSON object", None
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "custom_id must be a non-empty string", None
    if custom_id in seen_ids:
        return f"custom_id {custom_id!r} repeats line {seen_ids[custom_id]}: answers could not be told apart", custom_id
    if request.get("method") != "POST":
        return "method must be \"POST\"", custom_id
    url = request.get("url")
    if not isinstance(url, str) or not url.startswith("/v1/"):
        return "url must be an API path such as \"/v1/chat/completions\"", custom_id
    if not isinstance(request.get("body"), dict):
        return "body must be a JSON object (the request vLLM answers)", custom_id
    if validate is not None:
        try:
            validate(text)
        except Exception as error:  # noqa: BLE001 - whatever vLLM's parser refuses, the line is malformed
            return f"refused by vLLM: {_refusal(error)}", custom_id
    return None, custom_id


def read_requests(path: str, validate: Validator | None = None) -> Requests:
    """Every non-blank line of the file, checked; line numbers count from 1 as editors do."""
    requests, seen_ids = Requests(), dict[str, int]()
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                continue
            error, custom_id = line_error(text, seen_ids, validate)
            if error:
                requests.malformed.append((number, error[:ERROR_TEXT_LIMIT], custom_id))
            else:
                assert custom_id is not None  # every line without an error has one
                seen_ids[custom_id] = number
                requests.valid.append((number, text.strip()))
    return requests


def malformed_answer(number: int, error: str, custom_id: str | None) -> dict[str, Any]:
    """An output line for a request that was never sent, in the batch output format."""
    return {"id": f"batch_req_line_{number}", "custom_id": custom_id, "response": None,
            "error": {"code": "malformed_request", "message": f"line {number}: {error}"}}


def succeeded(answer: dict[str, Any]) -> bool:
    response = answer.get("response") or {}
    return not answer.get("error") and response.get("status_code") == 200


def merge(requests: Requests, answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One output line per request, in input order: vLLM's answers (in the order of the lines it was
    given) and the malformed lines' error lines."""
    if len(answers) != len(requests.valid):
        raise RuntimeError(f"vllm run-batch wrote {len(answers)} answers for {len(requests.valid)} requests")
    by_line = {number: answer for (number, _), answer in zip(requests.valid, answers, strict=True)}
    by_line.update({number: malformed_answer(number, error, custom_id)
                    for number, error, custom_id in requests.malformed})
    return [by_line[number] for number in sorted(by_line)]


def summary(requests: Requests, output: list[dict[str, Any]], limit: int, compile_line: str | None = None) -> str:
    """The termination message: counts, the first malformed lines and what the engine did with the
    compile cache (its result line), as one JSON object that fits `limit`."""
    good = sum(1 for answer in output if succeeded(answer))
    report: dict[str, Any] = {"total": requests.total, "succeeded": good, "failed": len(output) - good}
    if compile_line:
        report["compileCache"] = compile_line[:COMPILE_LINE_LIMIT]
    report["malformed"] = [{"line": number, "error": error} for number, error, _ in requests.malformed[:MALFORMED_REPORTED]]
    text = json.dumps(report)
    while len(text) > limit and report["malformed"]:
        report["malformed"].pop()
        text = json.dumps(report)
    return text


def output_problem(path: str) -> str | None:
    """Why the answers could not be written to `path`, or None: it is tried the way they will be
    written (a temporary file beside it), so a read-only or foreign-owned claim is found too."""
    target = Path(path)
    if target.is_dir():
        return "is a directory: output.persistentVolumeClaim.path must name a file"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}."):
            pass
    except OSError as error:
        return f"cannot be written: {error.strerror or error} (the claim must be writable by the pod's user)"
    return None


def write_atomically(path: str, lines: list[dict[str, Any]]) -> None:
    """Readers of the output see the old file or the whole new one, never half of it. The file gets
    the mode a plain write would give it: a temporary file is private (0600), and readers of the
    claim usually run as another user."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0)
    os.umask(umask)  # only read: the runner is one thread
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=target.parent, prefix=f".{target.name}.",
                                     delete=False) as tmp:
        for line in lines:
            tmp.write(json.dumps(line, ensure_ascii=False) + "\n")
        tmp.flush()
        os.fchmod(tmp.fileno(), 0o666 & ~umask)
        os.fsync(tmp.fileno())
    os.replace(tmp.name, target)


def _lines_in(path: str) -> int:
    try:
        with open(path, "rb") as answers:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: answers.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


# vLLM's progress bar on stderr: "Running batch:  45% Completed | 9/20 [00:05<00:07, 1.8req/s]".
VLLM_PROGRESS_BAR = re.compile(rb"Running batch:\s*\d+% Completed \| (\d+)/\d+")


class ProgressBarReader:
    """Passes vLLM's stderr on unchanged (to this process's stderr, the container's log) and keeps
    the last count its progress bar showed."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.done = 0
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        pending = b""
        for chunk in iter(lambda: os.read(stream.fileno(), 1 << 16), b""):  # what the pipe holds, as it comes
            os.write(2, chunk)
            pending += chunk
            counts = VLLM_PROGRESS_BAR.findall(pending)
            if counts:
                self.done = max(self.done, int(counts[-1]))
            pending = pending[-256:]  # a bar line cut in two is whole in the next round

    def join(self) -> None:
        self._thread.join(timeout=5)


def run_reporting_progress(command: list[str], answered: str, requests: Requests, every: float,
                           env: dict[str, str] | None = None) -> int:
    """Run vLLM; every `every` seconds, log how many requests are done when that changed (malformed
    lines count as done: their answer is known). The count is the larger of what vLLM's progress
    bar last showed and the lines of its output file (vLLM 0.33 writes answers as they finish; the
    0.32 CPU build only at its end). The operator reads the last such line from the pod's log."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None  # stderr=PIPE
    bar = ProgressBarReader(process.stderr)
    reported = -1
    while True:
        try:
            code: int | None = process.wait(timeout=every)
        except subprocess.TimeoutExpired:
            code = None
        if code is not None:
            bar.join()
        done = len(requests.malformed) + min(len(requests.valid), max(bar.done, _lines_in(answered)))
        if done != reported and code in (None, 0):
            log.info(BATCH_PROGRESS.format(done=done, total=requests.total))
            reported = done
        if code is not None:
            return code


def run(input_path: str, output_path: str, vllm_args: Sequence[str], termination_log: str | None,
        message_limit: int, vllm: Sequence[str] = ("vllm",), validate: Validator | None = None,
        progress_seconds: float = 5.0, compile_cache: CompileCache | None = None) -> int:
    """Check, run vLLM over the good lines, write the output; vLLM's exit code when it fails. With a
    compile cache, vLLM runs on its private copy and what it compiled is stored once it succeeded."""
    problem = output_problem(output_path)
    if problem:  # found now, not after vLLM answered every request (and again on each retry)
        log.error("Failed: the output %s %s", output_path, problem)
        return OUTPUT_UNWRITABLE
    requests = read_requests(input_path, validate)
    log.info("Read %d requests from %s: %d malformed", requests.total, input_path, len(requests.malformed))
    for number, error, _ in requests.malformed[:MALFORMED_REPORTED]:
        log.warning("Set aside line %d: %s", number, error)
    answers: list[dict[str, Any]] = []
    compile_line = None
    if requests.valid:
        with tempfile.TemporaryDirectory(prefix="llm-batch-") as work:
            given, answered = os.path.join(work, "requests.jsonl"), os.path.join(work, "answers.jsonl")
            Path(given).write_text("".join(text + "\n" for _, text in requests.valid), encoding="utf-8")
            command = [*vllm, "run-batch", "-i", given, "-o", answered, *vllm_args]
            env = None
            if compile_cache:
                env = compile_cache.prepare(dict(os.environ))
            log.info("Running vllm run-batch over %d requests", len(requests.valid))
            code = run_reporting_progress(command, answered, requests, progress_seconds, env)
            if code != 0:
                log.error("Failed: vllm run-batch exited with code %d", code)
                return code
            if compile_cache:
                compile_line = compile_cache.finish()
            with open(answered, encoding="utf-8") as lines:
                answers = [json.loads(line) for line in lines if line.strip()]
    output = merge(requests, answers)
    write_atomically(output_path, output)
    message = summary(requests, output, message_limit, compile_line)
    log.info("Wrote %d answers to %s: %s", len(output), output_path, message)
    write_termination_message(termination_log, message)
    return 0
