"""What the logger and dashboard test helpers share: arguments for an in-process node
on loopback, and reading a log back with plain sqlite3 as a user would.

Imported as ``log_nodes`` (``tests/`` is on every test's ``sys.path``) by
tests/logger/log_support.py and tests/dashboard/dash_support.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from port_pairs import LOOPBACK


def node_kwargs(port: int, state: Path | None = None, *,
                name: str | None = None) -> dict[str, Any]:
    """Node arguments for a loopback test node: an observer when ``state`` is None, else a
    member keeping its state there; fast heartbeats, no mDNS; ``name`` when given."""
    kw: dict[str, Any] = dict(interface=LOOPBACK, port=port, control_port=port + 1,
                              discovery=False, heartbeat_seconds=0.2, peer_timeout=2.0)
    if name is not None:
        kw["name"] = name
    if state is None:
        kw["observer"] = True
    else:
        kw["state_dir"] = state
    return kw


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a query on a log with plain sqlite3 (read-only)."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()
