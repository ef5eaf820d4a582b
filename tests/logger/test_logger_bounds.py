"""Issue 21 findings 3, 6 and 8 against the real writer and a real SQLite file (no network).

* Finding 3: u64 values >= 2**63 (sequence number, ``sent_ns``) are stored and
  read back exactly; a reading that cannot be stored is rejected and counted;
  any other writer failure stops the writer with a reported error.
* Finding 6: 100,000 made-up sender ids, or 50,000 boots of one id, leave the
  writer's caches and the ``nodes`` table bounded, and evictions counted.
* Finding 8 (logger part): numbers a sender published while no logger ran
  become a gap when the next logger run sees the stream again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from log_support import info, rows

from ganglion.errors import LogDatabaseError
from ganglion.logger.export import export_csv, export_jsonl
from ganglion.logger.info import format_summary, summarize, summary_json
from ganglion.logger.query import select_readings
from ganglion.logger.retention import Retention, apply_retention
from ganglion.logger.schema import APPLICATION_ID, SCHEMA_VERSION, open_log
from ganglion.logger.writer import Writer
from ganglion.types import Record

SEQ = 2**63  # the finding's sequence number
SENT = 2**64 - 1  # the finding's sent_ns
A = b"\xa1" * 8


def _write(db: Path, readings: list[tuple[Any, Any]], **kw: Any) -> Writer:
    writer = Writer(db, **kw)
    writer.start()
    for msg, inf in readings:
        writer.add(msg, inf)
    writer.close()
    return writer


# -- finding 3: u64 values ---------------------------------------------------------------


def test_a_sequence_number_of_2_63_and_sent_ns_of_2_64_minus_1_are_logged_exactly(db: Path) -> None:
    fields = {"big": 2**64 - 1, "small": -(2**64), "v": 1.5}
    writer = _write(db, [
        (Record("x.Y", {"v": 0.5}), info("x.Y", sender=A, seq=SEQ - 1, sent_ns=SENT - 1,
                                         received_ns=1_000)),
        (Record("x.Y", fields), info("x.Y", sender=A, seq=SEQ, sent_ns=SENT, boot=2**32 - 1,
                                     received_ns=2_000)),
    ])
    assert writer.stats().written == 2, "the writer thread died on the first u64 >= 2**63"
    assert writer.error is None and writer.stats().rejected == 0
    # stored as two's complement: what the plain sqlite3 tool shows
    assert rows(db, "SELECT seq, sent_ns FROM readings ORDER BY id") == [
        (SEQ - 1, SENT - 1 - 2**64), (SEQ - 2**64, -1)]
    conn = open_log(db, write=False)
    try:
        got = list(select_readings(conn))
        assert [(r.seq, r.sent_ns, r.boot) for r in got] == [(SEQ - 1, SENT - 1, 1),
                                                             (SEQ, SENT, 2**32 - 1)]
        out = io.StringIO()
        assert export_csv(conn, out) == 2
        last = list(csv.DictReader(io.StringIO(out.getvalue())))[-1]
        assert (last["seq"], last["sent_ns"], last["boot"]) == (str(SEQ), str(SENT), str(2**32 - 1))
        assert (last["big"], last["small"]) == (str(2**64 - 1), str(-(2**64)))
        out = io.StringIO()
        export_jsonl(conn, out)
        line = json.loads(out.getvalue().splitlines()[-1])
        assert (line["seq"], line["sent_ns"], line["data"]) == (SEQ, SENT, fields)
        summary = summarize(conn, db)
        assert summary.streams[0].last_value == fields
        assert json.loads(summary_json(summary))["streams"][0]["last_value"]["big"] == 2**64 - 1
    finally:
        conn.close()


def test_a_gap_across_2_63_is_stored_and_counted_exactly(db: Path) -> None:
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, seq=s)) for s in (SEQ - 3, SENT)])
    conn = open_log(db, write=False)
    try:
        stream = summarize(conn, db).streams[0]
        assert (stream.gaps, stream.missing) == (1, SENT - SEQ + 2)  # SEQ-2 .. SENT-1
    finally:
        conn.close()
    # the view still gives a (rounded) size for a gap whose stored bounds change sign
    assert rows(db, "SELECT missing FROM gaps") == [(float(SENT - SEQ + 2),)]


def test_a_huge_forged_jump_does_not_break_info(db: Path) -> None:
    # Two gaps of ~2**63 numbers each: SQLite's sum() would raise "integer overflow".
    readings = [(Record("x.Y", {}), info("x.Y", sender=A, seq=s)) for s in (0, SEQ, SENT)]
    _write(db, readings)
    conn = open_log(db, write=False)
    try:
        stream = summarize(conn, db).streams[0]
        assert (stream.gaps, stream.missing) == (2, SENT - 2)
        assert "x.Y" in format_summary(summarize(conn, db))
    finally:
        conn.close()


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def test_readings_that_cannot_be_stored_are_rejected_and_counted_and_the_rest_written(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ganglion.logger.writer")
    writer = _write(db, [
        (Record("x.Y", {"i": 0}), info("x.Y", seq=0)),
        (Record("x.Y", {"i": 1}), info("x.Y", seq=2**64)),  # outside u64
        (Record("x.Y", {"i": 2}), info("x.Y", seq=2, sent_ns=-1)),  # outside u64
        # 1,300 levels of nesting fit in one datagram; JSON's encoder recurses per level
        (Record("x.Y", {"deep": _nested(1300)}), info("x.Y", seq=3)),
        (Record("x.Y", {"i": 4}), info("x.Y", seq=4)),
    ])
    assert writer.error is None
    stats = writer.stats()
    assert (stats.written, stats.rejected) == (2, 3)
    assert rows(db, "SELECT seq FROM readings ORDER BY id") == [(0,), (4,)]
    assert rows(db, "SELECT rejected FROM sessions") == [(3,)]
    assert "rejected so far" in caplog.text


def test_an_unexpected_writer_failure_stops_the_writer_and_is_reported(
        db: Path, caplog: pytest.LogCaptureFixture) -> None:
    # received_ns is the logger's own clock, never converted: a value SQLite refuses
    # there is not bad input but a failure of the logger itself (OverflowError, the
    # error the finding hit), which must stop the writer loudly.
    caplog.set_level(logging.ERROR, "ganglion.logger.writer")
    errors: list[LogDatabaseError] = []
    writer = Writer(db, batch_rows=1, on_error=errors.append)
    writer.start()
    writer.add(Record("x.Y", {}), info("x.Y", seq=0, received_ns=2**64))
    writer.close()
    assert errors and errors[0] is writer.error
    assert "OverflowError" in str(writer.error) and str(db) in str(writer.error)
    assert "Traceback" in caplog.text and "log writer" in caplog.text
    writer.add(Record("x.Y", {}), info("x.Y", seq=1))
    writer.hand_off()
    stats = writer.stats()
    assert stats.written == 0 and stats.dropped == 2


# -- finding 6: bounded state ------------------------------------------------------------


def test_100000_made_up_sender_ids_leave_the_writer_and_the_nodes_table_bounded(db: Path) -> None:
    # Room for every batch in the queue: what is measured is the writer's state, not
    # whether its thread keeps up on a loaded machine (a full queue drops readings).
    writer = Writer(db, batch_rows=5000, max_batches=64)
    writer.start()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(100_000):
            sender = (0x1000_0000_0000_0000 + i).to_bytes(8, "big")
            writer.add(Record("x.Y", {"v": i}), info("x.Y", sender=sender, seq=i,
                                                     received_ns=1_000_000 + i * 1000))
        writer.hand_off()
        writer.close()
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    stats = writer.stats()
    assert writer.error is None
    # 0.1 s of made-up senders: the burst of 4,096 new nodes rows, no more
    assert rows(db, "SELECT count(*) FROM nodes") == [(4096,)]
    assert stats.written == 4096 and stats.refused == 100_000 - 4096
    assert stats.senders <= 4096 and stats.streams <= 4096
    assert rows(db, "SELECT refused FROM sessions") == [(100_000 - 4096,)]
    assert grown < 8_000_000, f"the writer kept {grown} bytes"


def test_senders_admitted_over_time_are_cached_at_most_4096_and_evictions_counted(
        db: Path) -> None:
    writer = Writer(db, batch_rows=2000, max_batches=64)
    writer.start()
    count = 10_000
    for i in range(count):
        sender = (0x2000_0000_0000_0000 + i).to_bytes(8, "big")
        # one new sender per 1.1 s: within the steady rate, so every one gets a row
        writer.add(Record("x.Y", {"v": i}), info("x.Y", sender=sender, seq=5,
                                                 received_ns=i * 1_100_000_000))
    writer.close()
    stats = writer.stats()
    assert stats.written == count and stats.refused == 0
    assert stats.senders <= 4096 and stats.streams <= 4096
    # node ids and streams both evicted the oldest of 10,000
    assert stats.evicted >= 2 * (count - 4096)
    assert rows(db, "SELECT count(*) FROM nodes") == [(count,)]
    assert rows(db, "SELECT evicted FROM sessions") == [(stats.evicted,)]
    conn = open_log(db, write=False)
    try:
        assert "cache evictions" in format_summary(summarize(conn, db))
    finally:
        conn.close()


def test_50000_boots_of_one_sender_leave_the_gap_tracker_bounded(db: Path) -> None:
    writer = Writer(db, batch_rows=5000, max_batches=64)
    writer.start()
    for boot in range(50_000):
        writer.add(Record("x.Y", {}), info("x.Y", sender=A, boot=boot, seq=0,
                                           received_ns=1_000 + boot))
        writer.add(Record("x.Y", {}), info("x.Y", sender=A, boot=boot, seq=2,
                                           received_ns=1_000 + boot))
    writer.close()
    stats = writer.stats()
    assert stats.written == 100_000 and stats.streams <= 4096
    assert stats.evicted >= 50_000 - 4096
    assert rows(db, "SELECT count(*) FROM nodes") == [(1,)]
    assert rows(db, "SELECT count(*) FROM streams") == [(1,)]
    # every boot's gap (seq 1) is still recorded: evicted streams settle their gaps early
    assert rows(db, "SELECT count(*), sum(missing) FROM gaps") == [(50_000, 50_000)]


def test_a_type_gets_at_most_64_versions_and_readings_beyond_are_refused(db: Path) -> None:
    writer = _write(db, [(Record("x.Y", {f"f{i}": i}), info("x.Y", seq=i)) for i in range(100)])
    assert rows(db, "SELECT count(*) FROM types WHERE name = 'x.Y'") == [(64,)]
    assert (writer.stats().written, writer.stats().refused) == (64, 36)


def test_retention_removes_the_nodes_rows_of_senders_whose_readings_are_gone(db: Path) -> None:
    old, new = b"\x0a" * 8, b"\x0b" * 8
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=old, seq=0, received_ns=1_000)),
                (Record("x.Y", {}), info("x.Y", sender=old, seq=5, received_ns=2_000)),
                (Record("x.Y", {}), info("x.Y", sender=new, seq=0, received_ns=10**12))])
    conn = open_log(db)
    try:
        assert apply_retention(conn, Retention(max_age=1.0, max_size=0), 10**12 + 10**8) == 2
    finally:
        conn.close()
    assert rows(db, "SELECT node FROM nodes") == [(new.hex(),)]
    assert rows(db, "SELECT count(*) FROM streams") == [(1,)]
    assert rows(db, "SELECT count(*) FROM gap_spans") == [(0,)]
    # the sender comes back: a new nodes row, and its readings join it
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=old, seq=9, received_ns=10**12 + 5))])
    assert rows(db, "SELECT count(*) FROM readings WHERE node = ?", old.hex()) == [(1,)]


# -- finding 8: gaps across logger restarts ----------------------------------------------


def test_numbers_published_while_no_logger_ran_are_a_gap_in_the_next_run(db: Path) -> None:
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, seq=s, received_ns=1_000 + s))
                for s in range(10)])
    assert rows(db, "SELECT count(*) FROM gaps") == [(0,)]
    # the logger restarts; the sender went on with numbers 10..14 meanwhile
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, seq=15, received_ns=9_000)),
                (Record("x.Y", {}), info("x.Y", sender=A, seq=16, received_ns=9_001)),
                (Record("x.Y", {}), info("x.Y", sender=A, seq=0, boot=2, received_ns=9_002))])
    assert rows(db, "SELECT type, node, boot, first_missing, last_missing, missing, detected_ns "
                    "FROM gaps") == [("x.Y", A.hex(), 1, 10, 14, 5, 9_000)]
    # a third run: the sender's new boot is where the stream stands now
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, seq=3, boot=2, received_ns=9_500))])
    assert rows(db, "SELECT boot, first_missing, last_missing FROM gaps ORDER BY detected_ns") == [
        (1, 10, 14), (2, 1, 2)]


def test_a_restart_gap_above_2_63_is_exact(db: Path) -> None:
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, seq=SEQ - 2))])
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, seq=SEQ + 3))])
    conn = open_log(db, write=False)
    try:
        stream = summarize(conn, db).streams[0]
        assert (stream.gaps, stream.missing) == (1, 4)
    finally:
        conn.close()


def test_a_stream_evicted_from_the_tracker_resumes_from_the_database(db: Path) -> None:
    writer = Writer(db, batch_rows=1, max_senders=2)
    writer.start()
    others = [bytes([0xC0 + i]) * 8 for i in range(3)]
    writer.add(Record("x.Y", {}), info("x.Y", sender=A, seq=0))
    writer.add(Record("x.Y", {}), info("x.Y", sender=A, seq=1))
    for i, other in enumerate(others):  # push A out of the two-stream tracker, 2 s apart
        writer.add(Record("x.Y", {}), info("x.Y", sender=other, seq=0,
                                           received_ns=(i + 1) * 2_000_000_000))
    writer.add(Record("x.Y", {}), info("x.Y", sender=A, seq=7, received_ns=10**10))
    writer.close()
    assert writer.stats().evicted > 0 and writer.stats().refused == 0
    assert rows(db, "SELECT node, first_missing, last_missing FROM gaps") == [(A.hex(), 2, 6)]


V1_SCHEMA = """
CREATE TABLE nodes (id INTEGER PRIMARY KEY, node TEXT NOT NULL UNIQUE, name TEXT,
                    first_ns INTEGER, last_ns INTEGER);
