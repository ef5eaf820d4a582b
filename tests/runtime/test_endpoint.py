"""Endpoint over real loopback multicast: publish/subscribe, local delivery, batching, stats.

Each test runs its endpoints on its own port and multicast group(s) (``group_for``
maps the test's types onto them), sends only via 127.0.0.1, and bounds every
wait. "Nothing else arrived" is checked with a barrier: a valid message sent
after the one under test on the same socket and group; once the barrier is
delivered, everything sent before it has been processed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ganglion.errors import (
    ConfigError,
    EncodeError,
    LocalError,
    MessageTooLarge,
    TypeNameError,
    TypeRegistrationError,
)
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, encode_payload, lookup, message
from ganglion.wire import Packer

pytestmark = pytest.mark.usefixtures("multicast_loopback", "runtime_path")

LO = "127.0.0.1"


@message("test_endpoint.Reading")
@dataclasses.dataclass
class Reading:
    sensor: str
    value: float


@message("test_endpoint.Other")
@dataclasses.dataclass
class Other:
    n: int


@message("test_endpoint.Blob")
@dataclasses.dataclass
class Blob:
    data: bytes


@dataclasses.dataclass
class Unregistered:
    x: int


def run(coro: Coroutine[Any, Any, None], timeout: float = 15.0) -> None:
    """Run a test coroutine on a fresh loop, failing it after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``cond`` on the loop until it holds; fail after ``timeout`` seconds."""

    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


class Inbox:
    """A subscriber callback that records messages and their infos."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, MessageInfo]] = []

    def __call__(self, msg: Any, info: MessageInfo) -> None:
        self.items.append((msg, info))

    @property
    def msgs(self) -> list[Any]:
        return [m for m, _ in self.items]

    @property
    def infos(self) -> list[MessageInfo]:
        return [i for _, i in self.items]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        await wait_until(lambda: len(self.items) >= count, timeout)


def endpoint(port: int, group: str, **kw: Any) -> Endpoint:
    """An endpoint on loopback mapping every type to ``group``."""
    kw.setdefault("group_for", lambda _name: group)
    return Endpoint(interface=LO, port=port, **kw)


