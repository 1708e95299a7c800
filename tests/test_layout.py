"""The test tree's own rule: pytest imports test modules by basename (rootdir-relative packages are
not used here), so two modules of one name under tests/ and e2e/ stop the whole run at collection."""

from __future__ import annotations

import os
from collections import Counter

from support import REPO


def _test_module_names(folder: str) -> list[str]:
    """Basenames of test modules as pytest collects them: hidden directories are pruned, not walked
    (e2e/.cluster holds the plane's image trees, with thousands of third-party test files)."""
    names = []
    for _directory, subdirectories, files in os.walk(REPO / folder):
        subdirectories[:] = [name for name in subdirectories if not name.startswith(".")]
        names += [name for name in files if name.startswith("test_") and name.endswith(".py")]
    return names


def test_no_two_test_modules_share_a_basename():
    modules = _test_module_names("tests") + _test_module_names("e2e")
    assert [name for name, count in Counter(modules).items() if count > 1] == []
