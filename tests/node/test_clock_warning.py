"""The unsynchronised-clock warning: once per process, and only where it matters (a node
that publishes readings stamped with that clock), never at every start of a tool."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_support import run
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
