"""The forwarders' positions in a log, and what retention must leave for them.

Theory of operation: a log forwarded to a central database (``ganglion
forward``, :mod:`ganglion.forward`) is that database's durable buffer. Each
forwarding target (``user@host:port/db``, never a password) has one row in
``forward_positions``: the highest ``samples.id`` it has delivered (and the
highest ``gap_spans.id``), advanced only after the central database committed
them. ``samples.id`` grows with every commit of the log (one writer thread,
SQLite's write lock), so "everything after the position" is exactly what is
still to be sent.

The table is made by the first forwarder (``CREATE TABLE IF NOT EXISTS``), not
by the versioned log schema: a log that is never forwarded never has it, and
older ganglion versions read a forwarded log unchanged.

Retention (:mod:`ganglion.logger.retention`) asks :func:`floor` for the lowest
position: age-based removal stops there, so a reading is never aged out before
it was forwarded. Only the size limit may remove readings not yet forwarded (a
full disk is worse: it stops the logger); :func:`count_unforwarded` counts them
per target into ``dropped`` before they go, and the log says so. While any
target is registered, retention also keeps the newest reading: SQLite gives
the row after an *emptied* table id 1, which would put new readings behind
every position.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["count_unforwarded", "ensure_table", "floor", "forwarded_through", "has_table"]

_TABLE = """
CREATE TABLE IF NOT EXISTS forward_positions (
    target      TEXT PRIMARY KEY,            -- user@host:port/db (no password)
    last_id     INTEGER NOT NULL DEFAULT 0,  -- samples.id delivered through
    last_gap_id INTEGER NOT NULL DEFAULT 0,  -- gap_spans.id delivered through
    forwarded   INTEGER NOT NULL DEFAULT 0,  -- readings delivered (new on the server or not)
    rejected    INTEGER NOT NULL DEFAULT 0,  -- readings the server refused (skipped)
    dropped     INTEGER NOT NULL DEFAULT 0,  -- removed by the size limit before delivery
    updated_ns  INTEGER
)
"""


def has_table(conn: sqlite3.Connection) -> bool:
    """Whether the log has ever been forwarded (the positions table exists)."""
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                        "AND name = 'forward_positions'").fetchone() is not None


def ensure_table(conn: sqlite3.Connection, target: str) -> tuple[int, int]:
    """Make the positions table and ``target``'s row; return its (last_id, last_gap_id).

    Args:
        conn: a writable log connection in autocommit mode.
        target: the target's name (no password).
    """
    conn.execute(_TABLE)
    conn.execute("INSERT OR IGNORE INTO forward_positions (target, updated_ns) VALUES (?, ?)",
                 (target, time.time_ns()))
    row = conn.execute("SELECT last_id, last_gap_id FROM forward_positions WHERE target = ?",
                       (target,)).fetchone()
    return int(row[0]), int(row[1])


def forwarded_through(conn: sqlite3.Connection, target: str, last_id: int, last_gap_id: int,
                      forwarded: int, rejected: int) -> None:
    """Record that ``target`` committed everything through ``last_id``/``last_gap_id``.

    Positions only move forward (``max``): a position is a promise that the
    server has the rows, and a late, smaller update must not take it back.
    """
    conn.execute(
        "UPDATE forward_positions SET last_id = max(last_id, ?), last_gap_id = max(last_gap_id, ?), "
        "forwarded = forwarded + ?, rejected = rejected + ?, updated_ns = ? WHERE target = ?",
        (last_id, last_gap_id, forwarded, rejected, time.time_ns(), target))


def reset(conn: sqlite3.Connection, target: str) -> None:
    """Start ``target`` from the beginning of the log again (the server ignores what it
    already has, so this costs time, never a duplicate)."""
    conn.execute("UPDATE forward_positions SET last_id = 0, last_gap_id = 0 WHERE target = ?",
                 (target,))


def floor(conn: sqlite3.Connection) -> int | None:
    """The lowest position of any target (None when the log is not forwarded)."""
    if not has_table(conn):
        return None
    value = conn.execute("SELECT min(last_id) FROM forward_positions").fetchone()[0]
    return None if value is None else int(value)


def count_unforwarded(conn: sqlite3.Connection, through_id: int) -> int:
    """Count, per target, the readings up to ``through_id`` it has not been sent, into its
    ``dropped``; call inside the transaction that deletes them.

    Returns:
        The most readings any one target loses (0 when all were forwarded).
    """
    worst = 0
    for target, last_id in conn.execute(
            "SELECT target, last_id FROM forward_positions WHERE last_id < ?",
            (through_id,)).fetchall():
        lost = conn.execute("SELECT count(*) FROM samples WHERE id > ? AND id <= ?",
                            (last_id, through_id)).fetchone()[0]
        if lost:
            conn.execute("UPDATE forward_positions SET dropped = dropped + ? WHERE target = ?",
                         (lost, target))
            worst = max(worst, int(lost))
    return worst
