"""`llm-runtime batch`: malformed lines are set aside by line number, the rest go to `vllm run-batch`,
and the output has one line per request in input order.

vLLM itself is replaced here by a small program that answers each request it is given (echoing its
custom_id), so these tests check the runner's bookkeeping. The real `vllm run-batch` runs in
e2e/test_batch.py, on the real node, over the same kinds of file.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from llm_runtime.batch import MALFORMED_REPORTED, read_requests, run, summary

GOOD = {"method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}}

# Stands in for `vllm`: `vllm run-batch -i IN -o OUT ...` answers every line of IN with status 200,
# except a request whose body asks for "fail", which gets vLLM's per-request error shape. It records
# the arguments and the lines it got in $STAND_IN_RECORD when that is set.
STAND_IN = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
assert args[0] == "run-batch", args
given, answered = args[args.index("-i") + 1], args[args.index("-o") + 1]
if os.environ.get("STAND_IN_RECORD"):
    with open(os.environ["STAND_IN_RECORD"], "w") as f, open(given) as lines:
        json.dump({{"args": args, "given": lines.read().splitlines()}}, f)
if "--slow" in args or "--slow-bar" in args:
    # One answer every 0.3 s, as a busy engine gives them. --slow writes each to the output file at
    # once (vLLM 0.33); --slow-bar only shows vLLM's progress bar and writes the file at the end (0.32).
    import time
    requests = [json.loads(line) for line in open(given)]
    answers = []
    with open(answered, "w") as out:
        for n, request in enumerate(requests, start=1):
            time.sleep(0.3)
            answer = json.dumps({{"id": "r", "custom_id": request["custom_id"],
                                 "response": {{"status_code": 200, "body": {{}}}}, "error": None}}) + "\\n"
            if "--slow" in args:
                out.write(answer)
                out.flush()
            else:
                answers.append(answer)
                print(f"Running batch: {{100 * n // len(requests):3d}}% Completed | {{n}}/{{len(requests)}} [00:01<00:02, 3.3req/s]",
                      file=sys.stderr, flush=True)
        out.writelines(answers)
    sys.exit(0)
if "--exit" in args:
    print("ValueError: the engine could not start", file=sys.stderr)
    sys.exit(int(args[args.index("--exit") + 1]))
with open(given) as lines, open(answered, "w") as out:
    for line in lines:
        request = json.loads(line)
        failing = request["body"].get("fail")
        out.write(json.dumps({{"id": "r", "custom_id": request["custom_id"],
                              "response": {{"status_code": 400 if failing else 200, "body": {{}}}},
                              "error": "bad" if failing else None}}) + "\\n")
"""


@pytest.fixture
def vllm(tmp_path: Path) -> list[str]:
    program = tmp_path / "vllm"
    program.write_text(STAND_IN)
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    return [str(program)]


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def request(custom_id: str, **changes) -> str:
    return json.dumps({"custom_id": custom_id, **GOOD, **changes})


def test_each_kind_of_malformed_line_is_named_with_its_line_number(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", [
        request("a"),
        "{not json",
        "",  # blank lines are skipped, not counted
        "[1, 2]",
        json.dumps({**GOOD}),  # no custom_id
        request("a"),  # repeats line 1
        request("b", method="GET"),
        request("c", url="chat"),
        request("d", body="hello"),
        request("e"),
    ])
    requests = read_requests(path)
    assert [number for number, _ in requests.valid] == [1, 10]
    errors = {number: error for number, error, _ in requests.malformed}
    assert list(errors) == [2, 4, 5, 6, 7, 8, 9]
    assert errors[2].startswith("not JSON")
    assert "repeats line 1" in errors[6]
    assert "method" in errors[7] and "url" in errors[8] and "body" in errors[9]
    assert requests.total == 9


def test_vllm_s_own_parser_has_the_last_word_on_a_line(tmp_path):
    def refuse_missing_messages(text):
        if "messages" not in json.loads(text)["body"]:
            raise ValueError("body.messages: Field required")

    path = write_lines(tmp_path / "in.jsonl", [request("a"), request("b", body={"model": "tiny"})])
    requests = read_requests(path, refuse_missing_messages)
    assert [n for n, _ in requests.valid] == [1]
    assert requests.malformed == [(2, "refused by vLLM: body.messages: Field required", "b")]


def test_answers_come_back_in_input_order_with_error_lines_for_malformed_ones(tmp_path, vllm):
    lines = [request(f"req-{i}") for i in range(20)]
    lines.insert(6, "{broken")
    lines.append(request("will-fail", body={**GOOD["body"], "fail": True}))
    given, answers, message = write_lines(tmp_path / "in.jsonl", lines), tmp_path / "out" / "answers.jsonl", tmp_path / "msg"
    assert run(given, str(answers), ["--model", "/models/x"], str(message), 4000, vllm=vllm) == 0
    output = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [o["custom_id"] for o in output] == [f"req-{i}" for i in range(6)] + [None] + \
        [f"req-{i}" for i in range(6, 20)] + ["will-fail"]
    assert output[6]["error"] == {"code": "malformed_request", "message": output[6]["error"]["message"]}
    assert output[6]["error"]["message"].startswith("line 7: not JSON")
    report = json.loads(message.read_text())
    assert (report["total"], report["succeeded"], report["failed"]) == (22, 20, 2)
    assert report["malformed"][0]["line"] == 7