CREATE TABLE types (id INTEGER PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT,
                    fields TEXT NOT NULL, units TEXT, source TEXT NOT NULL,
                    first_ns INTEGER NOT NULL);
CREATE INDEX types_name ON types(name);
CREATE TABLE samples (id INTEGER PRIMARY KEY, type_id INTEGER NOT NULL REFERENCES types(id),
                      node_id INTEGER NOT NULL REFERENCES nodes(id), boot INTEGER NOT NULL,
                      seq INTEGER NOT NULL, sent_ns INTEGER NOT NULL,
                      received_ns INTEGER NOT NULL, flags INTEGER NOT NULL DEFAULT 0,
                      data TEXT NOT NULL);
CREATE INDEX samples_type_time ON samples(type_id, received_ns);
CREATE TABLE gap_spans (id INTEGER PRIMARY KEY, type TEXT NOT NULL,
                        node_id INTEGER NOT NULL REFERENCES nodes(id), boot INTEGER NOT NULL,
                        first_missing INTEGER NOT NULL, last_missing INTEGER NOT NULL,
                        detected_ns INTEGER NOT NULL);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, started_ns INTEGER NOT NULL, ended_ns INTEGER,
                       logger_node TEXT, version TEXT, patterns TEXT,
                       received INTEGER NOT NULL DEFAULT 0, written INTEGER NOT NULL DEFAULT 0,
                       dropped INTEGER NOT NULL DEFAULT 0);
