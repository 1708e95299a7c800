"""Golden files: the exact output of `llm-operator render` for every example.

After an intended change run `make golden` and review the diff like code: it is what every
cluster running this operator will receive."""

import io

import pytest

from llm_operator.cli import main
from support import EXAMPLES, REPO, check_golden


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_render_matches_golden(example, request):
    out, err = io.StringIO(), io.StringIO()
    assert main(["render", "-f", str(example)], stdout=out, stderr=err) == 0, err.getvalue()
    check_golden(REPO / "tests" / "golden" / example.name, out.getvalue(), request.config.getoption("--update-golden"))
