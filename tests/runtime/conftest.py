"""Fixtures of the compiled receive path's tests (test_speedups*.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _lane_harness import Wire


@pytest.fixture
def wire() -> Iterator[Wire]:
    """A loopback socket pair the compiled drain reads (closed after the test)."""
    w = Wire()
    yield w
    w.close()
