"""Forwarding into a real PostgreSQL: exact rows, idempotence, refused rows, types, views.

Each test gets a fresh database on a server started for this module
(conftest.py); logs are written with the logger's own Writer (fwd_support). Each
runs twice: with the compiled batch encoder (ganglion._copyfast) and the Python one.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest
from fwd_support import BASE_NS, log_rows, make_log, pg_rows, reading, temperatures

from ganglion.forward import Forwarder, ForwardError, Target, _copy_accel
from ganglion.forward.pgschema import SCHEMA_VERSION, view_name


@pytest.fixture(autouse=True, params=["compiled", "python"])
def encoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The batch encoder the forwarders of a test use (GANGLION_COPY_FAST)."""
    if request.param == "compiled" and _copy_accel.load("auto") is None:
        pytest.skip("ganglion._copyfast is not built (pip install -e . with a C compiler)")
    monkeypatch.setenv("GANGLION_COPY_FAST", "require" if request.param == "compiled" else "off")
    return str(request.param)


def forward_once(db: Path, url: str, **kw: object) -> Forwarder:
    forwarder = Forwarder(db, Target.parse(url), **kw)  # type: ignore[arg-type]
    try:
        forwarder.run(threading.Event(), once=True)
    finally:
        forwarder.close()
    return forwarder


def test_the_database_holds_exactly_the_rows_of_the_log(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    big = 2**64 - 5  # u64 values beyond 2**63, stored as negative numbers in both
    make_log(db, [
        *temperatures(2500),
        *temperatures(700, node=2),
        reading("sensors.Flow", {"sensor": "f", "litres_per_minute": math.nan}, seq=1),
        reading("sensors.Flow", {"sensor": "f", "litres_per_minute": 2.5, "raw": b"\x00\xff",
                                 "nested": {"a": [1, 2, {"b": None}]}}, seq=2, last_value=True),
        reading("t.Big", {"n": 2**70}, seq=big, sent_ns=big, boot=2**32 - 1,
                received_ns=BASE_NS),
        reading("t.Local", {"x": 1}, seq=5, local=True, clock_synced=False),
        reading("t.Local", {"x": 2}, seq=4, repaired=True),
    ])
    first = forward_once(db, central, batch=1000)
    assert first.stats().forwarded == 3205 and first.stats().inserted == 3205
    assert pg_rows(central) == log_rows(db)
    # forwarding again sends nothing; a log forwarded from scratch adds nothing (idempotent)
    assert forward_once(db, central).stats().forwarded == 0
    conn = sqlite3.connect(db)
    conn.execute("UPDATE forward_positions SET last_id = 0")
    conn.commit()
    conn.close()
    again = forward_once(db, central, batch=700)
    assert again.stats().forwarded == 3205 and again.stats().inserted == 0
    # new readings: only those
    make_log(db, temperatures(10, start=2500))
    assert forward_once(db, central).stats().inserted == 10
    assert pg_rows(central) == log_rows(db)
    with psycopg.connect(central) as pg:
        nodes = dict(pg.execute("SELECT node, last_ns FROM nodes").fetchall())
        assert set(nodes) == {"01" * 8, "02" * 8}
        (version, hyper), = pg.execute("SELECT version, hypertable FROM ganglion_schema")
        assert (version, hyper) == (SCHEMA_VERSION, False)  # no TimescaleDB here
        # the identity is the primary key, and the only index (every index costs every row)
        assert pg.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'readings'"
                          ).fetchall() == [("CREATE UNIQUE INDEX readings_pkey ON public.readings "
                                            "USING btree (type, \"time\", node, boot, seq)",)]
        assert pg.execute("SELECT seq FROM readings WHERE repaired").fetchall() == [(4,)]


def test_a_version_2_database_gains_the_repaired_column(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(5))
    forward_once(db, central)
    with psycopg.connect(central) as pg:  # as a forwarder before repair left it (version 2)
        pg.execute("ALTER TABLE readings DROP COLUMN repaired")
        pg.execute("UPDATE ganglion_schema SET version = 2")
    make_log(db, [reading("t.Late", {"x": 1}, seq=3, repaired=True)])
    assert forward_once(db, central).stats().inserted == 1
    with psycopg.connect(central) as pg:
        assert pg.execute("SELECT max(version) FROM ganglion_schema").fetchone() == (3,)
        assert pg.execute("SELECT type, repaired FROM readings ORDER BY repaired, type, seq"
                          ).fetchall() == [("sensors.Temperature", False)] * 5 + [("t.Late", True)]


