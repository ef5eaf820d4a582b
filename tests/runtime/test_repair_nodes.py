"""Repair between real nodes on loopback: a hole is filled, a late subscriber gets the past.

Two nodes (real sockets, the control channel, the repair glue). A hole is made without
loss (``_repair_support.publish_unsent``): messages numbered and kept in the
publisher's history but not sent, so the subscriber sees a jump, asks, and gets them
repaired. A
history answer recorded off the control group and sent again after its nonce expired
is dropped; sent again while the nonce is fresh, it delivers nothing twice. (Sent
again as it was, the control endpoint's sequence tracking drops it as a duplicate
before anything reads it; the test wraps the recorded answer in new datagrams with
fresh numbers, as a forger on a network without a key could, so the checks behind
that one are what is tested.)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import Callable

import pytest
from _repair_support import LO, make_node, publish_unsent, ready_to_send, running
from waits import until

from ganglion import defaults
from ganglion.runtime import _repairing, _sockets
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import message
from ganglion.wire import Packer, decode_fields

pytestmark = pytest.mark.usefixtures("multicast_loopback")

TYPE = "test_repair_nodes.Reading"


@message(TYPE)
@dataclasses.dataclass
class Reading:
    value: int


make = make_node


class Box:
    """What a subscriber got from one sender: (value, seq, repaired) in arrival order."""

    def __init__(self, sender: Callable[[], bytes]) -> None:
        self.sender = sender
        self.got: list[tuple[int, int, bool]] = []

    def __call__(self, msg: Reading, info: MessageInfo) -> None:
        if info.sender == self.sender():
            self.got.append((msg.value, info.seq, info.repaired))


def test_a_hole_between_two_nodes_is_repaired_once_and_counted(tmp_path: object,
                                                               free_udp_port: int) -> None:
    port = free_udp_port

    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            box = Box(lambda: a.node_id)
            b.subscribe(Reading, callback=box)
            await ready_to_send(a, TYPE, b)
            await a.publish(Reading(0))
            await until(lambda: len(box.got) == 1, "the first reading")
            await publish_unsent(a, TYPE, Reading(1), Reading(2), Reading(3))
            await a.publish(Reading(4))
            await until(lambda: len(box.got) == 5, "the repaired readings")
            await asyncio.sleep(0.3)  # nothing more comes (no duplicate)
            assert sorted(box.got) == [(n, n, n in (1, 2, 3)) for n in range(5)]
            assert box.got[:2] == [(0, 0, False), (4, 4, False)]  # arrival order
            received = b.stats().types[TYPE]
            assert (received.repaired, received.lost, received.permanently_lost) == (3, 0, 0)
            assert received.repair_requests_sent >= 1
            sent = a.stats().types[TYPE]
            assert sent.repair_requests_received >= 1 and sent.repaired_sent == 3
            assert sent.history_messages == 5 and sent.history_bytes > 0
            stream = b.stats().endpoint.streams[(a.node_id, TYPE)]
            assert stream.repaired == 3 and stream.repair_requests_sent >= 1

    asyncio.run(scenario())


def test_without_repair_the_hole_stays_and_is_counted_as_lost(tmp_path: object,
                                                              free_udp_port: int) -> None:
    port = free_udp_port

    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b", repair=False)
        async with running(a, b):
            box = Box(lambda: a.node_id)
            b.subscribe(Reading, callback=box)
            await ready_to_send(a, TYPE, b)
            await a.publish(Reading(0))
            await until(lambda: len(box.got) == 1, "the first reading")
            await publish_unsent(a, TYPE, Reading(1))
            await a.publish(Reading(2))
            await until(lambda: len(box.got) == 2, "the second reading")
            await asyncio.sleep(0.5)
            assert box.got == [(0, 0, False), (2, 2, False)]
            received = b.stats().types[TYPE]
            assert (received.lost, received.repaired, received.repair_requests_sent) == (1, 0, 0)

    asyncio.run(scenario())


def test_a_late_subscriber_gets_the_history_once_and_a_replayed_answer_is_dropped(
        tmp_path: object, free_udp_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_udp_port
    monkeypatch.setattr(_repairing, "HISTORY_ANSWER_SECONDS", 1.5)

    async def scenario() -> None:
        tap = _sockets.open_receive_socket(port + 1, 1 << 20)
        _sockets.add_membership(tap, defaults.CONTROL_GROUP, LO)
        tap.setblocking(False)
        a = make(tmp_path, port, "a")
        b = make(tmp_path, port, "b")
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(a)
                for n in range(6):  # nobody subscribes yet: kept, not sent
                    await a.publish(Reading(n))
                await stack.enter_async_context(b)
                await until(lambda: {p.id for p in b.peers()} == {a.node_id}, "b meets a")
                box = Box(lambda: a.node_id)
                b.subscribe(Reading, callback=box, history=60.0)
                await until(lambda: len(box.got) == 6, "the history")
                assert box.got == [(n, n, True) for n in range(6)]
                # The answer as it went over the control group, to send again.
                answers = _drain_repairs(tap)
                assert answers, "the history answer was seen on the control group"
                sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                try:
                    sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                      socket.inet_aton(LO))
                    for datagram in _rewrap(answers, 1_000):  # the nonce is fresh
                        sender.sendto(datagram, (defaults.CONTROL_GROUP, port + 1))
                    await until(lambda: b.stats().endpoint.history_dropped >= 6,
                                "the answer's second copy to be dropped")
                    assert len(box.got) == 6
                    await asyncio.sleep(1.5)  # the nonce expires
                    before = b.stats().control.get("repair_unsolicited", 0)
                    for datagram in _rewrap(answers, 2_000):
                        sender.sendto(datagram, (defaults.CONTROL_GROUP, port + 1))
                    await until(lambda: b.stats().control.get("repair_unsolicited", 0) > before,
                                "the replayed answer to be refused")
                finally:
                    sender.close()
                assert len(box.got) == 6
                await a.publish(Reading(6))
                await until(lambda: len(box.got) == 7, "a live reading after the history")
                assert box.got[-1] == (6, 6, False)
                assert b.stats().types[TYPE].lost == 0
        finally:
            tap.close()

    asyncio.run(scenario())


def _rewrap(datagrams: list[bytes], first_seq: int) -> list[bytes]:
    """The datagrams' messages again, from the same sender, under fresh numbers."""
    out = []
    for datagram in datagrams:
        node_id, name, fingerprint, _seq, timestamps, payloads, boot, _flags = \
            decode_fields(datagram, None)
        for ts, body in zip(timestamps, payloads, strict=True):
            pk = Packer(node_id=node_id, type_name=name, fingerprint=fingerprint, boot=boot,
                        first_seq=first_seq)
            first_seq += 1
            out.append(pk.build_one(body, ts))
    return out


