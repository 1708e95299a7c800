"""The test tree's own rule: pytest imports test modules by basename (rootdir-relative packages are
not used here), so two modules of one name under tests/ and e2e/ stop the whole run at collection."""

from __future__ import annotations

from collections import Counter

from support import REPO


def test_no_two_test_modules_share_a_basename():
    # As pytest collects: not under hidden directories (e2e/.cluster holds the plane's image trees).
    modules = [path.name for folder in ("tests", "e2e") for path in (REPO / folder).rglob("test_*.py")
               if not any(part.startswith(".") for part in path.relative_to(REPO).parts)]
    assert [name for name, count in Counter(modules).items() if count > 1] == []
