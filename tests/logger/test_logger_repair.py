"""The logger and repair: the ``repaired`` flag per reading, and only permanent gaps.

Theory of operation: a real :class:`Writer` on a temp SQLite file is fed
``MessageInfo`` tuples as the endpoint builds them; a repaired reading is one with
``repaired=True`` (``MessageInfo.repaired``). A reading lost on the network opens a
gap in the writer's tracker when the next one arrives; repair brings the lost one
back a little later (flagged), which must close the gap, not leave a record of it,
even when the repair comes seconds later (a history answer, a retried request):
the gap's settle time (:data:`DEFAULT_GAP_SETTLE`) outlasts repair's give-up horizon.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
from log_support import info, rows

from ganglion.logger.export import export_csv, export_jsonl
from ganglion.logger.info import format_summary, summarize
from ganglion.logger.schema import open_log
from ganglion.logger.writer import DEFAULT_GAP_SETTLE, Writer, repair_horizon
from ganglion.repair import RequesterConfig
from ganglion.types import Record


def _wait_written(writer: Writer, count: int) -> None:
    writer.hand_off()
    deadline = time.monotonic() + 10
    while writer.stats().written < count:
        assert time.monotonic() < deadline, f"the writer did not write {count} readings"
        assert writer.error is None, writer.error
        time.sleep(0.01)


def test_a_gap_filled_by_a_late_repair_is_no_gap_and_the_reading_is_flagged(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    writer = Writer(db)
    writer.start()
    # seq 2 was lost 5 s ago (seq 3 showed it), and is repaired only now: a repair after
    # a retried request, or a history answer, can take seconds; the gap must wait for it
    seen = time.time_ns() - 5 * 10**9
    writer.add(Record("t.A", {"v": 1}), info(seq=1, received_ns=seen - 50_000_000))
    writer.add(Record("t.A", {"v": 3}), info(seq=3, received_ns=seen))
    _wait_written(writer, 2)
    repaired = info(seq=2, received_ns=time.time_ns())._replace(repaired=True)
    writer.add(Record("t.A", {"v": 2}), repaired)
    _wait_written(writer, 3)
    assert rows(db, "SELECT count(*) FROM gaps") == [(0,)]
    writer.close()
    assert rows(db, "SELECT seq, repaired FROM readings ORDER BY seq") == [(1, 0), (2, 1), (3, 0)]
    assert rows(db, "SELECT count(*) FROM gaps") == [(0,)]
    stats = writer.stats()
    assert (stats.repaired, stats.gaps, stats.missing) == (1, 0, 0)

    conn = open_log(db, write=False)
    try:
        out = io.StringIO()
        export_csv(conn, out)
        header, *lines = out.getvalue().splitlines()
        column = header.split(",").index("repaired")
        assert [line.split(",")[column] for line in lines] == ["false", "false", "true"]  # in arrival order
        out = io.StringIO()
        export_jsonl(conn, out)
        assert [json.loads(line).get("repaired", False) for line in
                out.getvalue().splitlines()] == [False, False, True]
        (stream,) = summarize(conn, db).streams
        assert (stream.count, stream.repaired, stream.gaps, stream.missing) == (3, 1, 0, 0)
        assert "REPAIRED" in format_summary(summarize(conn, db))
    finally:
        conn.close()


def test_a_gap_repair_gave_up_on_is_recorded_and_counted(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    writer = Writer(db)
    writer.start()
    now = time.time_ns()
    for seq in (1, 2, 6, 7):
        writer.add(Record("t.A", {"v": seq}), info(seq=seq, received_ns=now))
    writer.close()
    assert rows(db, "SELECT first_missing, last_missing, missing FROM gaps") == [(3, 5, 3)]
    conn = open_log(db, write=False)
    try:
        (stream,) = summarize(conn, db).streams
        assert (stream.repaired, stream.gaps, stream.missing) == (0, 1, 3)
    finally:
        conn.close()
    stats = writer.stats()
    assert (stats.repaired, stats.gaps, stats.missing) == (0, 1, 3)


def test_the_settle_time_outlasts_the_repair_give_up_horizon() -> None:
    config = RequesterConfig()
    horizon = config.delay + sum(min(config.retry * 2**i, config.max_retry)
                                 for i in range(config.attempts))
    assert repair_horizon() == pytest.approx(horizon)
    assert 2 * horizon <= DEFAULT_GAP_SETTLE
