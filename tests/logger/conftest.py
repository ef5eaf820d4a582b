"""Fixtures for logger tests: port pairs, a process spawner, fresh databases.

Every node here sends multicast out of 127.0.0.1 only (DESIGN.md); processes are
killed by PID at teardown; every wait is bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_fixtures import port, spawn

__all__ = ["port", "spawn"]  # fixtures of this directory, shared with node/ and forward/


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A path for a fresh log database."""
    return tmp_path / "log.db"
