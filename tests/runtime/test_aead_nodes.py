"""Two nodes on loopback, one encrypting and one ``--no-encrypt``: they agree and deliver.

A receiver accepts both kinds of datagram, so the choice is each sender's; a tap on
the control group shows each node's control traffic in its own format.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable

import pytest

from ganglion import defaults
from ganglion.node import Node
from ganglion.runtime import _sockets
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import message
from ganglion.wire import FLAG_AEAD, FLAG_MAC, KeyRing

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = "127.0.0.1"
KEY = bytes(range(32))
TYPE = "test_aead_nodes.Reading"


@message(TYPE)
@dataclasses.dataclass
class Reading:
    value: int


async def until(cond: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_an_encrypting_node_and_a_mac_only_node_work_together(
        tmp_path: object, free_udp_port: int) -> None:
    port = free_udp_port

    def make(name: str, encrypt: bool) -> Node:
        return Node(name=name, interface=LO, port=port, control_port=port + 1,
                    state_dir=f"{tmp_path}/{name}", discovery=False, heartbeat_seconds=0.2,
                    key=KeyRing([KEY]), encrypt=encrypt)

    async def scenario() -> None:
        tap = _sockets.open_receive_socket(port + 1, 1 << 20)
        _sockets.add_membership(tap, defaults.CONTROL_GROUP, LO)
        a, b = make("a", True), make("b", False)
        got_a: list[int] = []
        got_b: list[int] = []
        async with contextlib.AsyncExitStack() as stack:
            for node in (a, b):
                await stack.enter_async_context(node)
            await until(lambda: {p.id for p in a.peers()} == {b.node_id}
                        and {p.id for p in b.peers()} == {a.node_id}, "the nodes to meet")
            # Each keeps what came from the other (local publishes are delivered too).
            def keeper(box: list[int], other: bytes) -> Callable[[Reading, MessageInfo], None]:
                def keep(msg: Reading, info: MessageInfo) -> None:
                    if info.sender == other:
                        box.append(msg.value)
                return keep

            a.subscribe(Reading, callback=keeper(got_a, b.node_id))
            b.subscribe(Reading, callback=keeper(got_b, a.node_id))
            await until(lambda: TYPE in a.types() and TYPE in b.types(), "the type")
            await asyncio.sleep(0.5)  # each hears the other's subscription
            for n in range(5):
                await a.publish(Reading(n))
                await b.publish(Reading(100 + n))
            await until(lambda: len(got_a) == 5 and len(got_b) == 5, "the readings")
            assert got_b == [0, 1, 2, 3, 4] and got_a == [100, 101, 102, 103, 104]
            assert a.stats().bad_mac == 0 and b.stats().bad_mac == 0
        flags: dict[bytes, set[int]] = {a.node_id: set(), b.node_id: set()}
        with tap, contextlib.suppress(BlockingIOError):
            while True:
                d = tap.recv(65536)
                if d[4:12] in flags:
                    flags[d[4:12]].add(d[3] & (FLAG_MAC | FLAG_AEAD))
        assert flags == {a.node_id: {FLAG_AEAD}, b.node_id: {FLAG_MAC}}

    asyncio.run(asyncio.wait_for(scenario(), 30))
