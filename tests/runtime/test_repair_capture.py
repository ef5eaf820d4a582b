"""The publish side of repair: every published message of a type with history on is kept.

Endpoints on loopback with a :class:`ganglion.repair.History`: what the history holds
after publishing is compared with what a subscriber on another endpoint received
(the same numbers, timestamps and payload bytes), on the compiled lane and on the
Python path (the lane switched off), sent or not (no interest), held while the
group is unknown, and for a plugin's payload. A type whose history is off, and a
replaying endpoint, keep nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import pytest
from waits import run, until

from ganglion.repair import History, HistoryLimits
from ganglion.repair.history import ENTRY, keep_append
from ganglion.runtime import endpoint as endpoint_mod
from ganglion.runtime._accel import speedups
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import encode_message, message, type_of

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = "127.0.0.1"
NAME = "test_repair_capture.Reading"


@message(NAME)
@dataclasses.dataclass
class Reading:
    value: int
    note: str = ""


def held(history: History, name: str = NAME) -> list[tuple[int, int, bytes]]:
    return history.since(name, 0, time.monotonic())


@pytest.mark.parametrize("lane", [True, False], ids=["compiled", "python"])
def test_what_is_sent_is_kept_exactly_as_sent(free_udp_port: int, test_group: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              lane: bool) -> None:
    if lane and speedups is None:
        pytest.skip("ganglion._speedups is not built")
    if not lane:
        monkeypatch.setattr(endpoint_mod, "speedups", None)

    async def main() -> None:
        history = History()
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            history=history) as tx, \
                Endpoint(interface=LO, port=free_udp_port,
                         group_for=lambda _n: test_group) as rx:
            got: list[tuple[Any, MessageInfo]] = []
            rx.subscribe(Reading, lambda m, i: got.append((m, i)))
            await asyncio.sleep(0.05)
            count = 0
            for burst in (1, 1, 40, 1, 300):  # alone while idle, batched under load
                for _ in range(burst):
                    tx.publish(Reading(count, "x" * (count % 7)))
                    count += 1
                await asyncio.sleep(0.02)
            await tx.flush()
            await until(lambda: len(got) == count, "every message", timeout=5.0,
                        interval=0.002)
            (route,) = tx._pub.routes().values()
            assert (route.lane is not None) == lane
            kept = held(history)
            mtype = type_of(Reading)
            assert [(s, t) for s, t, _p in kept] == [(i.seq, i.sent_ns) for _m, i in got]
            assert [p for _s, _t, p in kept] == [encode_message(m, mtype) for m, _i in got]
            assert history.stats()["history_messages"] == count

    run(main(), timeout=20.0)


def test_messages_nobody_wants_and_held_ones_are_kept_with_their_numbers(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        history = History()
        groups: dict[str, str] = {}
        async with Endpoint(interface=LO, port=free_udp_port, group_for=groups.get,
                            remote_interest=lambda _n: False, history=history) as tx:
            tx.publish(Reading(0))  # no group yet: held
            tx.publish(Reading(1))
            groups[NAME] = test_group
            tx.set_group(NAME, test_group)
            for n in (2, 3, 4):  # nobody wants them: numbered, kept, not sent
                tx.publish(Reading(n))
            await asyncio.sleep(0.01)
            assert [s for s, _t, _p in held(history)] == [0, 1, 2, 3, 4]
            assert tx.stats().datagrams_sent == 0
            assert tx.stats().history_types[NAME][0] == 5

    run(main(), timeout=20.0)


def test_a_plugins_payload_and_a_unicast_reply_are_kept(free_udp_port: int,
                                                        test_group: str) -> None:
    async def main() -> None:
        history = History()
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            history=history) as tx:
            payload = bytes.fromhex("a16176182a")  # {"v": 42}
            assert tx.publish_payload("test_repair_capture.Plugin", payload)
            datagram = tx.datagram_for(Reading(7))
            await asyncio.sleep(0.01)
            assert held(history, "test_repair_capture.Plugin")[0][2] == payload
            assert held(history)[0][0] == 0 and held(history)[0][2] in datagram

    run(main(), timeout=20.0)


def test_a_type_whose_history_is_off_and_a_replayer_keep_nothing(free_udp_port: int,
                                                                  test_group: str) -> None:
    async def main() -> None:
        history = History(per_type={NAME: HistoryLimits(max_bytes=0, max_age=60)})
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            remote_interest=lambda _n: False, history=history) as tx:
            tx.publish(Reading(1))
            tx.publish(Reading(2))
            (route,) = tx._pub.routes().values()
            assert route.kept is None
            tx.set_history_limits(NAME, HistoryLimits())  # turned on: the route is remade
            tx.publish(Reading(3))
            await asyncio.sleep(0.01)
            assert [s for s, _t, _p in held(history)] == [2]
        replayed = History()
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            replay=True, history=replayed) as rp:
            rp.publish(Reading(1))
            await asyncio.sleep(0.01)
            assert replayed.stats()["history_messages"] == 0

    run(main(), timeout=20.0)


def test_the_compiled_lane_appends_exactly_what_keep_append_would_and_nothing_when_it_declines(
        ) -> None:
    if speedups is None:
        pytest.skip("ganglion._speedups is not built")
    from _lane_harness import SAMPLE, Sample, Sender, Wire, sample_packer

    wire = Wire()
    try:
        plan = type_of(Sample).plan
        host, port = wire.rx.getsockname()
        kept: list[Any] = [bytearray(), []]
        reference: list[Any] = [bytearray(), []]
        next_seq = {SAMPLE: 10}
        lane = speedups.SendLane(next_seq, SAMPLE, Sender(wire.tx), type("Out", (), {
            "busy": False})(), sample_packer(), host, port, plan, 1300, False, kept)
        for n in range(3):
            done = lane.publish(Sample(n, 1.0, True, "a" * n, b""))
            assert done is not None
            payload, seq, now_ns, _sent, _full = done
            keep_append(reference, seq, now_ns, payload)
            next_seq[SAMPLE] += 1
        assert kept == reference and len(kept[0]) == 3 * ENTRY.size and len(kept[1]) == 3
        next_seq[SAMPLE] = 15  # numbers the packer never saw: the lane declines
        assert lane.publish(Sample(9, 1.0, True, "b", b"")) is None
        assert kept == reference
        for bad in ([], [bytearray()], [b"", []], (bytearray(), []), [bytearray(), ()]):
            with pytest.raises(TypeError):
                speedups.SendLane(next_seq, SAMPLE, Sender(wire.tx), object(), sample_packer(),
                                  host, port, plan, 1300, False, bad)
    finally:
        wire.close()
