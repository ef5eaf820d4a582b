"""Fixtures for logger tests: port pairs, a process spawner, fresh databases.

Every node here sends multicast out of 127.0.0.1 only (DESIGN.md); processes are
killed by PID at teardown; every wait is bounded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))

from node_support import Spawner, free_port_pair


@pytest.fixture
def port() -> int:
    """A data port whose next port (the control port) is free too."""
    return free_port_pair()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """Start ``python -m ganglion ...`` processes; all are killed by PID at teardown."""
    spawner = Spawner(tmp_path / "logs")
    try:
        yield spawner
    finally:
        spawner.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A path for a fresh log database."""
    return tmp_path / "log.db"
