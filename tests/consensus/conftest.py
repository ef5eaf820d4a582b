"""Fixtures and options for the consensus tests.

``--update-golden`` rewrites ``testdata/*.txt`` with the outputs the code produces now;
review the diff before committing it.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/consensus/testdata/*.txt golden traces from the current code",
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))
