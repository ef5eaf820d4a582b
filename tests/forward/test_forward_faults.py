"""Forwarding through faults, with real processes: the server stopped mid-stream and
restarted, the forwarder SIGKILLed mid-batch, retention racing the forwarder.

Each ends by comparing the central database with the log, row by row (identity,
sent time, data, flags): nothing lost, nothing duplicated (``pg_rows`` also
fails on a duplicate identity).
"""

from __future__ import annotations

import random
import signal
import sqlite3
import threading
import time
from pathlib import Path

import psycopg
from fwd_support import log_rows, make_log, pg_count, pg_rows, reading
from log_support import info
from node_support import Spawner, wait_sync
from pg_support import PgServer

from ganglion.forward import Forwarder, ForwarderThread, Target
from ganglion.logger.retention import Retention
from ganglion.logger.writer import Writer
from ganglion.types import Record

NET = ("--iface", "127.0.0.1")


def _log_count(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT count(*) FROM samples").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def test_the_server_stopped_for_20_s_mid_stream_loses_and_duplicates_nothing(
        spawn: Spawner, pg_own: PgServer, port: int, tmp_path: Path) -> None:
    pg_own.createdb("central")
    url = pg_own.url("central")
    db = tmp_path / "log.db"
    log = spawn("log", "--db", str(db), "--forward", url, "--interval", "0.1", "--port",
                str(port), *NET, label="log")
    log.wait_for_err("forwarding to", timeout=30)
    sim = spawn("sim", "--kind", "temperature", "--kind", "humidity", "--interval", "0.01",
                "--quiet", "--port", str(port), *NET, label="sim")
    wait_sync(lambda: pg_count(url) >= 200, "200 readings forwarded", timeout=60)
    pg_own.stop(keep=True)
    logged_at_stop = _log_count(db)
    time.sleep(20)
    assert _log_count(db) > logged_at_stop + 500  # logging went on meanwhile
    pg_own.start()
    time.sleep(2)
    sim.kill(signal.SIGTERM)
    wait_sync(lambda: _log_count(db) > 0 and pg_count(url) == _log_count(db),
              "the forwarder to catch up", timeout=90)
    log.kill(signal.SIGTERM)
    assert log.popen.returncode == 0, log.describe()
    assert pg_rows(url) == log_rows(db)
    # one line for the outage, one when it is over; no line per attempt
    assert log.err.count("the database is unreachable") == 1, log.describe()
    assert log.err.count("connected again") == 1, log.describe()
    with psycopg.connect(url) as conn:
        viewed = conn.execute("SELECT count(*), count(celsius) FROM sensors_temperature"
                              ).fetchone()
    temps = sum(1 for key in log_rows(db) if key[0] == "sensors.Temperature")
    assert viewed == (temps, temps) and temps > 0


def test_a_forwarder_sigkilled_mid_batch_three_times_loses_and_duplicates_nothing(
        spawn: Spawner, pg: PgServer, central: str, tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    make_log(db, (reading("sensors.Temperature", {"sensor": f"w1:{i % 7}", "celsius": i / 4},
                          node=1 + i % 3, seq=i) for i in range(150_000)), batch_rows=50_000)
    total = _log_count(db)
    rng = random.Random(17)
    seen = []
    for kill in range(3):
        before = pg_count(central)
        fwd = spawn("forward", "--db", str(db), "--to", central, "--batch", "2000",
                    label=f"fwd{kill}")
        wait_sync(lambda b=before: pg_count(central) > b, "the forwarder to commit a batch",
                  timeout=60)
        time.sleep(rng.uniform(0.02, 0.15))  # somewhere inside a later batch
        fwd.kill(signal.SIGKILL)
        assert fwd.popen.returncode == -signal.SIGKILL, fwd.describe()
        seen.append(pg_count(central))
    assert seen[-1] < total, "killed after it had finished: make the log bigger"
    done = spawn("forward", "--db", str(db), "--to", central, "--once", label="final")
    assert done.finish(180) == 0, done.describe()
    assert pg_rows(central) == log_rows(db)
    conn = sqlite3.connect(db)
    position = conn.execute("SELECT last_id FROM forward_positions").fetchone()[0]
    conn.close()
    assert position == total


def test_retention_racing_the_forwarder_never_ages_out_unforwarded_readings(
        tmp_path: Path, central: str) -> None:
    db = tmp_path / "log.db"
    writer = Writer(db, retention=Retention(max_age=0.2, max_size=0, every=0.05))
    writer.start()
    forwarder = Forwarder(db, Target.parse(central), batch=400, interval=0.3)
    thread = ForwarderThread(forwarder)
    thread.start()
    sent = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for _ in range(200):
                writer.add(Record("sensors.Temperature", {"sensor": "s", "celsius": sent / 2}),
                           info("sensors.Temperature", seq=sent, sent_ns=time.time_ns(),
                                received_ns=time.time_ns()))
                sent += 1
            writer.hand_off()
            time.sleep(0.02)
    finally:
        writer.close()
        thread.stop(drain=120)  # a generous bound: the machine may be busy
    assert writer.error is None and thread.error is None
    assert writer.stats().written == sent and writer.stats().removed > 0
    assert len(pg_rows(central)) == sent, (forwarder.stats(), writer.stats())
    conn = sqlite3.connect(db)
    left, dropped = conn.execute("SELECT (SELECT count(*) FROM samples), dropped "
                                 "FROM forward_positions").fetchone()
    conn.close()
    assert left < sent and dropped == 0


def test_the_forwarder_thread_does_not_stop_the_logger_when_the_server_is_down(
        tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    make_log(db, [reading("t.A", {"x": 1}, seq=1)])
    forwarder = Forwarder(db, Target.parse("postgresql://u@127.0.0.1:1/x"), max_backoff=0.2)
    thread = ForwarderThread(forwarder)
    thread.start()
    stop = threading.Event()
    try:
        make_log(db, [reading("t.A", {"x": 1}, seq=i) for i in range(2, 500)])
        wait_sync(lambda: forwarder.stats().attempts >= 3, "three attempts", timeout=20)
        stats = forwarder.stats()
        assert stats.outages == 1 and stats.pending == 499 and not stats.connected
    finally:
        stop.set()
        thread.stop(drain=0.5)
    assert thread.error is None


def test_two_loggers_forward_into_one_database(spawn: Spawner, central: str, tmp_path: Path
                                               ) -> None:
    from node_support import free_port_pair

    logs = []
    for site in ("a", "b"):  # two sites: two networks, each with its logger and sensors
        port = free_port_pair()
        db = tmp_path / f"{site}.db"
        log = spawn("log", "--db", str(db), "--forward", central, "--interval", "0.1",
                    "--port", str(port), *NET, label=f"log-{site}")
        log.wait_for_err("forwarding to", timeout=30)
        spawn("sim", "--kind", "temperature", "--kind", "pressure", "--interval", "0.01",
              "--quiet", "--port", str(port), *NET, label=f"sim-{site}")
        logs.append((db, log))
    wait_sync(lambda: pg_count(central) >= 600, "600 readings from both sites", timeout=60)
    for _db, log in logs:
        log.kill(signal.SIGTERM)
        assert log.popen.returncode == 0, log.describe()
    expected = {**log_rows(logs[0][0]), **log_rows(logs[1][0])}
    assert len(expected) == len(log_rows(logs[0][0])) + len(log_rows(logs[1][0]))
    assert pg_rows(central) == expected
