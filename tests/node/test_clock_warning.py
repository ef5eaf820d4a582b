"""The unsynchronised-clock warning: once per process, and only where it matters (a node
that publishes readings stamped with that clock), never at every start of a tool."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_support import run, until
from test_node_loopback import Reading, make, running

import ganglion.node

pytestmark = pytest.mark.usefixtures("multicast_loopback")


@pytest.fixture
def unsynced_clock(monkeypatch: pytest.MonkeyPatch,
                   caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """The kernel says the clock is not synchronised; gives the warnings logged so far."""
    monkeypatch.setattr(ganglion.node, "clock_synchronized", lambda: False)
    monkeypatch.setattr(ganglion.node, "_clock_warning_given", False, raising=False)
    caplog.set_level(logging.WARNING, logger="ganglion.node")
    warnings: list[str] = []

    class Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "clock is not synchronised" in record.getMessage():
                warnings.append(record.getMessage())

    sink = Sink()
    logging.getLogger("ganglion.node").addHandler(sink)
    yield warnings
    logging.getLogger("ganglion.node").removeHandler(sink)


def test_starting_and_subscribing_say_nothing_publishing_says_it_once(
        tmp_path: Path, port: int, unsynced_clock: list[str]) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        observer = make(tmp_path, port, "tool", observer=True)
        async with running(a, b, observer):
            observer.subscribe(Reading, callback=lambda msg, info: None)
            a.subscribe(Reading, callback=lambda msg, info: None)
            assert unsynced_clock == [], "no reading was stamped yet: nothing to say"
            await a.publish(Reading(1))
            await b.publish(Reading(2))
            await a.publish(Reading(3))
        assert len(unsynced_clock) == 1, unsynced_clock

    run(scenario())


def test_a_replay_stamps_nothing_with_this_clock_and_says_nothing(
        tmp_path: Path, port: int, unsynced_clock: list[str]) -> None:
    async def scenario() -> None:
        async with running(make(tmp_path, port, "replayer", replay=True)) as (replayer,):
            await replayer.publish(Reading(1))
        assert unsynced_clock == []

    run(scenario())


def test_heartbeats_carry_the_flag_of_the_ten_second_check_without_asking_each_time(
        tmp_path: Path, port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A heartbeat says what the node's datagrams say of its clock (checked at start and
    every CLOCK_CHECK_SECONDS), not what a system call made for each heartbeat says: an
    idle node's wake-ups should cost as little as they can."""
    asked: list[bool] = []

    def unsynced() -> bool:
        asked.append(False)
        return False

    monkeypatch.setattr(ganglion.node, "clock_synchronized", unsynced)

    async def scenario() -> None:
        async with running(make(tmp_path, port, "a"), make(tmp_path, port, "b")) as (a, b):
            await until(lambda: [p.clock_synced for p in b.peers()] == [False],
                        "b hears a say its clock is not synchronised")
            heard_by = len(asked)
            await asyncio.sleep(1.0)  # five more heartbeats each at 0.2 s
            assert len(asked) == heard_by, "no clock check per heartbeat"
            assert [p.clock_synced for p in a.peers()] == [False]

    run(scenario())
