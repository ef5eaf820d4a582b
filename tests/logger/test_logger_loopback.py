"""End to end on loopback with real in-process nodes: what is published is what is logged.

Three simulated sensors on two member nodes, a logger on a third (observer) node;
every reading published while the logger runs must be in the database, gaps
made on purpose must be recorded, exports must give the values back exactly,
and a replay into a second logger must reproduce the readings.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import math
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from log_support import node_kwargs, rows, run, skip_numbers, until

from ganglion.errors import LogDatabaseError
from ganglion.logger import datajson
from ganglion.logger.export import export_csv, export_jsonl
from ganglion.logger.info import summarize
from ganglion.logger.plugin import LogPlugin
from ganglion.logger.recorder import Recorder
from ganglion.logger.replay import replay
from ganglion.logger.schema import open_log
from ganglion.logger.writer import Writer
from ganglion.node import Node
from ganglion.plugins import PluginHost, load_plugin
from ganglion.types import Record
from hardware.readings import Humidity, Pressure, Temperature
from hardware.sim import SimulatedSensor

PER_SENSOR = 300


class Logger:
    """A Writer + Recorder running on a node in a task, stopped by :meth:`stop`."""

    def __init__(self, node: Node, db: Path, patterns: tuple[str, ...] = (), **kw: Any) -> None:
        self.writer = Writer(db, patterns=patterns, **kw)
        self.recorder = Recorder(self.writer, patterns, interval=0.1)
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self.recorder.run(node, self._stop))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 10)
        await asyncio.to_thread(self.writer.close)


async def _warm_up(publishers: list[tuple[Node, Any]], watcher: Node, logger: Logger) -> None:
    """Publish until the logger's node receives a live reading of every (type, node)."""
    wanted = {(_name(m), p.node_id) for p, m in publishers}
    seen: set[tuple[str, bytes]] = set()

    def note(msg: Any, info: Any) -> None:
        if not info.last_value:
            seen.add((info.type_name, info.sender))

    for pub, msg in publishers:
        await pub.publish(msg)
    for pub, msg in publishers:
        await pub.wait_for_group(_name(msg))
    await until(lambda: len(logger.recorder.subscribed) >= len({_name(m) for _, m in publishers}),
                "the logger to subscribe to every type")
    subs = [watcher.subscribe(n, callback=note, propose=False) for n in logger.recorder.subscribed]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not wanted <= seen:
        assert loop.time() < deadline, f"live readings never reached the logger: {seen}"
        for pub, msg in publishers:
            await pub.publish(msg)
        await asyncio.sleep(0.05)
    for sub in subs:
        sub.close()


def _name(msg: Any) -> str:
    from ganglion.types import type_name_of

    return type_name_of(msg)


def test_every_reading_published_while_the_logger_runs_is_logged(port: int, tmp_path: Path,
                                                                  db: Path) -> None:
    async def scenario() -> dict[tuple[str, str], list[int]]:
        sent: dict[tuple[str, str], list[int]] = {}
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="b", **node_kwargs(port, tmp_path / "b")) as b, \
                Node(name="c", **node_kwargs(port)) as c:
            logger = Logger(c, db)
            sensors = [(a, SimulatedSensor("temperature", "a/t", rng=random.Random(1))),
                       (a, SimulatedSensor("humidity", "a/h", rng=random.Random(2))),
                       (b, SimulatedSensor("pressure", "b/p", rng=random.Random(3)))]
            await _warm_up([(n, s.read(0.0)) for n, s in sensors], c, logger)
            recording = True

            def record(msg: Any, info: Any) -> None:
                if recording:
                    sent.setdefault((info.type_name, info.sender.hex()), []).append(info.seq)

            subs = [n.subscribe(_name(s.read(0.0)), callback=record) for n, s in sensors]
            for i in range(PER_SENSOR):
                for node, sensor in sensors:
                    node.publish_nowait(sensor.read(i * 0.1))
                if i % 25 == 0:
                    await asyncio.sleep(0.005)
            recording = False
            for sub in subs:
                sub.close()
            total = 3 * PER_SENSOR
            await until(lambda: logger.writer.stats().received + len(logger.writer._batch) >= total,
                        "the logger to receive every reading", timeout=10)
            await asyncio.sleep(0.3)
            await logger.stop()
        return sent

    sent = run(scenario())
    assert sum(len(v) for v in sent.values()) == 3 * PER_SENSOR and len(sent) == 3
    for (type_name, node), seqs in sent.items():
        logged = {s for (s,) in rows(db, "SELECT seq FROM readings WHERE type = ? AND node = ? "
                                         "AND NOT last_value", type_name, node)}
        missing = sorted(set(seqs) - logged)
        assert not missing, f"{type_name} from {node}: {len(missing)} not logged: {missing[:10]}"
    assert rows(db, "SELECT count(*) FROM gaps") == [(0,)]
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
    # the plain-sqlite3 promise: json_extract on the data column
    temps = rows(db, "SELECT json_extract(data, '$.celsius') FROM readings "
                     "WHERE type = 'sensors.Temperature'")
    assert temps and all(isinstance(t, float) for (t,) in temps)
    names = dict(rows(db, "SELECT node, name FROM nodes"))
    assert {"a", "b"} <= set(names.values())


