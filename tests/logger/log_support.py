"""Helpers for logger tests: fake MessageInfo, in-process nodes, reading a log back.

Theory of operation: unit tests feed a :class:`~ganglion.logger.writer.Writer`
real ``MessageInfo`` tuples built by :func:`info`; end-to-end tests run real
``Node`` s on loopback with ``discovery=False`` and tmp state dirs
(:func:`node_kwargs`), and read the database with plain ``sqlite3`` as a user
would. :func:`skip_numbers` makes a publisher skip sequence numbers, which is
exactly what receivers see when its datagrams are lost.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

from waits import run as _run
from waits import until as until  # re-exported for the tests here

from ganglion.runtime.subscription import MessageInfo

LOOPBACK = "127.0.0.1"

def info(type_name: str = "t.A", *, sender: bytes = b"\x01" * 8, seq: int = 0,
         sent_ns: int = 1_000, received_ns: int | None = None, boot: int = 1,
         last_value: bool = False, local: bool = False, clock_synced: bool = True) -> MessageInfo:
    """A MessageInfo as the endpoint builds it for a received message."""
    return MessageInfo(type_name, sender, seq, sent_ns,
                       received_ns if received_ns is not None else sent_ns + 500, boot, local,
                       None if local else (LOOPBACK, 1234), clock_synced, last_value)


def node_kwargs(port: int, state: Path | None = None) -> dict[str, Any]:
    """Node arguments for a loopback test node (an observer when ``state`` is None)."""
    kw: dict[str, Any] = dict(interface=LOOPBACK, port=port, control_port=port + 1,
                              discovery=False, heartbeat_seconds=0.2, peer_timeout=2.0)
    if state is None:
        kw["observer"] = True
    else:
        kw["state_dir"] = state
    return kw


def skip_numbers(node: Any, type_name: str, count: int) -> None:
    """Make ``node``'s next ``count`` sequence numbers of ``type_name`` never be sent
    (as if their datagrams were lost: receivers see a gap)."""
    node._endpoint._next_seq[type_name] += count


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run a query on the log with plain sqlite3 (read-only)."""
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# The logger's scenarios run a little longer than a node test's default.
run = functools.partial(_run, timeout=40.0)