def _drain_repairs(sock: socket.socket) -> list[bytes]:
    """The datagrams read so far that carry a Repair (by its type name)."""
    out = []
    with contextlib.suppress(BlockingIOError):
        while True:
            data = sock.recv(65536)
            if b"ganglion.control.Repair" in data and b"RepairRequest" not in data:
                out.append(data)
    return out


def test_a_publisher_without_history_answers_gone_and_the_gap_is_permanent_at_once(
        tmp_path: object, free_udp_port: int) -> None:
    port = free_udp_port

    async def scenario() -> None:
        a, b = make(tmp_path, port, "a", history=None), make(tmp_path, port, "b")
        gaps: list[object] = []
        async with running(a, b):
            b.watch_gaps(gaps.append)
            box = Box(lambda: a.node_id)
            b.subscribe(Reading, callback=box)
            await ready_to_send(a, TYPE, b)
            await a.publish(Reading(0))
            await until(lambda: len(box.got) == 1, "the first reading")
            await publish_unsent(a, TYPE, Reading(1), Reading(2))
            await a.publish(Reading(3))
            started = time.monotonic()
            await until(lambda: b.stats().types[TYPE].permanently_lost == 2, "the gone answer")
            assert time.monotonic() - started < 2.0  # not after every retry (seconds)
            assert [(g.first, g.last, g.reason) for g in gaps] == [(1, 2, "gone")]  # type: ignore[attr-defined]
            assert box.got == [(0, 0, False), (3, 3, False)]
            assert a.history is None and a.stats().types[TYPE].gone_sent == 2
            assert b.stats().types[TYPE].lost == 2  # still counted as lost: they are

    asyncio.run(scenario())