def test_gaps_are_recorded_when_a_publishers_messages_are_dropped(port: int, tmp_path: Path,
                                                                  db: Path) -> None:
    async def scenario() -> tuple[str, int]:
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="c", **node_kwargs(port)) as c:
            logger = Logger(c, db, gap_settle=0.2)
            await _warm_up([(a, Temperature("t", 20.0))], c, logger)
            first = a._endpoint._next_seq["sensors.Temperature"]  # type: ignore[union-attr]
            for block, skip in ((10, 5), (10, 2), (5, 0)):
                for i in range(block):
                    await a.publish(Temperature("t", float(i)))
                if skip:
                    skip_numbers(a, "sensors.Temperature", skip)
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            await logger.stop()
            return a.node_id.hex(), first

    node, first = run(scenario())
    gaps = rows(db, "SELECT type, node, first_missing, last_missing, missing FROM gaps "
                    "ORDER BY first_missing")
    assert gaps == [("sensors.Temperature", node, first + 10, first + 14, 5),
                    ("sensors.Temperature", node, first + 25, first + 26, 2)]
    summary = summarize(open_log(db, write=False), db)
    (stream,) = [s for s in summary.streams if s.node == node]
    assert (stream.gaps, stream.missing) == (2, 7)


ODD = [
    {"x": 1 / 3, "n": 2**62, "s": "comma, \"quote\"\nnewline ünï", "ok": True, "none": None,
     "nested": {"a": [1.5, -0.0, 1e-300], "b": {"deep": "yes"}}, "raw": b"\x00\xff"},
    {"x": math.inf, "n": -7, "s": "", "ok": False, "none": None,
     "nested": {"a": [], "b": {"deep": "no"}}, "raw": b""},
    {"x": float("nan"), "n": 0, "s": "é", "ok": True, "none": None,
     "nested": {"a": [2.0], "b": {"deep": ""}}, "raw": b"abc"},
]


def test_export_round_trips_values_exactly(port: int, tmp_path: Path, db: Path) -> None:
    async def scenario() -> None:
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="c", **node_kwargs(port)) as c:
            logger = Logger(c, db, patterns=("test.*",))
            await _warm_up([(a, Record("test.Odd", ODD[0]))], c, logger)
            for fields in ODD:
                await a.publish(Record("test.Odd", fields))
            await until(lambda: logger.writer.stats().received + len(logger.writer._batch)
                        >= 3 + 1, "the odd readings")
            await asyncio.sleep(0.2)
            await logger.stop()

    run(scenario())
    conn = open_log(db, write=False)
    live = [datajson.loads(d) for (d,) in rows(db, "SELECT data FROM readings WHERE NOT last_value "
                                                   "ORDER BY id")][-3:]
    _assert_same(live, ODD)
    out = io.StringIO()
    export_jsonl(conn, out, patterns=["test.Odd"])
    lines = [json.loads(line) for line in out.getvalue().splitlines()][-3:]
    _assert_same([datajson.loads(json.dumps(line["data"])) for line in lines], ODD)
    out = io.StringIO(newline="")
    export_csv(conn, out)
    table = list(csv.DictReader(io.StringIO(out.getvalue())))[-3:]
    for row, fields in zip(table, ODD, strict=True):
        assert _same_float(float(row["x"]), fields["x"])
        assert int(row["n"]) == fields["n"]
        assert row["s"] == fields["s"]
        assert row["ok"] == ("true" if fields["ok"] else "false")
        assert row["none"] == ""
        assert bytes.fromhex(row["raw"]) == fields["raw"]
        assert row["nested.b.deep"] == fields["nested"]["b"]["deep"]
        for i, value in enumerate(fields["nested"]["a"]):
            assert repr(float(row[f"nested.a.{i}"])) == repr(value)
        assert row["type"] == "test.Odd" and row["replayed"] == "false"


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or repr(a) == repr(b)


def _assert_same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w)
        assert _same_float(g["x"], w["x"])
        assert {k: v for k, v in g.items() if k != "x"} == {k: v for k, v in w.items() if k != "x"}
        assert repr(g["nested"]["a"]) == repr(w["nested"]["a"])  # -0.0 stays -0.0


