"""Reading a log back: readings selected by type pattern and time, and time arguments.

Theory of operation: every tool (export, replay, info) selects readings the same
way. Type patterns are globs over the names in ``types`` (resolved to type ids
first, so the query uses the ``samples(type_id, received_ns)`` index); times
bound ``received_ns``, the logger's own clock, which is monotone with the
rows' ids, unlike ``sent_ns`` whose senders may have unsynchronised clocks.
Rows come back in id order (the order the logger received them), streamed
from a cursor so a large log is never loaded whole. The u64 columns (``boot``,
``seq``, ``sent_ns``) come back as stored and are converted to their unsigned
values here (:mod:`ganglion.logger.u64`), so every tool reads them exactly.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import sqlite3
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ganglion.logger.retention import parse_duration
from ganglion.logger.u64 import from_sql

__all__ = ["StoredReading", "count_readings", "parse_time", "select_readings", "type_ids"]


class StoredReading(NamedTuple):
    """One row of the log.

    Attributes:
        id: its row id (increasing in the order received).
        type: the type name.
        node: the sender's node id, 16 hex digits.
        boot: the sender's boot counter (unsigned, as sent).
        seq: the sender's sequence number (unsigned, as sent: up to 2**64 - 1).
        sent_ns: the sender's timestamp (unsigned, as sent).
        received_ns: the logger's timestamp.
        flags: :class:`~ganglion.logger.schema.Flags` bits.
        data: the fields as JSON text (see :mod:`ganglion.logger.datajson`).
        fingerprint: the schema fingerprint of its type version (16 hex digits), or
            None when the log does not know it.
    """

    id: int
    type: str
    node: str
    boot: int
    seq: int
    sent_ns: int
    received_ns: int
    flags: int
    data: str
    fingerprint: str | None = None


_SELECT = ("SELECT s.id, t.name, n.node, s.boot, s.seq, s.sent_ns, s.received_ns, s.flags, s.data, "
           "t.fingerprint "
           "FROM samples s JOIN types t ON t.id = s.type_id JOIN nodes n ON n.id = s.node_id")
_RELATIVE = re.compile(r"^(-)?\s*(\d+(?:\.\d*)?)\s*([smhdw])?\s*(ago)?$", re.IGNORECASE)


def type_ids(conn: sqlite3.Connection, patterns: Iterable[str]) -> list[int] | None:
    """Ids of the type versions whose names match a pattern; None when no patterns (all)."""
    pats = tuple(patterns)
    if not pats:
        return None
    return [tid for tid, name in conn.execute("SELECT id, name FROM types")
            if any(fnmatch.fnmatchcase(name, p) for p in pats)]


def select_readings(conn: sqlite3.Connection, *, patterns: Iterable[str] = (),
                    since_ns: int | None = None, until_ns: int | None = None) -> Iterator[StoredReading]:
    """Stream the readings that match, in the order the logger received them.

    Args:
        conn: an open log.
        patterns: glob patterns of type names; none selects every type.
        since_ns: only readings received at or after this time.
        until_ns: only readings received before this time.

    Returns:
        An iterator of :class:`StoredReading`.
    """
    where, params = _where(conn, patterns, since_ns, until_ns)
    if where is None:
        return iter(())
    cursor = conn.execute(f"{_SELECT}{where} ORDER BY s.id", params)
    return (StoredReading(rid, name, node, from_sql(boot), from_sql(seq), from_sql(sent_ns),
                          received_ns, flags, data, fingerprint)
            for rid, name, node, boot, seq, sent_ns, received_ns, flags, data, fingerprint
            in cursor)


def count_readings(conn: sqlite3.Connection, *, patterns: Iterable[str] = (),
                   since_ns: int | None = None, until_ns: int | None = None) -> int:
    """How many readings :func:`select_readings` would give."""
    where, params = _where(conn, patterns, since_ns, until_ns)
    if where is None:
        return 0
    return int(conn.execute(f"SELECT count(*) FROM samples s{where}", params).fetchone()[0])


def parse_time(text: str, *, now: dt.datetime | None = None) -> int:
    """Parse a ``--since``/``--until`` value to ns since the epoch.

    Accepts ISO 8601 (``2024-05-01T12:00``, ``2024-05-01 12:00:00+02:00``; local
    time when no offset is given), seconds since the epoch (``1714557600``), or
    a duration before now (``10m``, ``2h ago``, ``-1d``).

    Raises:
        ValueError: none of those.
    """
    text = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    match = _RELATIVE.match(text)
    if match is not None and (match.group(1) or match.group(3) or match.group(4)):
        ago = parse_duration(match.group(2) + (match.group(3) or "s"))
        return int((now.timestamp() - ago) * 1e9)
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use ISO 8601 (2024-05-01T12:00), "
                         "epoch seconds, or a duration ago (10m, 2h ago)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # naive means local time
    return int(when.timestamp() * 1e9)


def _where(conn: sqlite3.Connection, patterns: Iterable[str], since_ns: int | None,
           until_ns: int | None) -> tuple[str | None, list[int]]:
    clauses: list[str] = []
    params: list[int] = []
    ids = type_ids(conn, patterns)
    if ids is not None:
        if not ids:
            return None, []
        clauses.append(f"s.type_id IN ({','.join('?' * len(ids))})")
        params.extend(ids)
    if since_ns is not None:
        clauses.append("s.received_ns >= ?")
        params.append(since_ns)
    if until_ns is not None:
        clauses.append("s.received_ns < ?")
        params.append(until_ns)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
