"""The binary COPY tuples the log renders (ganglion.forward.pgcopy), byte for byte.

No server here: each tuple SQLite renders is held against one built in Python with
``struct`` from the row as the row-by-row path converts it (``_convert``), for rows
at the edges: u64 values beyond 2**63 (stored negative), a sent time that is
negative and not a whole microsecond (truncated toward zero), text beyond ASCII, a
missing and a present fingerprint, and every combination of the five flags. The
end-to-end tests (test_forward_pg.py) send such rows to a real server and compare
what it stored.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest

from ganglion.errors import LogDatabaseError
from ganglion.forward import Forwarder, Target, pgcopy
from ganglion.forward.forwarder import _READ, _convert
from ganglion.logger.schema import open_log

_PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _text(value: str | None) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    raw = value.encode()
    return struct.pack(">i", len(raw)) + raw


def _int8(value: int) -> bytes:
    return struct.pack(">iq", 8, value)


def _bool(value: bool) -> bytes:
    return struct.pack(">i?", 1, value)


def reference_tuple(row: tuple[Any, ...]) -> bytes:
    """One ``readings`` row (as ``_convert`` gives it) in PostgreSQL's binary COPY format."""
    (time, type_name, node, seq, sent_ns, received_ns, data, boot, fingerprint,
     last_value, replayed, clock_synced, local, repaired) = row
    micros = (time - _PG_EPOCH) // dt.timedelta(microseconds=1)
    json_text = data.encode()
    return b"".join([
        struct.pack(">h", 14), _int8(micros), _text(type_name), _text(node), _int8(seq),
        _int8(sent_ns), _int8(received_ns),
        struct.pack(">i", len(json_text) + 1) + b"\x01" + json_text, _int8(boot),
        _text(fingerprint), _bool(last_value), _bool(replayed), _bool(clock_synced),
        _bool(local), _bool(repaired)])


def edge_log(path: Path) -> int:
    """A log with rows at the edges, written straight into its tables; returns the count."""
    conn = open_log(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        plain = conn.execute(
            "INSERT INTO types (name, fingerprint, fields, source, first_ns) VALUES "
            "('sensors.Temperature', NULL, '[]', 'observed', 0)").lastrowid
        printed = conn.execute(
            "INSERT INTO types (name, fingerprint, fields, source, first_ns) VALUES "
            "('café.Größe', '0123456789abcdef', '[]', 'class', 0)").lastrowid
        one = conn.execute("INSERT INTO nodes (node) VALUES ('0102030405060708')").lastrowid
        two = conn.execute("INSERT INTO nodes (node, name) VALUES ('ffffffffffffffff', 'pi')"
                           ).lastrowid
        rows = [
            (plain, one, 1, 0, 1_700_000_000_123_456_789, 1_700_000_000_200_000_000, 0,
             '{"sensor":"w1","celsius":21.5}'),
            # u64 >= 2**63 as stored (negative); a sent time before 1970 that is not a
            # whole microsecond; text beyond ASCII with a backslash and a tab escaped
            (printed, two, -5, -2, -1_999, -9_223_372_036_854_775_808, 15,
             '{"s":"\\u00e9 \\\\ \\t \u00fc","n":{"$float":"NaN"}}'),
            (printed, one, 2**31, 2**63 - 1, -(2**63), 0, 5, '{}'),
        ]
        rows += [(plain, two, 7, 100 + flags, 1_000 * flags + 999, 1, flags, '{"f":1}')
                 for flags in range(32)]
        conn.executemany("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, "
                         "received_ns, flags, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
        return len(rows)
    finally:
        conn.close()


def test_the_tuples_sqlite_renders_are_binary_copy_byte_for_byte(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    count = edge_log(db)
    conn = open_log(db, write=False)
    try:
        rendered = conn.execute(pgcopy.SELECT_TUPLES, (0, 1000)).fetchall()
        rows = conn.execute(_READ, (0, 1000)).fetchall()
    finally:
        conn.close()
    assert len(rendered) == len(rows) == count
    for (row_id, type_id, hex_tuple), row in zip(rendered, rows, strict=True):
        assert row_id == row[0] and isinstance(type_id, int)
        assert bytes.fromhex(hex_tuple) == reference_tuple(_convert(row)), row


def test_a_payload_is_signature_tuples_trailer(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    edge_log(db)
    conn = open_log(db, write=False)
    try:
        rendered = conn.execute(pgcopy.SELECT_TUPLES, (0, 2)).fetchall()
    finally:
        conn.close()
    data = pgcopy.payload(r[2] for r in rendered)
    assert data.startswith(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
    assert data.endswith(b"\xff\xff")
    assert data[19:-2] == bytes.fromhex(rendered[0][2] + rendered[1][2])


def test_a_log_not_in_utf8_is_refused(tmp_path: Path) -> None:
    """The tuples take a text's bytes as UTF-8: a UTF-16 log would send garbage."""
    db = tmp_path / "log.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("CREATE TABLE x (y)")  # the encoding is fixed by the first table
    conn.execute("DROP TABLE x")  # (an empty file, which open_log makes a log)
    conn.commit()
    conn.close()
    open_log(db).close()
    with pytest.raises(LogDatabaseError, match=r"UTF-16le.*UTF-8 log"):
        Forwarder(db, Target.parse("postgresql://u@127.0.0.1:1/d"))