def test_replay_into_a_second_logger_reproduces_the_readings(port: int, tmp_path: Path) -> None:
    first_db, second_db = tmp_path / "first.db", tmp_path / "second.db"

    async def record() -> None:
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="c", **node_kwargs(port)) as c:
            logger = Logger(c, first_db)
            await _warm_up([(a, Temperature("t", 0.5)), (a, Humidity("h", 50.0))], c, logger)
            for i in range(40):
                await a.publish(Temperature("t", i / 7))
                await a.publish(Humidity("h", 100 - i / 3))
                await asyncio.sleep(0.002)
            await asyncio.sleep(0.4)
            await logger.stop()

    async def play(port2: int) -> None:
        kw = node_kwargs(port2, tmp_path / "r")
        async with Node(name="r", **kw, replay=True) as r, Node(name="c2", **node_kwargs(port2)) as c2:
            logger = Logger(c2, second_db)
            conn = open_log(first_db, write=False)
            # The logger subscribes as soon as replay() gets the groups agreed.
            task = asyncio.create_task(_replay_when_ready(r, conn, logger))
            result = await task
            assert result.published == rows(first_db, "SELECT count(*) FROM readings")[0][0]
            await asyncio.sleep(0.4)
            await logger.stop()

    run(record())
    from node_support import free_port_pair

    run(play(free_port_pair()))
    # A faithful copy: the same readings, senders, numbers, times and last-value flags
    # (issue 20: they used to be the replaying node's), every one marked replayed.
    columns = "node, boot, seq, sent_ns, data, last_value, clock_synced, fingerprint"
    for type_name in ("sensors.Temperature", "sensors.Humidity"):
        query = f"SELECT {columns} FROM readings WHERE type = ? ORDER BY id"
        assert rows(second_db, query, type_name) == rows(first_db, query, type_name), type_name
    assert rows(second_db, "SELECT count(*) FROM readings WHERE NOT replayed") == [(0,)]


async def _replay_when_ready(node: Node, conn: sqlite3.Connection, logger: Logger) -> Any:
    names = [n for (n,) in conn.execute("SELECT DISTINCT name FROM types")]
    from ganglion.logger.replay import prepare_types

    await prepare_types(node, names)
    await until(lambda: set(names) <= logger.recorder.subscribed, "the second logger to subscribe")
    await asyncio.sleep(0.6)  # the replaying node hears the logger's subscriptions
    return await replay(node, conn, speed=0)


def test_replayed_readings_are_marked(port: int, tmp_path: Path) -> None:
    db = tmp_path / "x.db"

    async def scenario() -> None:
        async with Node(name="r", **node_kwargs(port, tmp_path / "r"), replay=True) as r, \
                Node(name="c", **node_kwargs(port)) as c:
            logger = Logger(c, db)
            await _warm_up([(r, Temperature("t", 1.0))], c, logger)
            await asyncio.sleep(0.3)
            await logger.stop()

    run(scenario())
    assert rows(db, "SELECT count(*) FROM readings WHERE NOT last_value AND NOT replayed") == [(0,)]


def test_the_log_plugin_logs_what_its_node_and_others_publish(port: int, tmp_path: Path) -> None:
    db = tmp_path / "plugin.db"
    plugin = load_plugin("log", {"db": str(db), "types": ["sensors.*"], "interval": 0.1})
    assert isinstance(plugin, LogPlugin)

    async def scenario() -> tuple[str, str]:
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="l", **node_kwargs(port, tmp_path / "l")) as lnode:
            async with PluginHost(lnode, [plugin]):
                await a.publish(Pressure("p", 1000.0))
                await a.publish(Record("other.Thing", {"v": 1}))
                await a.wait_for_group("sensors.Pressure")
                assert plugin.recorder is not None
                await until(lambda: "sensors.Pressure" in plugin.recorder.subscribed,  # type: ignore[union-attr]
                            "the plugin to subscribe")
                await asyncio.sleep(0.5)
                for i in range(20):
                    await a.publish(Pressure("p", 1000.0 + i))
                    await lnode.publish(Pressure("local", float(i)))
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.4)
            return a.node_id.hex(), lnode.node_id.hex()

    remote, local = run(scenario())
    counts = dict(((n, bool(loc)), c) for n, loc, c in rows(
        db, "SELECT node, local, count(*) FROM readings WHERE NOT last_value GROUP BY 1, 2"))
    assert counts[(remote, False)] >= 20 and counts[(local, True)] == 20
    assert rows(db, "SELECT DISTINCT type FROM readings") == [("sensors.Pressure",)]
    assert rows(db, "SELECT ended_ns IS NOT NULL FROM sessions") == [(1,)]


def test_a_full_disk_stops_the_recorder_with_one_clear_error(port: int, tmp_path: Path,
                                                            db: Path) -> None:
    async def scenario() -> LogDatabaseError:
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="c", **node_kwargs(port)) as c:
            pages = sqlite3.connect(db).execute("PRAGMA page_count").fetchone()[0] if db.exists() \
                else 0
            writer = Writer(db, max_pages=pages + 20, batch_rows=200)
            recorder = Recorder(writer, interval=0.05)
            task = asyncio.create_task(recorder.run(c))
            await a.publish(Record("test.Big", {"blob": "x" * 900}))
            await a.wait_for_group("test.Big")
            await until(lambda: bool(recorder.subscribed), "the recorder to subscribe")
            for i in range(2000):
                await a.publish(Record("test.Big", {"blob": "x" * 900, "i": i}))
                if task.done():
                    break
                if i % 20 == 0:
                    await asyncio.sleep(0.01)
            with pytest.raises(LogDatabaseError) as caught:
                await asyncio.wait_for(task, 10)
            await asyncio.to_thread(writer.close)
            assert writer.stats().dropped > 0
            return caught.value

    error = run(scenario())
    assert "full" in str(error) and str(db) in str(error)
    assert rows(db, "PRAGMA integrity_check") == [("ok",)]
