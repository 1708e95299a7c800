"""Options shared by tests/ and e2e/ (pytest reads command-line options only from the root conftest)."""


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden files (tests/golden/, crds/, docs/reference.md) from the current code; review the diff",
    )
