"""The publish route (the cached sending path of a class) keeps every check of the full path.

Once a class has been sent, ``publish`` takes a short path; these tests publish
enough to be on it, then check that a bad value, an oversized message, a group
move, interest switched off and back on, and a gap in the numbers all behave
as on the full path: the same errors, no sequence number consumed by a refused
message, datagrams to the new group, numbers as given at publish.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ganglion.errors import EncodeError, MessageTooLarge
from ganglion.runtime import endpoint
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import message, type_of

pytestmark = pytest.mark.usefixtures("multicast_loopback", "runtime_path")

LO = "127.0.0.1"
NAME = "test_routes.Reading"


@message(NAME)
@dataclasses.dataclass
class Reading:
    value: int
    note: str = ""


def run(coro: Coroutine[Any, Any, None], timeout: float = 15.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


def test_refused_messages_on_the_route_raise_and_take_no_number(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            max_datagram=200) as tx, \
                Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group) as rx:
            seqs: list[int] = []
            rx.subscribe(Reading, lambda _m, i: seqs.append(i.seq))
            tx.publish(Reading(0))
            tx.publish(Reading(1))  # on the route now
            assert Reading in tx._pub.routes()
            with pytest.raises(EncodeError, match="value"):
                tx.publish(Reading("nope"))  # type: ignore[arg-type]
            with pytest.raises(MessageTooLarge):
                tx.publish(Reading(2, "x" * 300))
            tx.publish(Reading(3))
            await wait_until(lambda: len(seqs) == 3)
            assert seqs == [0, 1, 2]
            assert rx.stats().lost == 0

    run(main())


def test_a_group_move_takes_the_route_to_the_new_group(
        free_udp_port: int, make_group: Callable[[], str]) -> None:
    old, new = make_group(), make_group()

    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: old) as tx, \
                Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: new) as rx:
            got: list[tuple[Any, MessageInfo]] = []
            rx.subscribe(Reading, lambda m, i: got.append((m, i)))
            tx.publish(Reading(0))
            tx.publish(Reading(1))  # to the old group, which rx does not listen to
            await asyncio.sleep(0.05)
            assert got == []
            tx.set_group(NAME, new)
            await asyncio.sleep(0)
            tx.publish(Reading(2))
            tx.publish(Reading(3))
            await wait_until(lambda: len(got) == 2)
            assert [(m.value, i.seq) for m, i in got] == [(2, 2), (3, 3)]

    run(main())


def test_interest_off_then_on_sends_with_the_numbers_given_at_publish(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group,
                            remote_interest=lambda _n: True) as tx, \
                Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group) as rx:
            got: list[int] = []
            rx.subscribe(Reading, lambda _m, i: got.append(i.seq))
            for i in range(3):
                tx.publish(Reading(i))
            await wait_until(lambda: len(got) == 3)
            tx.set_remote_interest(NAME, False)
            assert not tx._pub.routes()
            for i in range(3, 6):
                tx.publish(Reading(i))  # numbered, not sent
            tx.set_remote_interest(NAME, True)
            for i in range(6, 9):
                tx.publish(Reading(i))
            await wait_until(lambda: len(got) == 6)
            assert got == [0, 1, 2, 6, 7, 8]
            assert tx.published() == {NAME: 9}
            last = tx.last_published(NAME)
            assert last is not None and last[2] == 8

    run(main())


def test_yield_on_send_can_be_turned_off() -> None:
    from ganglion.runtime import _outgoing

    # No subscription: no receive socket is opened, so the ports are never bound.
    async def main() -> None:
        async with Endpoint(interface="127.0.0.1", port=47870) as on, \
                Endpoint(interface="127.0.0.1", port=47872, yield_on_send=False) as off:
            assert on._out is not None and off._out is not None
            assert on._out._after_idle_send is _outgoing.YIELD_CPU
            assert off._out._after_idle_send is None
            # The compiled send lane yields itself right after its send, or not.
            assert on._out.yields_cpu is (_outgoing.YIELD_CPU is not None)
            assert off._out.yields_cpu is False
            if endpoint.speedups is not None and type_of(Reading).plan is not None:
                for ep, yields in ((on, on._out.yields_cpu), (off, False)):
                    ep._groups[NAME] = "239.255.77.1"
                    packer = ep._out.packer(NAME, type_of(Reading).fingerprint)
                    lane = ep._send_lane(NAME, type_of(Reading), packer, 1300)
                    assert lane is not None and lane.yields_cpu is yields

    asyncio.run(asyncio.wait_for(main(), 10))


def test_publish_is_the_publishers_own_and_the_documented_method_does_the_same(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group) as tx, \
                Endpoint(interface=LO, port=free_udp_port, group_for=lambda _n: test_group) as rx:
            seqs: list[int] = []
            rx.subscribe(Reading, lambda _m, i: seqs.append(i.seq))
            assert tx.publish == tx._pub.publish  # no frame of the endpoint's per message
            assert tx.publish(Reading(0)) == NAME
            assert Endpoint.publish(tx, Reading(1)) == NAME
            await wait_until(lambda: len(seqs) == 2)
            assert seqs == [0, 1]

    run(main())
