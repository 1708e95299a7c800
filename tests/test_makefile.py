"""`make` with no goal lists every target the Makefile offers, each with its one line of help."""

from __future__ import annotations

import re
import subprocess

from support import REPO


def test_plain_make_lists_every_target_with_its_help():
    targets = re.findall(r"(?m)^([a-z][a-z-]*):", (REPO / "Makefile").read_text())
    listed = subprocess.run(["make", "--no-print-directory", "-C", str(REPO)], capture_output=True, text=True,
                            check=True).stdout
    helps = dict(re.findall(r"(?m)^  ([a-z][a-z-]*) +(\S.*)$", listed))
    assert sorted(helps) == sorted(targets), "a target without `## help` on its line, or help for none"
    assert "The two commands" in listed.splitlines()
