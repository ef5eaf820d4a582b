"""The compiled batch encoder (ganglion._copyfast) against the Python path, byte for byte.

No server here: for every window of the edge log (test_pgcopy.edge_log: u64 values
beyond 2**63, a negative sent time that is not a whole microsecond, text beyond ASCII,
a missing and a present fingerprint, all 32 flag combinations) and every set of types
left out, the compiled reader's stream must be what :func:`pgcopy.payload` makes of
:data:`pgcopy.SELECT_TUPLES` (itself held against a ``struct``-built reference in
test_pgcopy.py), and its senders what :data:`_READ_NODES` gives. A row the compiled
path is not sure of sends the batch the Python way. test_forward_pg.py runs its
end-to-end tests with both paths.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_pgcopy import edge_log

from ganglion.forward import Forwarder, Target, _copy_accel, pgcopy
from ganglion.forward.forwarder import _READ_NODES
from ganglion.logger.schema import open_log, read_only_uri

fast = _copy_accel.load("auto")
needs_fast = pytest.mark.skipif(fast is None, reason="ganglion._copyfast is not built "
                                "(pip install -e . with a C compiler)")


def python_stream(conn: sqlite3.Connection, after: int, limit: int,
                  left_out: frozenset[int] = frozenset()) -> tuple[bytes, int, int]:
    """(stream, rows read, id read through) the Python path makes of a window."""
    rows = conn.execute(pgcopy.SELECT_TUPLES, (after, limit)).fetchall()
    kept = [row[2] for row in rows if row[1] not in left_out]
    return (pgcopy.payload(kept) if kept else b""), len(rows), (rows[-1][0] if rows else after)


def senders(conn: sqlite3.Connection, after: int, last: int,
            kept: frozenset[int]) -> list[tuple[Any, ...]]:
    """What _READ_NODES gives for a window and the types kept."""
    return conn.execute(_READ_NODES.format(types=
                        "AND s.type_id IN (SELECT value FROM json_each(?)) "),
                        (after, last, json.dumps(sorted(kept)))).fetchall()


@needs_fast
def test_every_window_and_left_out_set_is_the_python_stream(tmp_path: Path) -> None:
    assert fast is not None
    db = tmp_path / "log.db"
    count = edge_log(db)
    conn = open_log(db, write=False)
    reader = fast.Reader(read_only_uri(db), pgcopy.READ_ROWS)
    names = dict(conn.execute("SELECT id, node FROM nodes").fetchall())
    type_ids = [r[0] for r in conn.execute("SELECT id FROM types")]
    try:
        for size in range(len(type_ids) + 1):
            for left in itertools.combinations(type_ids, size):
                left_out = frozenset(left)
                for after, limit in itertools.product(range(count + 1), (1, 2, 7, 1000)):
                    done = reader.read(after, limit, left_out)
                    assert done is not None
                    data, read, encoded, last_id, types, nodes = done
                    expected, rows, through = python_stream(conn, after, limit, left_out)
                    assert (data, read, last_id) == (expected, rows, through), (after, limit)
                    kept = conn.execute(pgcopy.SELECT_TUPLES, (after, limit)).fetchall()
                    kept_types = [r[1] for r in kept if r[1] not in left_out]
                    assert encoded == len(kept_types) and set(types) == set(kept_types)
                    mine = sorted((names[i], first, last) for i, first, last in nodes)
                    theirs = [(node, first, last) for node, _, first, last
                              in senders(conn, after, through, frozenset(types))]
                    assert mine == theirs, (after, limit, left_out)
    finally:
        reader.close()
        conn.close()


@needs_fast
def test_a_stream_bigger_than_the_buffer_is_whole(tmp_path: Path) -> None:
    """The buffer starts at 64 KiB and grows: a batch of big readings comes out whole."""
    assert fast is not None
    db = tmp_path / "log.db"
    edge_log(db)
    conn = open_log(db)
    big = json.dumps({"blob": "é" * 50_000, "n": list(range(5000))})
    conn.executemany("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, "
                     "flags, data) VALUES (1, 1, 9, ?, 5, 6, 3, ?)",
                     [(seq, big) for seq in range(8)])
    conn.close()
    conn = open_log(db, write=False)
    reader = fast.Reader(read_only_uri(db), pgcopy.READ_ROWS)
    try:
        done = reader.read(0, 1000, ())
        assert done is not None and len(done[0]) > 8 * 100_000
        assert done[0] == python_stream(conn, 0, 1000)[0]
    finally:
        reader.close()
        conn.close()


@needs_fast
@pytest.mark.parametrize("change", [
    "UPDATE samples SET data = CAST(data AS BLOB) WHERE id = 3",  # a blob where text was
    "UPDATE samples SET seq = 'x' WHERE id = 4",                   # text where an integer was
    "UPDATE samples SET sent_ns = 1.5 WHERE id = 5",               # a real
])
def test_a_row_it_is_not_sure_of_goes_the_python_way(tmp_path: Path, change: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert fast is not None
    monkeypatch.setenv("GANGLION_COPY_FAST", "require")
    db = tmp_path / "log.db"
    edge_log(db)
    conn = open_log(db)
    conn.execute(change)
    conn.close()
    reader = fast.Reader(read_only_uri(db), pgcopy.READ_ROWS)
    try:
        assert reader.read(0, 1000, ()) is None  # the whole batch
        assert reader.read(5, 1000, ()) is not None  # the rows after it
    finally:
        reader.close()
    forwarder = Forwarder(db, Target.parse("postgresql://u@127.0.0.1:1/d"))
    try:
        assert forwarder._fast is not None
        batch = forwarder._read_at(0, frozenset())
        assert batch.data is None and batch.read == 35  # read the Python way
        conn = open_log(db, write=False)
        assert pgcopy.payload(r[2] for r in batch.rows) == python_stream(conn, 0, 1000)[0]
        conn.close()
    finally:
        forwarder.close()


@needs_fast
def test_the_reader_refuses_a_query_of_other_columns_and_use_after_close(
        tmp_path: Path) -> None:
    assert fast is not None
    db = tmp_path / "log.db"
    edge_log(db)
    with pytest.raises(ValueError, match="12"):
        fast.Reader(read_only_uri(db), "SELECT id FROM samples WHERE id > ? LIMIT ?")
    with pytest.raises(OSError, match="no such table"):
        fast.Reader(read_only_uri(db), "SELECT * FROM no_table")
    reader = fast.Reader(read_only_uri(db), pgcopy.READ_ROWS)
    reader.close()
    with pytest.raises(ValueError, match="closed"):
        reader.read(0, 10, ())


def test_the_choice_of_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _copy_accel.load("off") is None
    with pytest.raises(ValueError, match="GANGLION_COPY_FAST"):
        _copy_accel.load("fast")
    db = tmp_path / "log.db"
    edge_log(db)
    monkeypatch.setenv("GANGLION_COPY_FAST", "off")
    forwarder = Forwarder(db, Target.parse("postgresql://u@127.0.0.1:1/d"))
    try:
        assert forwarder._fast is None
        assert forwarder._read_at(0, frozenset()).data is None  # the Python path
    finally:
        forwarder.close()
    monkeypatch.setenv("GANGLION_COPY_FAST", "require")
    if fast is None:
        with pytest.raises(ImportError, match="GANGLION_COPY_FAST=require"):
            Forwarder(db, Target.parse("postgresql://u@127.0.0.1:1/d"))
        return
    forwarder = Forwarder(db, Target.parse("postgresql://u@127.0.0.1:1/d"))
    try:
        batch = forwarder._read_at(0, frozenset())
        conn = open_log(db, write=False)
        assert batch.data == python_stream(conn, 0, 1000)[0]
        conn.close()
    finally:
        forwarder.close()
