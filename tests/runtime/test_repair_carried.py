"""Repair requests carried in heartbeats, between real nodes on loopback (docs/protocol.md 7.7).

A first request for a few missing numbers rides the heartbeat the node sends anyway
(``Heartbeat.repairs``) instead of costing a datagram of its own. The publisher
answers it exactly as a request sent alone; another receiver that misses the same
numbers overhears it and holds its own back; a node with repair off reads such
heartbeats without harm.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time

import pytest
from _repair_support import LO, make_node, publish_unsent, ready_to_send, running
from waits import until

from ganglion import defaults
from ganglion.node import Node
from ganglion.repair import RepairRequest, RequesterConfig
from ganglion.runtime.control_messages import Heartbeat
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import encode_payload, lookup, message
from ganglion.wire import Packer

pytestmark = pytest.mark.usefixtures("multicast_loopback")

TYPE = "test_repair_carried.Reading"


@message(TYPE)
@dataclasses.dataclass
class Reading:
    value: int


make = make_node


Got = list[tuple[int, bool, int, int]]  # value, repaired, seq, boot


def collector(node: Node, sender: bytes) -> Got:
    got: Got = []

    def on_reading(msg: Reading, info: MessageInfo) -> None:
        if info.sender == sender:
            got.append((msg.value, info.repaired, info.seq, info.boot))

    node.subscribe(Reading, callback=on_reading)
    return got


async def make_hole(a: Node, got: Got, base: int = 0) -> tuple[int, int]:
    """Publish base, base + 1, base + 2 with the middle one kept but never sent (a
    loss); returns its (seq, boot)."""
    await ready_to_send(a, TYPE)
    await a.publish(Reading(base))
    await until(lambda: any(v == base for v, *_ in got), "the reading before the hole")
    await publish_unsent(a, TYPE, Reading(base + 1))
    await a.publish(Reading(base + 2))
    _v, _rep, seq, boot = next(g for g in got if g[0] == base)
    return seq + 1, boot


def test_a_hole_is_asked_for_in_the_heartbeat_and_repaired(tmp_path: object,
                                                           free_udp_port: int) -> None:
    # Heartbeats every 0.2 s: always within the carry wait, so no request goes alone.
    # A third node with repair off reads the heartbeats carrying requests unharmed.
    port = free_udp_port

    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        c = make(tmp_path, port, "c", repair=False)
        async with running(a, b, c):
            got = collector(b, a.node_id)
            collector(c, a.node_id)
            await make_hole(a, got)
            await until(lambda: any(v == 1 for v, *_ in got), "the hole repaired",
                        timeout=5.0)
            assert [(v, rep) for v, rep, *_ in got] == [(0, False), (2, False), (1, True)]
            control = b.stats().control
            assert control.get("repair_requests_carried", 0) >= 1
            assert control.get("repair_requests_sent", 0) == 0  # no datagram of its own
            assert b.stats().types[TYPE].repair_requests_sent >= 1
            sent = a.stats().types[TYPE]
            assert sent.repair_requests_received >= 1 and sent.repaired_sent == 1
            for node in (a, b, c):
                control = node.stats().control
                assert control.get("heartbeat_malformed", 0) == 0
                assert control.get("repair_malformed", 0) == 0
            assert c.stats().control.get("repair_requests_carried", 0) == 0

    asyncio.run(scenario())


def _heartbeat(node_id: bytes, seq: int, repairs: list[RepairRequest]) -> bytes:
    name = "ganglion.control.Heartbeat"
    mtype = lookup(name)
    assert mtype is not None
    hb = Heartbeat(name="f", role="observer", version="9", clock_synced=True,
                   repairs=repairs)
    packer = Packer(node_id=node_id, type_name=name, fingerprint=mtype.fingerprint, boot=3,
                    first_seq=seq)
    return packer.build_one(encode_payload(hb), time.time_ns())


def test_a_request_riding_another_nodes_heartbeat_is_answered_and_suppresses_ours(
        tmp_path: object, free_udp_port: int) -> None:
    # b's heartbeats are 4 s apart and its requests wait for them (carry wait 5 s):
    # a hand-made peer's heartbeat carries the request for b's hole first. a answers it
    # as it answers any request (one repair, to the group), b takes the request as its
    # own attempt and neither carries nor sends one.
    port = free_udp_port
    forger = b"\xee" * 8

    async def scenario() -> None:
        a = make(tmp_path, port, "a")
        b = make(tmp_path, port, "b", heartbeat_seconds=4.0, peer_timeout=20.0)
        async with running(a, b):
            requester = b._requester
            assert requester is not None
            # (retries late: a loaded machine must not retry before the answer is in)
            requester.config = RequesterConfig(carry_wait=5.0, retry=2.0, max_retry=2.0)
            got = collector(b, a.node_id)
            await until(lambda: TYPE in b.types(), "b knows the group", timeout=10.0)
            for base in range(0, 30, 3):
                # b sends an early heartbeat now and then (a peer asking for proof of
                # liveness); one leaving during the hole's delay carries its request:
                # then the test makes another hole.
                seq, boot = await make_hole(a, got, base)
                await until(lambda b=base: requester.riding == 1  # type: ignore[misc]
                            or any(v == b + 1 for v, *_ in got), "riding or repaired",
                            timeout=5.0)
                if requester.riding == 1:
                    break
            else:
                raise AssertionError("b's request never waited for its heartbeat")
            before = requester.stats()[(a.node_id, TYPE, boot)]
            repaired_before = a.stats().types[TYPE].repaired_sent
            carried_before = b.stats().control.get("repair_requests_carried", 0)
            request = RepairRequest(to=int.from_bytes(a.node_id, "big"), type_name=TYPE,
                                    boot=boot, ranges=[[seq, seq]])
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                  socket.inet_aton(LO))
                sender.sendto(_heartbeat(forger, 0, [request]),
                              (defaults.CONTROL_GROUP, port + 1))
            finally:
                sender.close()
            await until(lambda: any(v == base + 1 for v, *_ in got), "the hole repaired",
                        timeout=3.0)
            assert requester.riding == 0
            stream = requester.stats()[(a.node_id, TYPE, boot)]
            assert stream.repair_requests_suppressed == before.repair_requests_suppressed + 1
            assert stream.repair_requests_sent == before.repair_requests_sent
            control = b.stats().control
            assert control.get("repair_requests_carried", 0) == carried_before
            assert control.get("repair_requests_sent", 0) == 0
            assert a.stats().types[TYPE].repaired_sent == repaired_before + 1

    asyncio.run(scenario())
