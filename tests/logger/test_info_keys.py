"""``ganglion info`` per (type, node, key): three probes in one stream are three rows.

Against the real writer and a real SQLite file (no network); the CLI end of it is
in tests/cli/test_fake_hardware_cli.py (three fake DS18B20 probes).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from log_support import info

import hardware.messages
import hardware.readings
from ganglion.cli.main import cli
from ganglion.logger.info import format_summary, summarize
from ganglion.logger.schema import open_log
from ganglion.logger.writer import Writer
from ganglion.types import Record

A, B = b"\xa1" * 8, b"\xb2" * 8
TEMP = "sensors.Temperature"


def _write(db: Path, readings: list[tuple[Any, Any]]) -> None:
    writer = Writer(db)
    writer.start()
    for msg, inf in readings:
        writer.add(msg, inf)
    writer.close()


def _three_probes(db: Path) -> None:
    readings: list[tuple[Any, Any]] = []
    for seq in range(9):  # node A: probes 0, 1, 2 in turn, one number per reading
        probe = f"w1:28-{seq % 3}"
        readings.append((hardware.readings.Temperature(probe, 20.0 + seq),
                         info(TEMP, sender=A, seq=seq + (seq >= 6) * 2,  # 2 lost before seq 8
                              sent_ns=1_000_000_000 * (seq + 1))))
    readings.append((hardware.readings.Temperature("w1:28-0", 5.0),
                     info(TEMP, sender=B, seq=0, sent_ns=1_000_000_000)))
    readings.append((Record("x.Plain", {"v": 1}), info("x.Plain", sender=A, seq=0)))
    readings.append((Record("x.Plain", {"v": 2}), info("x.Plain", sender=A, seq=1)))
    _write(db, readings)


def test_a_keyed_type_is_summarised_per_node_and_sensor(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _three_probes(db)
    conn = open_log(db, write=False)
    try:
        summary = summarize(conn, db)
    finally:
        conn.close()
    rows = [(s.type, s.node, s.key.get("sensor"), s.count, s.last_value.get("celsius"))
            for s in summary.streams]
    assert rows == [
        (TEMP, A.hex(), "w1:28-0", 3, 26.0),
        (TEMP, A.hex(), "w1:28-1", 3, 27.0),
        (TEMP, A.hex(), "w1:28-2", 3, 28.0),
        (TEMP, B.hex(), "w1:28-0", 1, 5.0),
        ("x.Plain", A.hex(), None, 2, None),
    ]
    assert summary.readings == 12
    # the stream's one gap (per sender and type) is counted once, on its first key's row
    assert [(s.gaps, s.missing) for s in summary.streams if s.type == TEMP] == [
        (1, 2), (0, 0), (0, 0), (0, 0)]
    # rate per sensor: readings 3 s apart
    assert summary.streams[0].rate == 1 / 3
    text = format_summary(summary)
    header = text.splitlines()[1].split()
    assert header[:4] == ["TYPE", "NODE", "KEY", "COUNT"]
    assert sum("w1:28-" in line for line in text.splitlines()) == 4


def test_a_reading_type_keyed_by_sensor_and_quantity(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    reading = hardware.messages.Reading
    _write(db, [(reading("serial:x", q, v), info("sensors.Reading", sender=A, seq=i))
                for i, (q, v) in enumerate([("t", 1.0), ("rh", 50.0), ("t", 2.0)])])
    conn = open_log(db, write=False)
    try:
        streams = summarize(conn, db).streams
    finally:
        conn.close()
    assert [(s.key, s.count, s.last_value["value"]) for s in streams] == [
        ({"sensor": "serial:x", "quantity": "rh"}, 1, 50.0),
        ({"sensor": "serial:x", "quantity": "t"}, 2, 2.0)]


def test_without_keys_the_table_keeps_its_columns(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _write(db, [(Record("x.Plain", {"v": 1}), info("x.Plain", sender=A, seq=0))])
    conn = open_log(db, write=False)
    try:
        summary = summarize(conn, db, key_fields=lambda name: ())
    finally:
        conn.close()
    assert format_summary(summary).splitlines()[1].split()[:3] == ["TYPE", "NODE", "COUNT"]


def test_info_command_shows_one_row_per_probe(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    _three_probes(db)
    result = CliRunner().invoke(cli, ["info", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    streams = json.loads(result.output)["streams"]
    assert sorted((s["node"], s["key"].get("sensor")) for s in streams if s["type"] == TEMP) == [
        (A.hex(), "w1:28-0"), (A.hex(), "w1:28-1"), (A.hex(), "w1:28-2"), (B.hex(), "w1:28-0")]
