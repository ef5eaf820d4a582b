"""The database side without a network: schema and versions, writer, retention, info, replay."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from log_support import info, rows, run

from ganglion.errors import LogDatabaseError
from ganglion.logger import datajson
from ganglion.logger.export import export_csv
from ganglion.logger.info import format_summary, summarize, summary_json
from ganglion.logger.query import count_readings, select_readings
from ganglion.logger.replay import replay
from ganglion.logger.retention import Retention, apply_retention, used_bytes
from ganglion.logger.schema import APPLICATION_ID, SCHEMA_VERSION, open_log
from ganglion.logger.writer import Writer
from ganglion.types import Record
from hardware.readings import Temperature

# -- schema ------------------------------------------------------------------------------


def test_a_new_log_is_marked_versioned_and_in_wal_mode(db: Path) -> None:
    open_log(db).close()
    assert rows(db, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert rows(db, "PRAGMA journal_mode") == [("wal",)]
    names = {n for (n,) in rows(db, "SELECT name FROM sqlite_master")}
    assert {"readings", "samples", "types", "nodes", "gaps", "gap_spans", "sessions"} <= names


def test_an_older_log_is_upgraded_step_by_step_and_a_failed_step_changes_nothing(db: Path) -> None:
    open_log(db).close()

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE nodes ADD COLUMN site TEXT")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE nodes ADD COLUMN extra TEXT")
        raise sqlite3.OperationalError("step failed")

    with pytest.raises(LogDatabaseError, match="step failed"):
        open_log(db, migrations={SCHEMA_VERSION: broken}, version=SCHEMA_VERSION + 1)
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert "extra" not in {c[1] for c in rows(db, "PRAGMA table_info(nodes)")}
    open_log(db, migrations={SCHEMA_VERSION: add_column}, version=SCHEMA_VERSION + 1).close()
    assert rows(db, "PRAGMA user_version") == [(SCHEMA_VERSION + 1,)]
    assert "site" in {c[1] for c in rows(db, "PRAGMA table_info(nodes)")}
    with pytest.raises(LogDatabaseError, match="upgrade ganglion"):
        open_log(db)  # this code only knows SCHEMA_VERSION
    with pytest.raises(LogDatabaseError, match="no upgrade"):
        open_log(db, migrations={}, version=SCHEMA_VERSION + 2)


def test_foreign_files_and_missing_logs_are_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(LogDatabaseError, match="not a ganglion log"):
        open_log(other)
    with pytest.raises(LogDatabaseError, match="no such log"):
        open_log(tmp_path / "missing.db", write=False)
    text = tmp_path / "text.db"
    text.write_text("hello, this is not sqlite at all" * 10)
    with pytest.raises(LogDatabaseError):
        open_log(text)


def test_the_tools_open_a_log_read_only(db: Path) -> None:
    open_log(db).close()
    conn = open_log(db, write=False)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("DELETE FROM nodes")


# -- writer ------------------------------------------------------------------------------


def _write(db: Path, readings: list[tuple[Any, Any]], **kw: Any) -> Writer:
    writer = Writer(db, **kw)
    writer.start()
    for msg, inf in readings:
        writer.add(msg, inf)
    writer.close()
    return writer


def test_readings_are_stored_with_their_metadata_and_flags(db: Path) -> None:
    a, b = b"\xaa" * 8, b"\xbb" * 8
    writer = _write(db, [
        (Temperature("t", 21.5), info("sensors.Temperature", sender=a, seq=7, sent_ns=10,
                                      received_ns=20)),
        (Record("x.Y", {"v": [1, 2]}), info("x.Y", sender=b, seq=0, last_value=True,
                                            clock_synced=False)),
        (Record("x.Y", {"v": []}), info("x.Y", sender=b, seq=1, local=True)),
    ], patterns=("a.*",))
    assert rows(db, "SELECT type, node, seq, sent_ns, received_ns, data, last_value, replayed, "
                    "clock_synced, local FROM readings ORDER BY id") == [
        ("sensors.Temperature", a.hex(), 7, 10, 20, '{"sensor":"t","celsius":21.5}', 0, 0, 1, 0),
        ("x.Y", b.hex(), 0, 1000, 1500, '{"v":[1,2]}', 1, 0, 0, 0),
        ("x.Y", b.hex(), 1, 1000, 1500, '{"v":[]}', 0, 0, 1, 1),
    ]
    stats = writer.stats()
    assert (stats.received, stats.written, stats.dropped) == (3, 3, 0)
    assert rows(db, "SELECT patterns, received, written, dropped, ended_ns IS NOT NULL "
                    "FROM sessions") == [('["a.*"]', 3, 3, 0, 1)]


def test_a_batch_is_handed_over_when_full_and_commits_are_batched(db: Path) -> None:
    writer = Writer(db, batch_rows=100)
    writer.start()
    for i in range(1000):
        writer.add(Record("x.Y", {"i": i}), info("x.Y", seq=i))
    writer.close()
    stats = writer.stats()
    assert stats.written == 1000 and 1 <= stats.commits <= 11
    assert [s for (s,) in rows(db, "SELECT seq FROM readings ORDER BY id")] == list(range(1000))


def test_a_changed_schema_adds_a_type_version_and_both_stay_readable(db: Path) -> None:
    _write(db, [
        (Record("x.Y", {"a": 1}), info("x.Y", seq=0)),
        (Record("x.Y", {"a": 2, "b": "new"}), info("x.Y", seq=1)),
        (Record("x.Y", {"a": 3}), info("x.Y", seq=2)),
    ])
    assert rows(db, "SELECT name, fields FROM types ORDER BY id") == [
        ("x.Y", '[{"name":"a","kind":"int"}]'),
        ("x.Y", '[{"name":"a","kind":"int"},{"name":"b","kind":"str"}]')]
    assert rows(db, "SELECT seq, json_extract(data, '$.a') FROM readings ORDER BY id") == [
        (0, 1), (1, 2), (2, 3)]
    conn = open_log(db, write=False)
    assert "[2 versions]" in format_summary(summarize(conn, db))


def test_a_second_session_reuses_the_types_and_nodes_it_finds(db: Path) -> None:
    for seq in (0, 1):
        _write(db, [(Record("x.Y", {"a": seq}), info("x.Y", seq=seq))])
    assert rows(db, "SELECT count(*) FROM types") == [(1,)]
    assert rows(db, "SELECT count(*) FROM nodes") == [(1,)]
    assert rows(db, "SELECT count(*) FROM sessions") == [(2,)]


def test_gaps_in_what_arrives_are_written_and_last_values_open_none(db: Path) -> None:
    a = b"\x01" * 8
    _write(db, [
        (Record("x.Y", {}), info("x.Y", sender=a, seq=3, last_value=True)),
        (Record("x.Y", {}), info("x.Y", sender=a, seq=10)),
        (Record("x.Y", {}), info("x.Y", sender=a, seq=11)),
        (Record("x.Y", {}), info("x.Y", sender=a, seq=15)),
        (Record("x.Y", {}), info("x.Y", sender=a, seq=0, boot=2)),  # a reboot: a new stream
    ])
    assert rows(db, "SELECT type, node, boot, first_missing, last_missing, missing FROM gaps") == [
        ("x.Y", a.hex(), 1, 12, 14, 3)]


def test_node_names_are_recorded(db: Path) -> None:
    a = b"\x02" * 8
    writer = Writer(db)
    writer.start()
    writer.add(Record("x.Y", {}), info("x.Y", sender=a))
    writer.hand_off()
    writer.set_node_names({a: "cellar"})
    writer.set_logger_node(b"\x09" * 8)
    writer.close()
    assert rows(db, "SELECT name FROM nodes") == [("cellar",)]
    assert rows(db, "SELECT logger_node FROM sessions") == [("09" * 8,)]


def test_a_full_queue_drops_whole_batches_and_counts_them(db: Path) -> None:
    writer = Writer(db, batch_rows=10, max_batches=2)  # thread not started: nothing drains
    for i in range(50):
        writer.add(Record("x.Y", {"i": i}), info("x.Y", seq=i))
    assert writer.stats().dropped == 30
    writer.close()  # writes the two queued batches in this thread
    assert writer.stats().written == 20
    assert rows(db, "SELECT received, written, dropped FROM sessions") == [(50, 20, 30)]


def test_a_full_disk_fails_the_writer_with_a_clear_error(db: Path) -> None:
    errors: list[LogDatabaseError] = []
    open_log(db).close()
    pages = rows(db, "PRAGMA page_count")[0][0]
    writer = Writer(db, batch_rows=50, max_pages=pages + 3, on_error=errors.append)
    writer.start()
    for i in range(2000):
        writer.add(Record("x.Y", {"pad": "x" * 500, "i": i}), info("x.Y", seq=i))
    writer.close()
    assert errors and errors[0] is writer.error
    assert str(writer.error) == f"cannot write {db}: database or disk is full"
    stats = writer.stats()
    assert stats.dropped > 0 and stats.written + stats.dropped == 2000
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    assert rows(db, "SELECT count(*) FROM samples") == [(stats.written,)]


@pytest.mark.ci_may_skip  # as root, the chattr test in test_logger_processes.py covers it
def test_a_read_only_database_is_refused_at_once(db: Path) -> None:
    open_log(db).close()
    if Path("/proc/self/status").exists() and __import__("os").geteuid() == 0:
        pytest.skip("root writes read-only files; the CLI test covers root with chattr")
    db.chmod(0o444)
    with pytest.raises(LogDatabaseError, match="readonly"):
        Writer(db)


# -- retention ---------------------------------------------------------------------------


def _fill(db: Path, count: int, *, start_ns: int = 0, step_ns: int = 10**9) -> None:
    _write(db, [(Record("x.Y", {"i": i, "pad": "p" * 100}),
                 info("x.Y", seq=i, received_ns=start_ns + i * step_ns)) for i in range(count)])


def test_max_age_removes_exactly_the_readings_received_before_the_cutoff(db: Path) -> None:
    _fill(db, 100)
    conn = open_log(db)
    removed = apply_retention(conn, Retention(max_age=30, max_size=0), now_ns=100 * 10**9)
    assert removed == 70
    assert conn.execute("SELECT min(seq), count(*) FROM samples").fetchone() == (70, 30)
    assert apply_retention(conn, Retention(max_age=30, max_size=0), now_ns=100 * 10**9) == 0


def test_max_size_removes_the_oldest_readings_until_under_the_limit(db: Path) -> None:
    _fill(db, 3000)
    conn = open_log(db)
    before = used_bytes(conn)
    limit = before // 2
    removed = apply_retention(conn, Retention(max_age=0, max_size=limit), now_ns=0)
    assert removed > 0 and used_bytes(conn) <= limit
    low, count = conn.execute("SELECT min(seq), count(*) FROM samples").fetchone()
    assert low == removed and count == 3000 - removed  # the oldest went, in order


def test_gaps_older_than_the_oldest_reading_are_removed_with_it(db: Path) -> None:
    _write(db, [(Record("x.Y", {}), info("x.Y", seq=s, received_ns=s * 10**9))
                for s in (0, 5, 50, 90)])
    conn = open_log(db)
    assert conn.execute("SELECT count(*) FROM gap_spans").fetchone() == (3,)
    apply_retention(conn, Retention(max_age=20, max_size=0), now_ns=100 * 10**9)
    assert conn.execute("SELECT first_missing FROM gap_spans").fetchall() == [(51,)]


# -- query, info, replay -----------------------------------------------------------------


def test_selection_by_type_pattern_and_receive_time(db: Path) -> None:
    _write(db, [(Record(t, {"i": i}), info(t, seq=i, received_ns=i * 100))
                for i, t in enumerate(["a.X", "b.Y", "a.Z", "a.X"])])
    conn = open_log(db, write=False)
    assert [r.type for r in select_readings(conn, patterns=["a.*"])] == ["a.X", "a.Z", "a.X"]
    assert [r.seq for r in select_readings(conn, since_ns=100, until_ns=300)] == [1, 2]
    assert count_readings(conn, patterns=["nothing.*"]) == 0
    assert list(select_readings(conn, patterns=["nothing.*"])) == []
    out = io.StringIO()
    assert export_csv(conn, out, patterns=["b.*"]) == 1
    assert out.getvalue().splitlines()[0].endswith(",i")


def test_info_gives_count_span_rate_gaps_and_last_value_per_stream(db: Path) -> None:
    a, b = b"\x01" * 8, b"\x02" * 8
    _write(db, [(Record("x.Y", {"i": s}), info("x.Y", sender=a, seq=s, received_ns=s * 10**9))
                for s in (0, 1, 2, 5, 6)]
           + [(Record("x.Y", {"i": 9}), info("x.Y", sender=b, seq=0))])
    conn = open_log(db, write=False)
    summary = summarize(conn, db)
    sa, sb = summary.streams
    assert (sa.node, sa.count, sa.gaps, sa.missing, sa.last_value) == (a.hex(), 5, 1, 2, {"i": 6})
    assert sa.rate == pytest.approx(4 / 6) and sa.last_ns - sa.first_ns == 6 * 10**9
    assert (sb.count, sb.rate, sb.gaps) == (1, 0.0, 0)
    assert summary.readings == 6 and summary.sessions == 1
    text = format_summary(summary)
    assert "x.Y" in text and "i=6" in text
    assert '"readings": 6' in summary_json(summary)


class FakeNode:
    """Records what replay publishes, and when (on the loop's clock)."""

    def __init__(self) -> None:
        self.published: list[tuple[float, Record]] = []
        self.proposed: list[str] = []

    def types(self) -> dict[str, str]:
        return {"x.Y": "239.255.1.1"}

    def subscribe(self, name: str, **kw: Any) -> Any:
        self.proposed.append(name)

        class Sub:
            def close(self) -> None:
                pass

        return Sub()

    async def wait_for_group(self, name: str, timeout: float) -> str:
        return "239.255.1.1"

    def publish_nowait(self, msg: Record) -> None:
        self.published.append((asyncio.get_running_loop().time(), msg))


def test_replay_keeps_the_order_and_never_runs_ahead_of_the_scaled_timing(db: Path) -> None:
    step = 10**8  # 0.1 s apart in the log
    _write(db, [(Record("x.Y", {"i": i, "b": b"\x00"}), info("x.Y", seq=i, received_ns=i * step))
                for i in range(6)])
    node = FakeNode()

    async def go() -> Any:
        start = asyncio.get_running_loop().time()
        result = await replay(node, open_log(db, write=False), speed=4.0)
        return start, result

    start, result = run(go())
    assert result.published == 6 and result.passes == 1
    assert [m.fields for _, m in node.published] == [{"i": i, "b": b"\x00"} for i in range(6)]
    for i, (when, _) in enumerate(node.published):
        assert when - start >= i * 0.1 / 4 - 0.005  # never early (the loop clock's resolution)


def test_replay_loops_until_stopped_and_reports_progress(db: Path) -> None:
    _write(db, [(Record("x.Y", {"i": i}), info("x.Y", seq=i, received_ns=i)) for i in range(3)])
    node = FakeNode()
    seen: list[int] = []

    async def go() -> Any:
        stop = asyncio.Event()

        def progress(done: int) -> None:
            seen.append(done)
            if len(seen) == 8:
                stop.set()

        return await replay(node, open_log(db, write=False), speed=0, loop=True,
                            progress=progress, stop=stop)

    result = run(go())
    assert result.published == 8 and result.passes == 2
    assert seen == [1, 2, 3, 1, 2, 3, 1, 2]
    with pytest.raises(ValueError):
        run(replay(node, open_log(db, write=False), speed=-1))


def test_replay_skips_readings_that_no_longer_fit_their_class(db: Path) -> None:
    _write(db, [(Record("sensors.Temperature", {"sensor": "t", "celsius": "warm"}),
                 info("sensors.Temperature", seq=0)),
                (Record("sensors.Temperature", {"sensor": "t", "celsius": 1.0}),
                 info("sensors.Temperature", seq=1))])

    class Strict(FakeNode):
        def publish_nowait(self, msg: Record) -> None:
            if not isinstance(msg.fields["celsius"], float):
                raise ValueError("celsius must be a float")
            super().publish_nowait(msg)

    result = run(replay(Strict(), open_log(db, write=False), speed=0))
    assert (result.published, result.skipped) == (1, 1)


def test_stored_data_survives_sqlite_json_functions(db: Path) -> None:
    _write(db, [(Record("x.Y", {"n": {"deep": [1, 2.5]}}), info("x.Y"))])
    assert rows(db, "SELECT json_extract(data, '$.n.deep[1]') FROM readings") == [(2.5,)]
    assert datajson.loads(rows(db, "SELECT data FROM readings")[0][0]) == {"n": {"deep": [1, 2.5]}}
