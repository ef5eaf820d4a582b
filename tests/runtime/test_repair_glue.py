"""The control channel's repair glue between real nodes on loopback (docs/protocol.md 7.7).

Tail loss: the last messages of a burst never arrive, and no later message shows the
hole; the publisher's heartbeat ``tails`` do, and the subscriber asks. Malformed and
forged repair input, sent as datagrams by a hand-made peer, is counted and dropped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time

import cbor2
import pytest
from _repair_support import LO, make_node, publish_unsent, ready_to_send, running
from waits import until

from ganglion import defaults
from ganglion.repair import HistoryRequest, Repair, RepairRequest
from ganglion.runtime.control_messages import Heartbeat
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import encode_payload, lookup, message
from ganglion.wire import Packer

pytestmark = pytest.mark.usefixtures("multicast_loopback")

TYPE = "test_repair_glue.Reading"


@message(TYPE)
@dataclasses.dataclass
class Reading:
    value: int


make = make_node


def test_the_lost_tail_of_a_burst_is_found_by_the_heartbeat_and_repaired(
        tmp_path: object, free_udp_port: int) -> None:
    port = free_udp_port

    async def scenario() -> None:
        a, b = make(tmp_path, port, "a"), make(tmp_path, port, "b")
        async with running(a, b):
            got: list[tuple[int, bool]] = []

            def on_reading(msg: Reading, info: MessageInfo) -> None:
                if info.sender == a.node_id:
                    got.append((msg.value, info.repaired))

            b.subscribe(Reading, callback=on_reading)
            await ready_to_send(a, TYPE, b)
            await a.publish(Reading(0))
            await until(lambda: len(got) == 1, "the first reading")
            # the burst's end, kept but not sent, and nothing follows it
            await publish_unsent(a, TYPE, Reading(1), Reading(2))
            await until(lambda: len(got) == 3, "the tail, repaired", timeout=5.0)
            assert got == [(0, False), (1, True), (2, True)]
            await asyncio.sleep(0.6)  # later heartbeats repeat the tail: nothing more
            assert len(got) == 3
            assert b.stats().control["tail_gaps"] >= 1
            assert b.stats().types[TYPE].permanently_lost == 0

    asyncio.run(scenario())


def test_a_hole_is_asked_for_at_once_not_at_the_next_heartbeat(
        tmp_path: object, free_udp_port: int) -> None:
    # Heartbeats 4 s apart: the gap reported by the receive path itself must arm the
    # repair timer (a request waits its random delay, at most 100 ms, not a heartbeat).
    port = free_udp_port

    async def scenario() -> None:
        a = make(tmp_path, port, "a", heartbeat_seconds=4.0, peer_timeout=20.0)
        b = make(tmp_path, port, "b", heartbeat_seconds=4.0, peer_timeout=20.0)
        async with running(a, b):
            got: list[int] = []
            b.subscribe(Reading, callback=lambda msg, info: got.append(msg.value))
            await ready_to_send(a, TYPE, b, timeout=20.0)
            await a.publish(Reading(0))
            await until(lambda: 0 in got, "the first reading")
            await publish_unsent(a, TYPE, Reading(1))
            await a.publish(Reading(2))
            await until(lambda: 2 in got, "the reading after the hole")
            start = time.monotonic()
            await until(lambda: 1 in got, "the repaired reading", timeout=3.0)
            assert time.monotonic() - start < 1.5

    asyncio.run(scenario())


def _datagram(msg: object, node_id: bytes, seq: int, boot: int = 7) -> bytes:
    name = {Repair: "ganglion.control.Repair", RepairRequest: "ganglion.control.RepairRequest",
            HistoryRequest: "ganglion.control.HistoryRequest",
            Heartbeat: "ganglion.control.Heartbeat"}[type(msg)]
    mtype = lookup(name)
    assert mtype is not None
    packer = Packer(node_id=node_id, type_name=name, fingerprint=mtype.fingerprint, boot=boot,
                    first_seq=seq)
    return packer.build_one(encode_payload(msg), time.time_ns())


def test_malformed_repair_input_is_counted_and_dropped(tmp_path: object,
                                                       free_udp_port: int) -> None:
    port = free_udp_port
    forger = b"\xee" * 8

    async def scenario() -> None:
        b = make(tmp_path, port, "b")
        async with b:
            bad = [
                # lists of different lengths
                Repair(type_name=TYPE, fingerprint=b"12345678", boot=1, seqs=[1, 2],
                       sent_ns=[1], payloads=[b"\xa0", b"\xa0"]),
                # numbers not ascending
                Repair(type_name=TYPE, fingerprint=b"12345678", boot=1, seqs=[2, 1],
                       sent_ns=[1, 1], payloads=[b"\xa0", b"\xa0"]),
                # a fingerprint of the wrong size, an impossible type name
                Repair(type_name=TYPE, fingerprint=b"1", boot=1),
                Repair(type_name="no such name!", fingerprint=b"12345678", boot=1),
                # ranges overlapping, too many numbers
                RepairRequest(to=int.from_bytes(b.node_id, "big"), type_name=TYPE, boot=1,
                              ranges=[[1, 5], [3, 9]]),
                RepairRequest(to=1, type_name=TYPE, boot=1, ranges=[[0, 100_000]]),
            ]
            tails_bad = Heartbeat(name="f", role="member", version="9", clock_synced=True)
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sender.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                                  socket.inet_aton(LO))
                for seq, msg in enumerate(bad):
                    sender.sendto(_datagram(msg, forger, seq),
                                  (defaults.CONTROL_GROUP, port + 1))
                await until(lambda: b.stats().control.get("repair_malformed", 0) >= len(bad),
                            "every malformed message counted")
                # a heartbeat whose tails are not a list of [name, number] entries
                payload = encode_payload(tails_bad)
                item = cbor2.loads(payload)
                item["tails"] = [{"type_name": TYPE, "last_seq": -5}]
                hb = lookup("ganglion.control.Heartbeat")
                assert hb is not None
                packer = Packer(node_id=forger, type_name="ganglion.control.Heartbeat",
                                fingerprint=hb.fingerprint, boot=7, first_seq=0)
                sender.sendto(packer.build_one(cbor2.dumps(item), time.time_ns()),
                              (defaults.CONTROL_GROUP, port + 1))
                await until(lambda: b.stats().control.get("heartbeat_malformed", 0)
                            + b.stats().control.get("tails_malformed", 0) >= 1,
                            "the heartbeat's tails refused")
            finally:
                sender.close()
            control = b.stats().control
            assert control.get("repaired_received", 0) == 0
            assert control.get("repairs_sent", 0) == 0  # nothing answered

    asyncio.run(scenario())