def raw_sender() -> socket.socket:
    """A plain UDP socket multicasting via loopback only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return sock


def datagram(payloads: list[bytes], *, seq: int = 0, type_name: str = "test_endpoint.Reading",
             node_id: bytes = b"\xaa" * 8, boot: int = 1, fingerprint: bytes | None = None,
             key: bytes | None = None) -> bytes:
    """One hand-made datagram carrying ``payloads`` from ``seq`` on."""
    if fingerprint is None:
        known = lookup(type_name)
        fingerprint = known.fingerprint if known else bytes(8)
    packer = Packer(node_id=node_id, type_name=type_name, fingerprint=fingerprint,
                    first_seq=seq, boot=boot, key=key)
    for i, payload in enumerate(payloads):
        assert packer.add(payload, 1_700_000_000_000_000_000 + i)
    return packer.build()


def reading_payload(value: float) -> bytes:
    return encode_payload(Reading("raw", value))


# -- publish and receive ---------------------------------------------------------------


def test_remote_subscriber_receives_published_messages_with_info(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        async with endpoint(free_udp_port, test_group, boot=42) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            for i in range(5):
                tx.publish(Reading("probe", float(i)))
            await tx.flush()
            await inbox.wait_for(5)
            assert inbox.msgs == [Reading("probe", float(i)) for i in range(5)]
            assert all(type(m) is Reading for m in inbox.msgs)
            infos = inbox.infos
            assert [i.seq for i in infos] == list(range(5))
            assert {i.sender for i in infos} == {tx.node_id}
            assert {i.boot for i in infos} == {42}
            assert {i.type_name for i in infos} == {"test_endpoint.Reading"}
            assert not any(i.local for i in infos)
            assert all(i.source is not None and i.source[0] == LO for i in infos)
            assert all(i.sent_ns <= i.received_ns for i in infos)
            stats = rx.stats()
            assert stats.received == 5
            assert stats.lost == stats.duplicates == stats.decode_errors == stats.bad_mac == 0
            stream = stats.streams[(tx.node_id, "test_endpoint.Reading")]
            assert (stream.received, stream.highest, stream.boot) == (5, 4, 42)

    run(main())


def test_local_subscriber_gets_the_object_itself_and_not_its_looped_back_copy(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        local = Inbox()
        remote = Inbox()
        async with endpoint(free_udp_port, test_group) as ep, \
                endpoint(free_udp_port, test_group) as other:
            ep.subscribe(Reading, local)
            other.subscribe(Reading, remote)
            sent = [Reading("x", 1.5), Reading("x", 2.5), Reading("x", 3.5)]
            for msg in sent:
                ep.publish(msg)
            # Delivered synchronously inside publish, without encoding.
            assert len(local.items) == 3
            assert all(got is msg for got, msg in zip(local.msgs, sent, strict=True))
            assert all(i.local and i.source is None and i.sender == ep.node_id
                       for i in local.infos)
            assert [i.seq for i in local.infos] == [0, 1, 2]
            await ep.flush()
            await remote.wait_for(3)
            # The remote copy proves the datagrams went out on the group ep listens
            # to; wait until ep's own socket read them back too, then check it
            # dropped its own datagrams.
            await wait_until(lambda: ep.stats().receiver.datagrams >= ep.stats().datagrams_sent)
            assert len(local.items) == 3
            assert ep.stats().received == 0
            assert ep.stats().streams == {}
            assert [i.seq for i in remote.infos] == [0, 1, 2]

    run(main())


def test_burst_is_batched_into_fewer_datagrams_and_arrives_complete(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            for i in range(50):
                tx.publish(Reading("b", float(i)))
            await tx.flush()
            await inbox.wait_for(50)
            stats = tx.stats()
            assert stats.published == 50
            assert stats.datagrams_sent < 10
            assert stats.sender.sent == stats.datagrams_sent
            assert [m.value for m in inbox.msgs] == [float(i) for i in range(50)]
            assert rx.stats().receiver.datagrams == stats.datagrams_sent

    run(main())


def test_burst_of_large_messages_shares_system_calls_and_arrives_complete_in_order(
        free_udp_port: int, test_group: str) -> None:
    # 1,000-byte messages cannot share a datagram; under load they leave in trains of
    # segmented sends (UDP GSO) and are read back in coalesced runs (UDP_GRO), where
    # the kernel has both. Either way every message arrives once, in order.
    async def main() -> None:
        inbox = Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Blob, inbox)
            for burst in range(10):
                for i in range(30):
                    tx.publish(Blob(bytes([burst, i]) * 500))
                await asyncio.sleep(0)
            await tx.flush()
            await inbox.wait_for(300)
            assert [m.data[:2] for m in inbox.msgs] == [bytes([b, i]) for b in range(10)
                                                        for i in range(30)]
            assert [info.seq for info in inbox.infos] == list(range(300))
            sent, received = tx.stats(), rx.stats()
            assert sent.datagrams_sent == sent.sender.sent == 300
            assert received.received == 300 and received.lost == 0
            if sent.sender.gso:
                assert sent.sender.segmented_sends >= 10 and sent.sender.segmented >= 280
                if received.receiver.gro:
                    assert received.receiver.coalesced >= 280

    run(main())


def test_message_published_alone_leaves_at_once(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group) as tx:
            tx.publish(Reading("a", 1.0))
            # Idle endpoint: the datagram is handed to the socket inside publish().
            assert tx.stats().datagrams_sent == 1
            assert tx.stats().sender.sent == 1

    run(main())


def test_two_types_on_one_group_reach_only_their_own_subscribers(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        readings, others = Inbox(), Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, readings)
            rx.subscribe("test_endpoint.Other", others)
            tx.publish(Other(1))
            tx.publish(Reading("r", 1.0))
            tx.publish(Other(2))
            await tx.flush()
            await others.wait_for(2)
            await readings.wait_for(1)
            assert others.msgs == [Other(1), Other(2)]
            assert readings.msgs == [Reading("r", 1.0)]

    run(main())


def test_datagrams_of_an_unsubscribed_type_sharing_the_group_are_ignored(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        readings = Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, readings)
            tx.publish(Other(1))
            await tx.flush()
            await asyncio.sleep(0)
            tx.publish(Reading("barrier", 0.0))
            await tx.flush()
            await readings.wait_for(1)
            stats = rx.stats()
            assert stats.received == 1
            assert stats.decode_errors == 0
            assert list(stats.streams) == [(tx.node_id, "test_endpoint.Reading")]

    run(main())


def test_each_type_goes_to_the_group_group_for_names(
        free_udp_port: int, make_group: Callable[[], str]) -> None:
    groups = {"test_endpoint.Reading": make_group(), "test_endpoint.Other": make_group()}

    async def main() -> None:
        readings = Inbox()
        async with endpoint(free_udp_port, "", group_for=groups.__getitem__) as tx, \
                endpoint(free_udp_port, "", group_for=groups.__getitem__) as rx:
            rx.subscribe(Reading, readings)
            assert rx.stats().receiver.groups == 1
            tx.publish(Other(1))  # to the other group: rx never joined it
            await tx.flush()
            tx.publish(Reading("r", 1.0))
            await tx.flush()
            await readings.wait_for(1)
            assert rx.stats().receiver.datagrams == 1

    run(main())


# -- subscriptions: join/leave, callbacks, async for -------------------------------------


def test_first_subscriber_joins_and_last_one_leaves(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group) as ep:
            assert ep.stats().receiver.groups == 0
            first = ep.subscribe(Reading, Inbox())
            assert ep.stats().receiver.groups == 1
            second = ep.subscribe("test_endpoint.Reading")
            assert ep.stats().receiver.groups == 1
            assert ep.subscribed() == {"test_endpoint.Reading"}
            first.close()
            assert ep.stats().receiver.groups == 1
            assert ep.subscribed() == {"test_endpoint.Reading"}
            second.close()
            assert ep.stats().receiver.groups == 0
            assert ep.subscribed() == frozenset()
            second.close()  # twice: no second leave
            assert ep.stats().receiver.groups == 0
            again = ep.subscribe(Reading, Inbox())
            assert ep.stats().receiver.groups == 1
            again.close()

    run(main())


def test_no_delivery_after_the_last_subscriber_left(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        gone, barrier = Inbox(), Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            sub = rx.subscribe(Reading, gone)
            rx.subscribe(Other, barrier)  # keeps the shared group joined
            sub.close()
            tx.publish(Reading("after", 1.0))
            await tx.flush()
            await asyncio.sleep(0)
            tx.publish(Other(0))
            await tx.flush()
            await barrier.wait_for(1)
            assert gone.items == []
            assert rx.stats().received == 1

    run(main())


def test_callback_exception_does_not_stop_other_subscribers_or_later_messages(
        free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        good = Inbox()

        def bad(_msg: Any, _info: MessageInfo) -> None:
            raise ValueError("subscriber bug")

        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            bad_sub = rx.subscribe(Reading, bad)
            rx.subscribe(Reading, good)
            local_bad = tx.subscribe(Reading, bad)
            for i in range(4):
                tx.publish(Reading("c", float(i)))  # a failing local callback must not raise here
            await tx.flush()
            await good.wait_for(4)
            assert len(good.items) == 4
            assert bad_sub.callback_errors == 4
            assert local_bad.callback_errors == 4
            assert rx.stats().receiver.callback_errors == 0
            assert rx.stats().received == 4

    with caplog.at_level(logging.ERROR, logger="ganglion.runtime.subscription"):
        run(main())
    assert any("subscriber bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_async_for_subscription_receives_remote_messages(free_udp_port: int,
                                                        test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            sub = rx.subscribe(Reading)
            for i in range(3):
                tx.publish(Reading("q", float(i)))
            await tx.flush()
            got = []
            async for msg in sub:
                got.append(msg.value)
                if len(got) == 3:
                    break
            assert got == [0.0, 1.0, 2.0]

    run(main())


def test_slow_async_reader_loses_the_oldest_and_stats_count_it(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            sub = rx.subscribe(Reading, maxsize=3)
            seen = Inbox()
            rx.subscribe(Reading, seen)
            for i in range(10):
                tx.publish(Reading("s", float(i)))
            await tx.flush()
            await seen.wait_for(10)
            assert rx.stats().queue_dropped == 7
            got = [(await sub.get())[0].value for _ in range(3)]
            assert got == [7.0, 8.0, 9.0]
            sub.close()
            # Drops of a closed subscription stay in the endpoint's total.
            assert rx.stats().queue_dropped == 7

    run(main())


def test_close_ends_async_for_readers(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        ep = endpoint(free_udp_port, test_group)
        await ep.start()
        sub = ep.subscribe(Reading)
        ep.publish(Reading("local", 1.0))

        async def consume() -> list[Any]:
            return [msg async for msg in sub]

        task = asyncio.ensure_future(consume())
        await asyncio.sleep(0)
        await ep.close()
        assert await asyncio.wait_for(task, 2.0) == [Reading("local", 1.0)]
        assert sub.closed

    run(main())


# -- records and schemas ----------------------------------------------------------------


def test_record_of_a_type_without_a_class_is_published_and_received(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        local, remote = Inbox(), Inbox()
        rec = Record("test_endpoint.NoClass", {"a": 1, "b": "two", "c": [1.5, None]})
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            tx.subscribe("test_endpoint.NoClass", local)
            rx.subscribe("test_endpoint.NoClass", remote)
            tx.publish(rec)
            tx.publish(Record("test_endpoint.NoClass", {"a": 2}))
            await tx.flush()
            await remote.wait_for(2)
            assert local.msgs[0] is rec
            assert remote.msgs == [rec, Record("test_endpoint.NoClass", {"a": 2})]
            assert all(type(m) is Record for m in remote.msgs)
            assert rx.stats().schema_mismatches == 0

    run(main())


def test_record_of_a_registered_type_arrives_as_the_class(free_udp_port: int,
                                                         test_group: str) -> None:
    async def main() -> None:
        local, remote = Inbox(), Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            tx.subscribe(Reading, local)
            rx.subscribe(Reading, remote)
            tx.publish(Record("test_endpoint.Reading", {"sensor": "r", "value": 2.5}))
            await tx.flush()
            await remote.wait_for(1)
            assert remote.msgs == [Reading("r", 2.5)]
            # Local subscribers see what remote ones see.
            assert local.msgs == [Reading("r", 2.5)]
            assert rx.stats().schema_mismatches == 0
            assert rx.stats().decode_errors == 0

    run(main())


def test_record_that_does_not_fit_its_registered_class_is_refused_at_publish(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        local = Inbox()
        async with endpoint(free_udp_port, test_group) as tx:
            tx.subscribe(Reading, local)
            with pytest.raises(EncodeError, match=r"test_endpoint\.Reading"):
                tx.publish(Record("test_endpoint.Reading", {"sensor": 5}))
            assert local.items == []
            assert tx.stats().published == 0
            assert tx.stats().datagrams_sent == 0

    run(main())


def test_record_with_an_invalid_type_name_is_refused(free_udp_port: int,
                                                     test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group) as tx:
            with pytest.raises(TypeNameError):
                tx.publish(Record("nodots", {"a": 1}))
            assert tx.stats().published == 0

    run(main())


def test_schema_mismatch_is_counted_per_message_and_logged_once(
        free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        inbox = Inbox()
        other_schema = b"\x5a" * 8
        assert lookup("test_endpoint.Reading").fingerprint != other_schema  # type: ignore[union-attr]
        async with endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            with raw_sender() as tx:
                tx.sendto(datagram([reading_payload(1.0), reading_payload(2.0)],
                                   fingerprint=other_schema), (test_group, free_udp_port))
                tx.sendto(datagram([reading_payload(3.0)], seq=2, fingerprint=other_schema),
                          (test_group, free_udp_port))
                await inbox.wait_for(3)
            # Fields still fit the class: decoded leniently into it.
            assert [m.value for m in inbox.msgs] == [1.0, 2.0, 3.0]
            assert all(type(m) is Reading for m in inbox.msgs)
            assert rx.stats().schema_mismatches == 3

    with caplog.at_level(logging.WARNING, logger="ganglion.runtime.endpoint"):
        run(main())
    logged = [r for r in caplog.records if "schema fingerprint" in r.getMessage()]
    assert len(logged) == 1
    assert "5a5a5a5a5a5a5a5a" in logged[0].getMessage()


def test_mismatched_schema_that_does_not_fit_arrives_as_record(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        async with endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            with raw_sender() as tx:
                payload = encode_payload(Record("test_endpoint.Reading", {"celsius": 4.0}))
                tx.sendto(datagram([payload], fingerprint=b"\x01" * 8),
                          (test_group, free_udp_port))
                await inbox.wait_for(1)
            assert inbox.msgs == [Record("test_endpoint.Reading", {"celsius": 4.0})]
            assert rx.stats().schema_mismatches == 1
            assert rx.stats().decode_errors == 0

    run(main())


# -- sequence tracking -------------------------------------------------------------------


def test_gaps_duplicates_and_late_arrivals_are_tracked_per_sender(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        dest = (test_group, free_udp_port)
        async with endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            with raw_sender() as tx:
                tx.sendto(datagram([reading_payload(0), reading_payload(1)], seq=0), dest)
                tx.sendto(datagram([reading_payload(3)], seq=3), dest)  # 2 is missing
                await inbox.wait_for(3)
                assert rx.stats().lost == 1
                tx.sendto(datagram([reading_payload(1)], seq=1), dest)  # duplicate
                tx.sendto(datagram([reading_payload(2)], seq=2), dest)  # late, fills the gap
                await inbox.wait_for(4)
                # A second sender has its own stream.
                tx.sendto(datagram([reading_payload(9)], seq=5, node_id=b"\xbb" * 8), dest)
                await inbox.wait_for(5)
            assert [m.value for m in inbox.msgs] == [0.0, 1.0, 3.0, 2.0, 9.0]
            assert [i.seq for i in inbox.infos] == [0, 1, 3, 2, 5]
            stats = rx.stats()
            assert (stats.received, stats.lost, stats.duplicates, stats.reordered) == (5, 0, 1, 1)
            assert stats.streams[(b"\xaa" * 8, "test_endpoint.Reading")].received == 4
            assert stats.streams[(b"\xbb" * 8, "test_endpoint.Reading")].received == 1

    run(main())


def test_sender_restart_with_a_higher_boot_is_delivered(free_udp_port: int,
                                                       test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        dest = (test_group, free_udp_port)
        async with endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            with raw_sender() as tx:
                tx.sendto(datagram([reading_payload(0), reading_payload(1)], boot=5), dest)
                tx.sendto(datagram([reading_payload(2)], boot=6), dest)  # restarted: seq 0 again
                await inbox.wait_for(3)
            assert [i.boot for i in inbox.infos] == [5, 5, 6]
            stream = rx.stats().streams[(b"\xaa" * 8, "test_endpoint.Reading")]
            assert (stream.restarts, stream.boot, stream.duplicates) == (1, 6, 0)

    run(main())


# -- publish errors and lifecycle ---------------------------------------------------------


def test_message_too_large_is_refused_at_publish_and_nothing_is_sent(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        local = Inbox()
        async with endpoint(free_udp_port, test_group, max_datagram=600) as tx:
            tx.subscribe(Blob, local)
            with pytest.raises(MessageTooLarge) as caught:
                tx.publish(Blob(bytes(700)))
            assert "600" in str(caught.value)
            assert local.items == []
            stats = tx.stats()
            assert (stats.published, stats.datagrams_sent) == (0, 0)
            tx.publish(Blob(bytes(100)))  # still usable, and numbering was not consumed
            assert [i.seq for i in local.infos] == [0]
            assert tx.stats().datagrams_sent == 1

    run(main())


def test_message_that_fits_unsigned_but_not_with_a_mac_is_refused_with_a_key(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group, max_datagram=300) as plain, \
                endpoint(free_udp_port, test_group, max_datagram=300, key=bytes(32)) as keyed:
            size = 1
            while True:  # the largest blob that fits without a MAC
                try:
                    plain.publish(Blob(bytes(size + 1)))
                except MessageTooLarge:
                    break
                size += 1
            plain.publish(Blob(bytes(size)))
            with pytest.raises(MessageTooLarge):
                keyed.publish(Blob(bytes(size)))

    run(main())


def test_unregistered_class_and_bad_names_are_refused(free_udp_port: int,
                                                      test_group: str) -> None:
    async def main() -> None:
        async with endpoint(free_udp_port, test_group) as ep:
            with pytest.raises(TypeRegistrationError):
                ep.publish(Unregistered(1))
            with pytest.raises(TypeRegistrationError):
                ep.subscribe(Unregistered)
            with pytest.raises(TypeNameError):
                ep.subscribe("not a name")
            with pytest.raises(EncodeError):
                ep.publish(Reading("x", "not a float"))  # type: ignore[arg-type]
            assert ep.stats().published == 0
            assert ep.subscribed() == frozenset()

    run(main())


def test_group_that_is_not_multicast_is_refused_at_publish(free_udp_port: int) -> None:
    async def main() -> None:
        local = Inbox()
        async with endpoint(free_udp_port, "10.1.2.3") as ep:
            with pytest.raises(ConfigError):
                ep.subscribe(Reading, local)
            with pytest.raises(ConfigError):
                ep.publish(Reading("x", 1.0))
            stats = ep.stats()
            assert (stats.published, stats.datagrams_sent, stats.sender.sent) == (0, 0, 0)

    run(main())


def test_subscriber_that_publishes_the_same_type_sees_consistent_sequence_numbers(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        local, remote = Inbox(), Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            def echo(msg: Reading, info: MessageInfo) -> None:
                local(msg, info)
                if msg.sensor == "ping":
                    tx.publish(Reading("pong", msg.value))

            tx.subscribe(Reading, echo)
            rx.subscribe(Reading, remote)
            tx.publish(Reading("ping", 1.0))
            await tx.flush()
            await remote.wait_for(2)
            local_seqs = {m.sensor: i.seq for m, i in local.items}
            remote_seqs = {m.sensor: i.seq for m, i in remote.items}
            assert local_seqs == remote_seqs
            assert sorted(local_seqs.values()) == [0, 1]

    run(main())


def test_publish_subscribe_and_stats_need_a_started_endpoint(free_udp_port: int,
                                                            test_group: str) -> None:
    async def main() -> None:
        ep = endpoint(free_udp_port, test_group)
        with pytest.raises(LocalError):
            ep.publish(Reading("x", 1.0))
        with pytest.raises(LocalError):
            ep.subscribe(Reading)
        with pytest.raises(LocalError):
            ep.stats()
        await ep.start()
        ep.publish(Reading("x", 1.0))
        await ep.close()
        await ep.close()  # twice is fine
        with pytest.raises(LocalError):
            ep.publish(Reading("x", 1.0))

    run(main())


@pytest.mark.parametrize("node_id", [b"", b"\x01" * 7, b"\x01" * 9])
def test_node_id_must_be_eight_bytes(node_id: bytes) -> None:
    with pytest.raises(LocalError, match="8 bytes"):
        Endpoint(node_id=node_id)


def test_random_node_ids_differ_and_a_given_one_is_kept() -> None:
    assert Endpoint().node_id != Endpoint().node_id
    assert Endpoint(node_id=b"\x07" * 8).node_id == b"\x07" * 8


def test_starting_twice_is_refused_and_a_closed_endpoint_can_start_again(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        ep = endpoint(free_udp_port, test_group)
        await ep.start()
        with pytest.raises(LocalError, match="already started"):
            await ep.start()
        ep.subscribe(Reading, Inbox())
        await ep.close()
        await ep.start()
        try:
            assert ep.subscribed() == frozenset()
            assert ep.stats().receiver.groups == 0
            ep.subscribe(Reading, inbox)
            async with endpoint(free_udp_port, test_group) as tx:
                tx.publish(Reading("again", 1.0))
                await tx.flush()
                await inbox.wait_for(1)
            assert inbox.msgs == [Reading("again", 1.0)]
        finally:
            await ep.close()

    run(main())


def test_callback_that_closes_its_subscription_mid_batch_gets_no_more(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        once, every = Inbox(), Inbox()
        async with endpoint(free_udp_port, test_group) as tx, \
                endpoint(free_udp_port, test_group) as rx:
            def until_two(msg: Reading, info: MessageInfo) -> None:
                once(msg, info)
                if msg.value == 2.0:
                    sub.close()

            sub = rx.subscribe(Reading, until_two)
            rx.subscribe(Reading, every)
            tx.publish(Reading("warm-up", 0.0))  # alone; the next five share a datagram
            for i in range(1, 6):
                tx.publish(Reading("b", float(i)))
            await tx.flush()
            await every.wait_for(6)
            assert rx.stats().receiver.datagrams == 2
            assert [m.value for m in once.msgs] == [0.0, 1.0, 2.0]
            assert [m.value for m in every.msgs] == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]

    run(main())


def test_close_flushes_queued_messages(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        async with endpoint(free_udp_port, test_group) as rx:
            rx.subscribe(Reading, inbox)
            tx = endpoint(free_udp_port, test_group)
            await tx.start()
            for i in range(6):
                tx.publish(Reading("f", float(i)))  # five of them wait in the packer
            await tx.close()
            await inbox.wait_for(6)
            assert [m.value for m in inbox.msgs] == [float(i) for i in range(6)]

    run(main())


def test_start_with_an_address_not_on_this_host_fails_cleanly(free_udp_port: int) -> None:
    async def main() -> None:
        ep = Endpoint(interface="192.0.2.77", port=free_udp_port)
        with pytest.raises(ConfigError):
            await ep.start()

    run(main())
