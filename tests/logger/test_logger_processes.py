"""The CLI as users run it: real ``ganglion log`` / ``sim`` / ``replay`` processes on loopback.

The crash test does exactly what the issue asks: SIGKILL a logger in the middle
of ingesting and check that the database passes ``PRAGMA integrity_check`` and
still holds everything that was committed before the kill.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from log_support import rows
from node_support import Spawner, wait_sync

from ganglion.logger.writer import Writer

NET = ("--iface", "127.0.0.1")


def _count(db: Path) -> int:
    try:
        return int(rows(db, "SELECT count(*) FROM samples")[0][0])
    except sqlite3.Error:
        return 0  # not created yet


def test_a_logger_killed_mid_ingest_leaves_a_sound_database(spawn: Spawner, port: int,
                                                           db: Path) -> None:
    log = spawn("log", "--db", str(db), "--port", str(port), *NET, "--interval", "0.1",
                label="log")
    log.wait_for_err("logging every type")
    spawn("sim", "--kind", "temperature", "--kind", "humidity", "--interval", "0.002", "--quiet",
          "--port", str(port), *NET, label="sim")
    wait_sync(lambda: _count(db) >= 1500, "the logger to commit 1500 readings", timeout=30)
    before = _count(db)
    committed = rows(db, "SELECT type, node, seq FROM readings")
    log.kill(signal.SIGKILL)
    assert log.popen.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)  # recovers the WAL as any reader would
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        after = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        kept = set(conn.execute("SELECT type, node, seq FROM readings").fetchall())
    finally:
        conn.close()
    assert after >= before
    assert set(committed) <= kept
    # still a usable log: the tools read it
    info = spawn("info", "--db", str(db), "--json", label="info")
    summary = info.json_out()
    assert summary["readings"] == after
    assert {s["type"] for s in summary["streams"]} == {"sensors.Temperature", "sensors.Humidity"}


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable: chmod for a normal user, the immutable flag for root."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        yield
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: cannot make a read-only file")
    made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i does not work here: {made.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_read_only_database_gives_one_clear_error_and_a_non_zero_exit(
        spawn: Spawner, port: int, db: Path) -> None:
    Writer(db).close()  # an existing log, closed cleanly (no -wal/-shm left)
    with _read_only(db):
        log = spawn("log", "--db", str(db), "--port", str(port), *NET, label="log")
        code = log.finish(timeout=20)
    assert code != 0, log.describe()
    err = log.err.strip().splitlines()
    assert len(err) == 1, log.describe()
    assert "readonly" in err[0] and str(db) in err[0]
    assert "Traceback" not in log.err


def test_log_export_and_info_from_the_command_line(spawn: Spawner, port: int, tmp_path: Path,
                                                  db: Path) -> None:
    log = spawn("log", "--db", str(db), "--port", str(port), *NET, "--interval", "0.1",
                "--type", "sensors.Temp*", label="log")
    log.wait_for_err("logging sensors.Temp*")
    spawn("sim", "--kind", "temperature", "--kind", "flow", "--interval", "0.02", "--quiet",
          "--port", str(port), *NET, label="sim")
    wait_sync(lambda: _count(db) >= 20, "20 readings in the log", timeout=20)
    log.kill(signal.SIGTERM)
    assert log.popen.returncode == 0, log.describe()
    assert "logged" in log.err
    assert rows(db, "SELECT DISTINCT type FROM readings") == [("sensors.Temperature",)]
    out = tmp_path / "t.csv"
    export = spawn("export", "--db", str(db), "--out", str(out), label="export")
    assert export.finish() == 0, export.describe()
    header = out.read_text().splitlines()[0].split(",")
    assert header[:5] == ["type", "node", "node_name", "boot", "seq"]
    assert {"sensor", "celsius"} <= set(header)
    assert len(out.read_text().splitlines()) == 1 + _count(db)
    jsonl = spawn("export", "--db", str(db), "--format", "jsonl", "--since", "1h ago",
                  label="jsonl")
    assert jsonl.finish() == 0, jsonl.describe()
    lines = [json.loads(line) for line in jsonl.out.splitlines()]
    assert len(lines) == _count(db) and "celsius" in lines[0]["data"]
    info = spawn("info", "--db", str(db), label="info")
    assert info.finish() == 0, info.describe()
    assert "sensors.Temperature" in info.out and "celsius=" in info.out


def test_replay_from_the_command_line_reaches_a_second_logger(spawn: Spawner, tmp_path: Path,
                                                              port: int) -> None:
    from node_support import free_port_pair

    source = tmp_path / "source.db"
    log = spawn("log", "--db", str(source), "--port", str(port), *NET, "--interval", "0.1",
                label="log1")
    log.wait_for_err("logging every type")
    spawn("sim", "--kind", "pressure", "--interval", "0.01", "--quiet", "--count", "60",
          "--port", str(port), *NET, label="sim")
    wait_sync(lambda: _count(source) >= 40, "40 readings in the first log", timeout=20)
    log.kill(signal.SIGTERM)
    port2 = free_port_pair()
    target = tmp_path / "target.db"
    log2 = spawn("log", "--db", str(target), "--port", str(port2), *NET, "--interval", "0.1",
                 label="log2")
    log2.wait_for_err("logging every type")
    play = spawn("replay", "--db", str(source), "--speed", "5", "--port", str(port2), *NET,
                 label="replay")
    assert play.finish(timeout=30) == 0, play.describe()
    assert f"replayed {_count(source)} readings" in play.err
    wanted = [d for (d,) in rows(source, "SELECT data FROM readings ORDER BY id")]

    def arrived() -> bool:
        got = [d for (d,) in rows(target, "SELECT data FROM readings WHERE NOT last_value")] \
            if target.exists() else []
        return len(got) >= len(wanted) - 1

    # The first replayed reading may go out before the second logger hears of
    # the type's group: allow that one; everything else must arrive, in order.
    wait_sync(arrived, "the replayed readings in the second log", timeout=20)
    log2.kill(signal.SIGTERM)
    got = [d for (d,) in rows(target, "SELECT data FROM readings WHERE NOT last_value ORDER BY id")]
    assert got == wanted[len(wanted) - len(got):]


# -- issue 21: u64 values from the network, and a writer failing mid-run ------------------


def _agreed_group(spawn: Spawner, port: int, type_name: str) -> str:
    """The group agreed for ``type_name``, asking with ``ganglion types --json`` until known."""
    found: dict[str, str] = {}

    def known() -> bool:
        proc = spawn("types", "--json", *NET, "--port", str(port), "--timeout", "5",
                     label="types")
        if proc.finish(20) == 0:
            found.update(proc.json_out())
        return type_name in found

    wait_sync(known, f"{type_name} in the agreed map", timeout=30, interval=0.2)
    return found[type_name]


def test_a_sequence_number_of_2_63_sent_over_the_network_is_logged_and_exported_exactly(
        spawn: Spawner, port: int, tmp_path: Path, db: Path) -> None:
    # The finding's datagram: a valid u64 sequence number of 2**63 and sent_ns of
    # 2**64 - 1. The old writer thread died on it (OverflowError) and the logger
    # went on "logging" nothing, then exited 0.
    import socket
    import time

    from ganglion.types import encode_message, type_of
    from ganglion.wire import encode_datagram
    from hardware.readings import Temperature

    forger = b"\x07" * 8
    spawn("node", "--name", "member", "--state-dir", str(tmp_path / "member"), *NET, "--port",
          str(port), "--no-mdns", "--sim", "temperature", "--interval", "60", label="member")
    group = _agreed_group(spawn, port, "sensors.Temperature")
    log = spawn("log", "--db", str(db), "--port", str(port), *NET, "--interval", "0.1",
                label="log")
    log.wait_for_err("logging every type")
    mtype = type_of(Temperature)
    datagram = encode_datagram(node_id=forger, type_name=mtype.name,
                               fingerprint=mtype.fingerprint, first_seq=2**63,
                               timestamps=[2**64 - 1],
                               payloads=[encode_message(Temperature("forged", 1.5), mtype)],
                               boot=1)

    def logged() -> bool:
        try:
            return bool(rows(db, "SELECT 1 FROM readings WHERE node = ?", forger.hex()))
        except sqlite3.Error:
            return False

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        deadline = time.monotonic() + 20
        # Until the logger has joined the group; repeats are duplicates it drops.
        while not logged() and time.monotonic() < deadline and log.popen.poll() is None:
            sock.sendto(datagram, (group, port))
            time.sleep(0.2)
    finally:
        sock.close()
    assert logged(), log.describe()
    log.kill(signal.SIGTERM)
    assert log.popen.returncode == 0, log.describe()
    assert "logged" in log.err and "cannot keep up" not in log.err
    assert rows(db, "SELECT seq, sent_ns FROM readings WHERE node = ?", forger.hex()) == [
        (2**63 - 2**64, -1)]  # as stored: two's complement
    export = spawn("export", "--db", str(db), "--format", "jsonl", label="export")
    assert export.finish() == 0, export.describe()
    mine = [line for line in export.json_lines() if line["node"] == forger.hex()]
    assert [(m["seq"], m["sent_ns"], m["data"]["celsius"]) for m in mine] == [
        (2**63, 2**64 - 1, 1.5)]
    out = tmp_path / "all.csv"
    csv_export = spawn("export", "--db", str(db), "--out", str(out), label="csv")
    assert csv_export.finish() == 0, csv_export.describe()
    lines = [line.split(",") for line in out.read_text().splitlines()]
    header = lines[0]
    forged = [dict(zip(header, line, strict=True)) for line in lines[1:]
              if line[1] == forger.hex()]
    assert [(f["seq"], f["sent_ns"]) for f in forged] == [(str(2**63), str(2**64 - 1))]
    info = spawn("info", "--db", str(db), "--json", label="info")
    assert info.json_out()["readings"] == _count(db)


def test_a_database_failing_mid_run_stops_the_logger_with_a_non_zero_exit(
        spawn: Spawner, port: int, db: Path) -> None:
    # A real failure while logging: the log and its WAL become immutable under the
    # running logger (root: chattr +i; writes through open files then fail with EPERM,
    # which SQLite reports as a disk I/O error).
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("needs root and chattr to make an open file unwritable")
    log = spawn("log", "--db", str(db), "--port", str(port), *NET, "--interval", "0.1",
                label="log")
    log.wait_for_err("logging every type")
    spawn("sim", "--kind", "temperature", "--interval", "0.005", "--quiet", "--port", str(port),
          *NET, label="sim")
    wait_sync(lambda: _count(db) >= 20, "20 readings in the log", timeout=20)
    files = [db, db.with_name(db.name + "-wal")]
    try:
        for path in files:
            made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
            if made.returncode != 0:
                pytest.skip(f"chattr +i does not work here: {made.stderr.decode().strip()}")
        code = log.finish(timeout=20)
    finally:
        for path in files:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)
    assert code == 1, log.describe()
    errors = [line for line in log.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(db) in errors[0], log.describe()
    assert "Traceback" not in log.err