def test_a_refused_row_is_reported_with_its_identity_and_skipped(
        tmp_path: Path, central: str, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "log.db"
    make_log(db, [*temperatures(300),
                  reading("t.Text", {"s": "nul \x00 inside"}, seq=77, node=3),
                  *temperatures(300, start=300)])
    with caplog.at_level(logging.WARNING, logger="ganglion.forward"):
        forwarder = forward_once(db, central, batch=250)
    stats = forwarder.stats()
    assert (stats.forwarded, stats.rejected, stats.pending) == (600, 1, 0)
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert "t.Text" in refused[0] and "03" * 8 in refused[0] and "seq 77" in refused[0]
    assert len(pg_rows(central)) == 600
    # not retried: the position is past it, and the count is in the log
    caplog.clear()
    assert forward_once(db, central).stats().rejected == 0
    assert not [r for r in caplog.records if "refused" in r.getMessage()]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT forwarded, rejected FROM forward_positions").fetchone() == (600, 1)
    conn.close()


def test_type_patterns_forward_only_the_matching_types(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    readings = []
    for i in range(400):  # wanted and passed-over types interleaved in every batch
        readings.append(reading("sensors.Temperature", {"celsius": i / 4}, seq=i, node=1))
        readings.append(reading("t.Other", {"x": i}, seq=i, node=2))
        if i % 2:
            readings.append(reading("sensors.Humidity", {"percent": i / 8}, seq=i, node=3))
    # a refused reading of a wanted type (its batch goes row by row) and one of a type
    # passed over (never sent: not refused, not counted)
    readings.append(reading("sensors.Text", {"s": "nul \x00"}, seq=1, node=1))
    readings.append(reading("t.Other", {"x": "nul \x00"}, seq=400, node=4))
    make_log(db, readings)
    forwarder = forward_once(db, central, batch=150, patterns=("sensors.*",))
    stats = forwarder.stats()
    assert (stats.forwarded, stats.rejected, stats.skipped, stats.pending) == (600, 1, 401, 0)
    wanted = {k: v for k, v in log_rows(db).items() if k[0].startswith("sensors.")
              and k[0] != "sensors.Text"}
    assert pg_rows(central) == wanted
    with psycopg.connect(central) as pg:  # the senders of forwarded readings only
        assert sorted(pg.execute("SELECT node FROM nodes").fetchall()) == [
            ("01" * 8,), ("03" * 8,)]
        assert sorted(pg.execute("SELECT name FROM types").fetchall()) == [
            ("sensors.Humidity",), ("sensors.Temperature",), ("sensors.Text",)]


def test_typed_views_return_the_right_values(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    make_log(db, [
        reading("sensors.Temperature", {"sensor": "w1:a", "celsius": 21.5}, seq=1),
        reading("sensors.Temperature", {"sensor": "w1:a", "celsius": math.nan}, seq=2),
        # a second version of the type, with one more field
        reading("sensors.Temperature", {"sensor": "w1:b", "celsius": -3.25, "ok": True}, seq=3),
        reading("app.Status", {"time": "t", "node": "n", "count": 2**64 - 1, "tags": ["a"]},
                seq=4),
    ])
    forward_once(db, central)
    assert view_name("sensors.Temperature") == "sensors_temperature"
    with psycopg.connect(central) as pg:
        cur = pg.execute("SELECT * FROM sensors_temperature ORDER BY time")
        assert [d.name for d in cur.description] == ["time", "node", "sensor", "celsius", "ok"]
        got = cur.fetchall()
        assert [(r[2], r[3], r[4]) for r in got[::2]] == [("w1:a", 21.5, None),
                                                         ("w1:b", -3.25, True)]
        assert math.isnan(got[1][3])
        assert got[0][0].timestamp() == pytest.approx((BASE_NS + 1_000_000) / 1e9)
        # a Grafana panel's query, as docs/forwarding.md shows it
        panel = pg.execute("SELECT time, sensor, celsius FROM sensors_temperature "
                           "WHERE time > now() - interval '100 years' AND sensor = 'w1:b'"
                           ).fetchall()
        assert [(s, c) for _, s, c in panel] == [("w1:b", -3.25)]
        cur = pg.execute("SELECT * FROM app_status")
        assert [d.name for d in cur.description] == ["time", "node", "data_time", "data_node",
                                                     "count", "tags"]
        assert cur.fetchone()[2:] == ("t", "n", 2**64 - 1, ["a"])


def test_every_column_of_the_types_table_is_forwarded(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(3))
    conn = sqlite3.connect(db)  # as a newer logger might: a column this code does not know
    conn.execute("ALTER TABLE types ADD COLUMN device_class TEXT")
    conn.execute("UPDATE types SET device_class = 'temperature'")
    conn.commit()
    conn.close()
    forward_once(db, central)
    with psycopg.connect(central) as pg:
        (meta, units), = pg.execute("SELECT meta, units FROM types").fetchall()
    assert meta["device_class"] == "temperature" and meta["units"] == {"celsius": "°C"}
    assert units == {"celsius": "°C"}
    # a later change of a type's metadata reaches the server
    conn = sqlite3.connect(db)
    conn.execute("UPDATE types SET device_class = 'temp'")
    conn.commit()
    conn.close()
    forward_once(db, central)
    with psycopg.connect(central) as pg:
        assert pg.execute("SELECT meta->>'device_class' FROM types").fetchone() == ("temp",)


def test_two_logs_forward_into_one_database_at_once(tmp_path: Path, central: str) -> None:
    one, two = tmp_path / "one.db", tmp_path / "two.db"
    make_log(one, [*temperatures(4000, node=1), *temperatures(2000, node=3)])
    # the second logger heard node 3 too (same readings) and node 2 of its own
    make_log(two, [*temperatures(4000, node=2), *temperatures(2000, node=3)])
    errors: list[BaseException] = []

    def run(db: Path) -> None:
        try:
            forward_once(db, central, batch=300)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in (one, two)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert pg_rows(central) == {**log_rows(one), **log_rows(two)}
    assert len(pg_rows(central)) == 10_000


def test_a_newer_schema_is_refused(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(5))
    forward_once(db, central)
    with psycopg.connect(central) as pg:
        pg.execute("UPDATE ganglion_schema SET version = 99")
    with pytest.raises(ForwardError, match=r"schema version 99.*upgrade ganglion"):
        forward_once(db, central)


def test_a_version_1_database_is_upgraded_in_place(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    make_log(db, [*temperatures(300), *temperatures(200, node=2)])
    forward_once(db, central)
    with psycopg.connect(central) as pg:  # back to version 1's layout: two indexes, no key
        pg.execute("ALTER TABLE readings DROP CONSTRAINT readings_pkey")
        pg.execute("CREATE UNIQUE INDEX readings_identity ON readings (node, type, time, boot, "
                   "seq)")
        pg.execute("CREATE INDEX readings_type_time ON readings (type, time DESC)")
        pg.execute("ALTER TABLE readings DROP COLUMN repaired")
        pg.execute("UPDATE ganglion_schema SET version = 1")
    make_log(db, temperatures(50, start=300))
    conn = sqlite3.connect(db)  # and send everything again: the old rows meet the new key
    conn.execute("UPDATE forward_positions SET last_id = 0")
    conn.commit()
    conn.close()
    again = forward_once(db, central, batch=120)
    assert (again.stats().forwarded, again.stats().inserted) == (550, 50)
    assert pg_rows(central) == log_rows(db)
    with psycopg.connect(central) as pg:
        assert pg.execute("SELECT version FROM ganglion_schema").fetchall() == [(3,)]
        assert pg.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'readings'"
                          ).fetchall() == [("readings_pkey",)]


def test_an_unrelated_readings_table_is_not_written_into(tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(5))
    with psycopg.connect(central) as pg:
        pg.execute("CREATE TABLE readings (x int)")
    with pytest.raises(ForwardError, match="not made by ganglion"):
        forward_once(db, central)


def test_ganglion_info_shows_each_target(tmp_path: Path, central: str) -> None:
    from ganglion.logger.info import format_summary, summarize
    from ganglion.logger.schema import open_log

    db = tmp_path / "log.db"
    make_log(db, [*temperatures(40), reading("t.Text", {"s": "\x00"}, seq=1)])
    forward_once(db, central)
    make_log(db, temperatures(5, start=40))
    conn = open_log(db, write=False)
    try:
        summary = summarize(conn, db)
    finally:
        conn.close()
    target = central.split("//")[1].replace("ganglion:s3cret-pw@", "ganglion@")
    assert summary.forwarding == [{"target": target, "forwarded": 40, "waiting": 5,
                                   "rejected": 1, "dropped": 0}]
    assert (f"forwarded to {target}: 40 readings, 5 waiting, 1 refused by the database"
            in format_summary(summary))
