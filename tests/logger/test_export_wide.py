"""``ganglion export --wide``: one row per time bucket, one column per (node, sensor, field).

The logs are real: written by the logger's :class:`Writer` from real messages
and ``MessageInfo`` (so the bucket boundaries are known), and, end to end, by a
``ganglion log`` process logging a ``ganglion node --fake-hardware`` process.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from log_support import info, rows
from node_support import Spawner, wait_sync

from ganglion.logger.schema import open_log
from ganglion.logger.wide import export_wide
from ganglion.logger.writer import Writer
from ganglion.types import Record
from hardware.messages import Reading, SensorInfo
from hardware.readings import Humidity, Temperature

BREWPI, CELLAR = b"\xaa" * 8, b"\xbb" * 8
P1, P2 = "w1:28-0000fa4e0001", "w1:28-0000fa4e0002"
T0 = 1_700_000_040  # a whole minute (2023-11-14T22:14:00Z)


def _at(seconds: float) -> int:
    return int((T0 + seconds) * 1e9)


def _log(db: Path) -> None:
    seq = iter(range(1000))

    def meta(type_name: str, sender: bytes, seconds: float, **kw: Any) -> Any:
        return info(type_name, sender=sender, seq=next(seq), sent_ns=_at(seconds), **kw)

    writer = Writer(db)
    writer.start()
    for msg, inf in [
        (SensorInfo(P1, "mash tun", "1-Wire thermometer", []), meta("sensors.SensorInfo",
                                                                     BREWPI, 0)),
        (Temperature(P1, 20.0), meta("sensors.Temperature", BREWPI, 1)),
        (Temperature(P2, 30.0), meta("sensors.Temperature", BREWPI, 1)),
        (Humidity("i2c:1/0x76", 55.5), meta("sensors.Humidity", BREWPI, 2)),
        (Reading("serial:co2", "co2", 612.0, "ppm"), meta("sensors.Reading", BREWPI, 3)),
        (Record("brewery.Valve", {"open": True}), meta("brewery.Valve", BREWPI, 4)),
        (Temperature(P1, 21.0), meta("sensors.Temperature", BREWPI, 30)),
        # A last-value answer repeats a reading: it must not weigh in the mean.
        (Temperature(P1, 99.0), meta("sensors.Temperature", BREWPI, 31, last_value=True)),
        (Temperature("sim:cellar/temperature", 12.25), meta("sensors.Temperature", CELLAR, 5)),
        (Record("brewery.Valve", {"open": False}), meta("brewery.Valve", BREWPI, 50)),
        (Temperature(P2, 31.0), meta("sensors.Temperature", BREWPI, 61)),
    ]:
        writer.add(msg, inf)
    writer.hand_off()
    writer.set_node_names({BREWPI: "brewpi", CELLAR: "cellar"})
    writer.close()


def _wide(db: Path, **kw: Any) -> tuple[list[dict[str, str]], list[str], tuple[int, int]]:
    conn = open_log(db, write=False)
    try:
        out = io.StringIO(newline="")
        counts = export_wide(conn, out, **kw)
    finally:
        conn.close()
    reader = csv.DictReader(io.StringIO(out.getvalue()))
    table = list(reader)
    return table, list(reader.fieldnames or []), counts


def test_a_row_per_bucket_a_column_per_node_sensor_field_with_units(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    table, header, (row_count, used) = _wide(db)
    assert header == [
        "time",
        "brewpi/brewery.Valve/open",
        "brewpi/i2c:1/0x76/percent (%)",
        "brewpi/mash tun/celsius (°C)",  # named by its SensorInfo
        "brewpi/serial:co2/co2 (ppm)",  # a Reading: one column per quantity, its own unit
        f"brewpi/{P2}/celsius (°C)",
        "cellar/sim:cellar/temperature/celsius (°C)",
    ]
    assert (row_count, used) == (2, 9)  # SensorInfo and the last-value answer left out
    first, second = table
    assert first["time"] == "2023-11-14T22:14:00Z" and second["time"] == "2023-11-14T22:15:00Z"
    assert first["brewpi/mash tun/celsius (°C)"] == "20.5"  # mean of 20.0 and 21.0
    assert first[f"brewpi/{P2}/celsius (°C)"] == "30.0"
    assert first["brewpi/i2c:1/0x76/percent (%)"] == "55.5"
    assert first["brewpi/serial:co2/co2 (ppm)"] == "612.0"
    assert first["brewpi/brewery.Valve/open"] == "false"  # not a number: the bucket's last
    assert first["cellar/sim:cellar/temperature/celsius (°C)"] == "12.25"
    assert second == {column: "" for column in header} | {
        "time": "2023-11-14T22:15:00Z", f"brewpi/{P2}/celsius (°C)": "31.0"}


def test_the_bucket_and_the_aggregate_are_chosen(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _log(db)
    table, _, (row_count, _) = _wide(db, bucket=3600.0, agg="max")
    assert row_count == 1 and table[0]["time"] == "2023-11-14T22:00:00Z"
    assert table[0]["brewpi/mash tun/celsius (°C)"] == "21.0"
    assert table[0][f"brewpi/{P2}/celsius (°C)"] == "31.0"
    table, _, (row_count, _) = _wide(db, bucket=10.0, agg="min", patterns=["sensors.Temp*"])
    assert [r["time"] for r in table] == ["2023-11-14T22:14:00Z", "2023-11-14T22:14:30Z",
                                          "2023-11-14T22:15:00Z"]
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        _wide(db, agg="median")
    with pytest.raises(ValueError, match="positive number of seconds"):
        _wide(db, bucket=0.0)


def test_two_types_with_one_header_get_their_type_names(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    writer = Writer(db)
    writer.start()
    writer.add(Temperature(P1, 20.0), info("sensors.Temperature", sent_ns=_at(1)))
    writer.add(Record("brewery.Temperature", {"sensor": P1, "celsius": 19.0}),
               info("brewery.Temperature", sent_ns=_at(1)))
    writer.close()
    _, header, _ = _wide(db)
    # No name known for the sender: its short id.
    assert header[1:] == [f"01010101/{P1}/brewery.Temperature.celsius (°C)",
                          f"01010101/{P1}/sensors.Temperature.celsius (°C)"]


def test_export_wide_from_the_command_line_on_a_log_of_fake_hardware(tmp_path: Path) -> None:
    from port_pairs import free_port_pair

    port, db = str(free_port_pair()), tmp_path / "log.db"
    config = tmp_path / "node.toml"
    config.write_text("[plugin.hardware]\ninterval = 0.2\n")
    net = ("--iface", "lo", "--port", port)
    spawn = Spawner(tmp_path / "logs")
    try:
        log = spawn("log", "--db", str(db), *net, "--interval", "0.1", label="log")
        log.wait_for_err("logging")
        node = spawn("node", "--config", str(config), "--fake-hardware", "ds18b20,ds18b20,bme280",
                     "--name", "brewpi", "--state-dir", str(tmp_path / "node"), "--no-mdns",
                     *net, label="node")

        def logged() -> int:
            try:
                return int(rows(db, "SELECT count(DISTINCT data) FROM readings WHERE "
                                    "type = 'sensors.Temperature'")[0][0])
            except sqlite3.Error:
                return 0

        wait_sync(lambda: logged() >= 6, "readings of every probe in the log", timeout=30)
        node.kill()
        log.kill(15)
        assert log.popen.returncode == 0, log.describe()
        out = tmp_path / "wide.csv"
        export = spawn("export", "--db", str(db), "--wide", "--bucket", "1s", "--out", str(out),
                       label="export")
        assert export.finish() == 0, export.describe()
        assert "readings in" in export.err and "rows" in export.err
        table = list(csv.reader(out.open(newline="", encoding="utf-8")))
        header = table[0]
        for column in ("brewpi/w1:28-0000fa4e0001/celsius (°C)",
                       "brewpi/w1:28-0000fa4e0002/celsius (°C)",
                       "brewpi/i2c:1/0x76/celsius (°C)", "brewpi/i2c:1/0x76/percent (%)",
                       "brewpi/i2c:1/0x76/hpa (hPa)"):
            assert column in header, header
        assert len(table) >= 2
        for line in table[1:]:
            assert all(cell == "" or float(cell) == float(cell) for cell in line[1:]), line
        wrong = spawn("export", "--db", str(db), "--bucket", "5m", label="no-wide")
        assert wrong.finish() == 2
        assert "--bucket and --agg shape the --wide table; add --wide" in wrong.err
        jsonl = spawn("export", "--db", str(db), "--wide", "--format", "jsonl", label="jsonl")
        assert jsonl.finish() == 2 and "--wide writes CSV" in jsonl.err
    finally:
        spawn.close()
