"""Replayed readings are marked on the wire, and receivers see the sender's fingerprint."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ganglion import message
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import type_of


@message("test_replay.Reading")
@dataclass
class Reading:
    value: int


async def _exchange(port: int, group: str, *, replay: bool) -> tuple[list[MessageInfo], MessageInfo]:
    got: list[MessageInfo] = []
    local: list[MessageInfo] = []
    arrived = asyncio.Event()

    def on_remote(msg: Reading, info: MessageInfo) -> None:
        got.append(info)
        if len(got) == 3:
            arrived.set()

    async with Endpoint(port=port, group_for=lambda _n: group, replay=replay) as sender, \
            Endpoint(port=port, group_for=lambda _n: group) as receiver:
        receiver.subscribe(Reading, callback=on_remote)
        sender.subscribe(Reading, callback=lambda m, i: local.append(i))
        for value in range(3):
            sender.publish(Reading(value=value))
        await asyncio.wait_for(arrived.wait(), 10)
    return got, local[0]


def test_replayed_datagrams_are_marked_and_live_ones_are_not(free_udp_port: int,
                                                             test_group: str) -> None:
    group = test_group
    fingerprint = type_of(Reading).fingerprint
    replayed, local = asyncio.run(_exchange(free_udp_port, group, replay=True))
    assert [i.replayed for i in replayed] == [True] * 3
    assert local.replayed and local.fingerprint == fingerprint
    assert all(i.fingerprint == fingerprint for i in replayed)
    live, local = asyncio.run(_exchange(free_udp_port, group, replay=False))
    assert [i.replayed for i in live] == [False] * 3
    assert not local.replayed