def test_vllm_gets_the_good_lines_and_the_given_arguments(tmp_path, vllm, monkeypatch):
    record = tmp_path / "record.json"
    monkeypatch.setenv("STAND_IN_RECORD", str(record))
    given = write_lines(tmp_path / "in.jsonl", [request("a"), "nope", request("b")])
    assert run(given, str(tmp_path / "out.jsonl"), ["--model", "/models/x", "--max-num-seqs", "2"], None, 4000,
               vllm=vllm) == 0
    captured = json.loads(record.read_text())
    assert captured["args"][-4:] == ["--model", "/models/x", "--max-num-seqs", "2"]
    assert [json.loads(line)["custom_id"] for line in captured["given"]] == ["a", "b"]


def test_when_vllm_fails_its_exit_code_is_returned_and_no_output_or_message_is_written(tmp_path, vllm):
    given, answers, message = write_lines(tmp_path / "in.jsonl", [request("a")]), tmp_path / "answers.jsonl", tmp_path / "msg"
    answers.write_text("the previous run's answers\n")
    assert run(given, str(answers), ["--exit", "3"], str(message), 4000, vllm=vllm) == 3
    assert answers.read_text() == "the previous run's answers\n"  # kept: a failed run replaces nothing
    assert not message.exists()  # so the kubelet quotes the log's end, where vLLM said why


def test_a_file_of_only_malformed_lines_needs_no_vllm(tmp_path):
    given, answers, message = write_lines(tmp_path / "in.jsonl", ["x", "y"]), tmp_path / "answers.jsonl", tmp_path / "msg"
    assert run(given, str(answers), [], str(message), 4000, vllm=["/nonexistent/vllm"]) == 0
    assert len(answers.read_text().splitlines()) == 2
    assert json.loads(message.read_text())["failed"] == 2


def test_the_message_fits_the_kubelet_s_limit_however_many_lines_are_malformed(tmp_path):
    path = write_lines(tmp_path / "in.jsonl", ["{" + "x" * 500] * 200)
    requests = read_requests(path)
    output = [{"error": "e"}] * 200
    text = summary(requests, output, 4000)
    assert len(text) <= 4000
    report = json.loads(text)
    assert report["failed"] == 200 and 0 < len(report["malformed"]) <= MALFORMED_REPORTED


def test_the_command_line_runs_the_batch(tmp_path, vllm, monkeypatch):
    from llm_runtime.cli import main

    monkeypatch.setenv("PATH", f"{Path(vllm[0]).parent}{os.pathsep}{os.environ['PATH']}")
    given, answers, message = write_lines(tmp_path / "in.jsonl", [request("a")]), tmp_path / "answers.jsonl", tmp_path / "msg"
    assert main(["batch", "--input", given, "--output", str(answers), "--termination-log", str(message),
                 "--", "--model", "/models/x"]) == 0
    assert json.loads(answers.read_text())["custom_id"] == "a"
    assert main(["batch", "--input", str(tmp_path / "missing.jsonl"), "--output", str(answers),
                 "--termination-log", str(message)]) != 0
    assert "missing.jsonl" in message.read_text()


@pytest.mark.parametrize("how", ["--slow", "--slow-bar"], ids=["from-the-output-file", "from-vllm-s-progress-bar"])
def test_progress_is_logged_while_vllm_answers(tmp_path, vllm, caplog, how):
    from llm_runtime.contract import BATCH_PROGRESS_PATTERN

    given = write_lines(tmp_path / "in.jsonl", ["bad"] + [request(f"r{i}") for i in range(10)])
    with caplog.at_level("INFO", logger="llm_runtime.batch"):
        assert run(given, str(tmp_path / "out.jsonl"), [how], None, 4000, vllm=vllm, progress_seconds=0.5) == 0
    progress = [tuple(map(int, m.groups())) for r in caplog.records if (m := BATCH_PROGRESS_PATTERN.search(r.getMessage()))]
    # The malformed line is done from the start; the rest as vLLM writes them; every total is 11.
    assert len(progress) >= 3, progress
    assert {total for _, total in progress} == {11}
    assert [done for done, _ in progress] == sorted({done for done, _ in progress})
    assert progress[0][0] >= 1 and progress[-1][0] == 11


def test_the_answers_file_has_the_mode_a_plain_write_gives(tmp_path):
    """Readers of the claim (a notebook, a job) usually run as another user than the runner."""
    given, answers = write_lines(tmp_path / "in.jsonl", ["{broken"]), tmp_path / "out" / "answers.jsonl"
    previous = os.umask(0o022)
    try:
        assert run(given, str(answers), [], str(tmp_path / "msg"), 4000) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(answers.stat().st_mode) == 0o644


@pytest.mark.parametrize("make_output, words", [
    (lambda tmp: tmp / "out", "is a directory"),  # the claim's root, or any directory
    (lambda tmp: tmp / "a-file" / "answers.jsonl", "cannot be written"),  # its parent is a file
])
def test_an_output_that_cannot_be_written_fails_before_vllm_runs(tmp_path, caplog, make_output, words):
    (tmp_path / "out").mkdir()
    (tmp_path / "a-file").write_text("")
    given = write_lines(tmp_path / "in.jsonl", [request("a")])
    ran = tmp_path / "vllm-ran"
    vllm = [sys.executable, "-c", f"open({str(ran)!r}, 'w')"]
    assert run(given, str(make_output(tmp_path)), [], str(tmp_path / "msg"), 4000, vllm=vllm) != 0
    assert not ran.exists() and not (tmp_path / "msg").exists()
    assert words in caplog.text
