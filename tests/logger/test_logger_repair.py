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


@pytest.mark.parametrize("history", [None, 0])
def test_the_log_plugin_asks_for_history_unless_told_not_to(port: int, tmp_path: Path,
                                                             history: float | None) -> None:
    """A log plugin started after its publisher gets what the publisher holds (flagged
    repaired) by default; with ``history = 0`` only the latest value."""
    import asyncio

    from log_support import node_kwargs, until

    from ganglion.node import Node
    from ganglion.plugins import PluginHost, load_plugin
    from hardware.readings import Pressure

    db = tmp_path / "plugin.db"
    options: dict[str, object] = {"db": str(db), "types": ["sensors.*"], "interval": 0.1}
    if history is not None:
        options["history"] = history
    plugin = load_plugin("log", options)

    async def scenario() -> None:
        async with Node(name="a", **node_kwargs(port, tmp_path / "a")) as a, \
                Node(name="l", **node_kwargs(port, tmp_path / "l")) as lnode:
            for i in range(10):  # nobody subscribes yet: kept in a's history, not sent
                await a.publish(Pressure("p", 1000.0 + i))
            await a.wait_for_group("sensors.Pressure")
            async with PluginHost(lnode, [plugin]):
                await until(lambda: "sensors.Pressure" in plugin.recorder.subscribed,  # type: ignore[union-attr]
                            "the plugin to subscribe")
                await asyncio.sleep(1.5)

    asyncio.run(asyncio.wait_for(scenario(), 30))
    logged = rows(db, "SELECT json_extract(data, '$.hpa'), repaired, last_value FROM readings "
                      "ORDER BY id")
    if history is None:
        # each once: the newest may come as the last value, the others from history
        assert sorted(v for v, _, _ in logged) == [1000.0 + i for i in range(10)]
        assert sum(rep for _, rep, _ in logged) >= 9
    else:
        assert [(v, rep, last) for v, rep, last in logged] == [(1009.0, 0, 1)]


def test_a_number_held_as_a_last_value_is_never_part_of_a_gap() -> None:
    from ganglion.logger.gaps import Gap, GapTracker

    s = ("t.A", b"\x01" * 8, 1)
    tracker = GapTracker(settle_ns=0)
    tracker.observe(s, 1, 10)
    tracker.hold(s, 3)  # above the expected number: left out of the gap to come
    tracker.observe(s, 5, 20)
    assert sorted(tracker.flush()) == [Gap(s, 2, 2, 20), Gap(s, 4, 4, 20)]
    tracker.observe(s, 9, 30)  # a settling gap 6..8; then 7 comes as a last value
    tracker.hold(s, 7)
    assert sorted(tracker.flush()) == [Gap(s, 6, 6, 30), Gap(s, 8, 8, 30)]
    assert tracker.late == 0


def test_history_then_the_newest_as_a_last_value_then_live_leaves_no_gap(tmp_path: Path) -> None:
    # what a logger started late receives: its history answer (1..8, repaired), the
    # newest reading as the last value (9; the answer's copy of it is not delivered
    # twice), then live readings; 9 is logged, so it is no gap
    db = tmp_path / "log.db"
    now = time.time_ns()
    readings = [(Record("t.A", {"v": 9}), info(seq=9, received_ns=now, last_value=True))]
    readings += [(Record("t.A", {"v": n}), info(seq=n, received_ns=now, repaired=True))
                 for n in range(1, 9)]
    readings += [(Record("t.A", {"v": n}), info(seq=n, received_ns=now)) for n in (10, 11)]
    writer = Writer(db)
    writer.start()
    for msg, inf in readings:
        writer.add(msg, inf)
    writer.close()
    assert rows(db, "SELECT count(*) FROM gaps") == [(0,)]
    assert rows(db, "SELECT count(*), sum(repaired), sum(last_value) FROM readings") == [(11, 8, 1)]
