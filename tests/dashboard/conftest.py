"""Fixtures for dashboard tests: loopback port pairs (helpers live in dash_support)."""

from __future__ import annotations

import pytest
from port_pairs import free_port_pair


@pytest.fixture
def port() -> int:
    """A data port whose next port (the control port) is free too."""
    return free_port_pair()
