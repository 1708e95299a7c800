"""The checks `make lint` runs, in `make test` too: ruff (the rules pyproject.toml chooses, and why),
mypy on the operator and the runtime, and a reason beside every silenced finding."""

from __future__ import annotations

import re
import subprocess
import sys

from support import REPO


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, check=False)


def test_ruff_finds_nothing():
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing_in_the_operator_and_the_runtime():
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_noqa_and_type_ignore_says_why():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    silenced = re.compile(r"# (noqa|type: ignore)\b(?P<rest>.*)$")
    unexplained = []
    for path in tracked:
        for number, line in enumerate((REPO / path).read_text().splitlines(), start=1):
            found = silenced.search(line)
            # The rule's code, then the reason: "noqa: BLE001 - why", or "type: ignore[code]  # why".
            if found and not re.match(r"(: [A-Z0-9, ]+ - |\[[a-z-, ]+\]  # )\S", found["rest"]):
                unexplained.append(f"{path}:{number}: {line.strip()}")
    assert unexplained == []