CREATE VIEW readings AS
SELECT s.id AS id, t.name AS type, n.node AS node, s.seq AS seq, s.sent_ns AS sent_ns,
       s.received_ns AS received_ns, s.data AS data, s.boot AS boot,
       t.fingerprint AS fingerprint, n.name AS node_name,
       (s.flags & 1) != 0 AS last_value, (s.flags & 2) != 0 AS replayed,
       (s.flags & 4) = 0 AS clock_synced, (s.flags & 8) != 0 AS local
FROM samples s JOIN types t ON t.id = s.type_id JOIN nodes n ON n.id = s.node_id;
CREATE VIEW gaps AS
SELECT g.type AS type, n.node AS node, g.boot AS boot, g.first_missing AS first_missing,
       g.last_missing AS last_missing, g.last_missing - g.first_missing + 1 AS missing,
       g.detected_ns AS detected_ns
FROM gap_spans g JOIN nodes n ON n.id = g.node_id;
PRAGMA user_version = 1;
"""


def _v1_log(db: Path) -> None:
    """A log as ganglion wrote it with schema version 1: sender A, boots 1 and 2."""
    conn = sqlite3.connect(db)
    conn.executescript(V1_SCHEMA)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("INSERT INTO nodes VALUES (1, ?, 'a', 1, 40)", (A.hex(),))
    conn.execute("INSERT INTO types VALUES (1, 'x.Y', NULL, '[]', NULL, 'observed', 1)")
    conn.executemany("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, "
                     "flags, data) VALUES (1, 1, ?, ?, 5, ?, ?, '{}')",
                     [(1, 50, 10, 0), (1, 60, 20, 0), (2, 3, 30, 0), (2, 9, 40, 1)])
    conn.execute("INSERT INTO sessions (started_ns, received, written) VALUES (1, 4, 4)")
    conn.commit()
    conn.close()


def test_a_version_1_log_is_upgraded_and_its_streams_resume_after_the_upgrade(db: Path) -> None:
    _v1_log(db)
    assert SCHEMA_VERSION == 4
    with pytest.raises(LogDatabaseError, match="run `ganglion log` on it once"):
        open_log(db, write=False)
    # boot 2's newest reading (seq 9) is a last value: the baseline is seq 3
    _write(db, [(Record("x.Y", {}), info("x.Y", sender=A, boot=2, seq=6, received_ns=50))])
    assert rows(db, "PRAGMA user_version") == [(4,)]
    assert rows(db, "SELECT schema FROM types WHERE id = 1") == [(None,)]
    assert rows(db, "SELECT seq, repaired FROM readings WHERE seq = 6") == [(6, 0)]
    assert rows(db, "SELECT boot, last_seq FROM streams") == [(2, 6)]
    assert rows(db, "SELECT boot, first_missing, last_missing FROM gaps") == [(2, 4, 5)]
    assert rows(db, "SELECT received, written, rejected, refused, evicted FROM sessions "
                    "ORDER BY id") == [(4, 4, 0, 0, 0), (1, 1, 0, 0, 0)]
    conn = open_log(db, write=False)
    try:
        assert [r.seq for r in select_readings(conn)] == [50, 60, 3, 9, 6]
    finally:
        conn.close()
