"""Issue 20, defect 7: retiring a type, with real nodes on 127.0.0.1.

A type nobody publishes leaves every node's map; one that a live node publishes is
refused (by the asking node and by the member a request reaches), and when it is
retired anyway (a forger acting as a proposer, or a race) its publisher asks for it
again and it comes back on its old group, where subscribers hear it again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from node_support import run, until
from test_node_loopback import READING, Reading, collect, connected, make, running

from ganglion.errors import TypeInUseError
from ganglion.types import Record

pytestmark = pytest.mark.usefixtures("multicast_loopback")

TYPO = "nodetest.Readng"


def test_a_type_nobody_publishes_is_retired_everywhere(tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await connected(a, b)
            typo = make(tmp_path, port, "typo", observer=True)
            async with running(typo):
                await typo.publish(Record(TYPO, {"value": 1}))
                await until(lambda: TYPO in a.types() and TYPO in b.types(), "the typo agreed")
                group = a.types()[TYPO]
            # The publisher is gone: an observer (as `ganglion types --retire`) asks.
            tool = make(tmp_path, port, "tool", observer=True)
            async with running(tool):
                await until(lambda: TYPO in tool.types() and a.node_id in
                            {p.id for p in tool.peers()}, "the tool to learn the map")
                assert tool.publishers(TYPO) == []
                tool.retire(TYPO)
                await until(lambda: all(TYPO not in n.types() for n in (a, b, tool)),
                            "the typo to leave every map")
            assert a.stats().types.get(TYPO) is None or a.stats().types[TYPO].group is None
            # Published again, it comes back on its old group (reserved for it).
            again = make(tmp_path, port, "again", observer=True)
            async with running(again):
                await again.publish(Record(TYPO, {"value": 2}))
                await until(lambda: TYPO in a.types(), "the typo back")
                assert a.types()[TYPO] == group

    run(scenario())


def test_a_published_type_is_refused_by_the_asker_and_by_the_member(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await connected(a, b)
            await a.publish(Reading(1))
            await until(lambda: READING in b.types(), "the type agreed")
            with pytest.raises(TypeInUseError, match="published by a"):
                a.retire(READING)
            tool = make(tmp_path, port, "tool", observer=True)
            async with running(tool):
                await until(lambda: READING in tool.types() and tool.publishers(READING) == ["a"],
                            "the tool to hear who publishes")
                with pytest.raises(TypeInUseError, match="published by a"):
                    tool.retire(READING)
                # A tool that does not check (an older one, or a forger's request) is
                # refused by the member it reaches.
                control = tool._running()[1]
                control.retire(READING)
                await until(lambda: a.stats().control.get("retire_refused_published", 0)
                            + b.stats().control.get("retire_refused_published", 0) > 0,
                            "a member to refuse the request")
                await asyncio.sleep(0.3)
                assert READING in a.types() and READING in b.types()

    run(scenario())


def test_a_published_type_retired_anyway_comes_back_on_its_group(
        tmp_path: Path, port: int) -> None:
    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            await connected(a, b)
            seen = collect(b)
            await a.publish(Reading(0))
            await until(lambda: READING in a.types() and READING in b.types(), "agreed")
            group = a.types()[READING]
            # A member's state machine proposes the Retire itself, as a forger acting
            # as a proposer would: no runtime check stands in the way.
            for node in (a, b):
                control = node._running()[1]
                control.paxos.retire(READING)
                control._pump()
            await until(lambda: any(e[1].startswith(b"retire ") for e in
                                    a._running()[1].paxos.entries()), "the retire decided")
            # The publisher asks for it again: back on its reserved group everywhere.
            await until(lambda: a.types().get(READING) == group == b.types().get(READING),
                        "the type back on its group")
            count = len(seen)
            for value in range(1, 6):
                await a.publish(Reading(value))
            await until(lambda: len(seen) >= count + 5, "readings after the retire")
            assert [v for *_, v, _ in seen][-5:] == [1, 2, 3, 4, 5]

    run(scenario())
