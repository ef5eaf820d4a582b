"""The fixtures shared by the test directories that start nodes (node, logger, forward).

A conftest makes them its own by importing them (pytest registers a fixture found
in a conftest's namespace): ``from node_fixtures import port, spawn``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from node_support import Spawner, free_port_pair

__all__ = ["port", "spawn"]


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
