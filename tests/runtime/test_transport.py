"""MulticastReceiver over real loopback sockets: joins, isolation, spreading, bursts.

Every test sends only with IP_MULTICAST_IF=127.0.0.1, on its own port and
groups, and bounds every wait (``asyncio.wait_for`` inside ``run``).
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import struct
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ganglion.errors import ConfigError, InterfaceError, TransportError
from ganglion.runtime import _sockets
from ganglion.runtime.transport import MulticastReceiver, MulticastSender

pytestmark = pytest.mark.usefixtures("multicast_loopback", "thread_leak_guard", "runtime_path")

LO = "127.0.0.1"


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    """Run a test coroutine on a fresh loop, failing it after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


class Collector:
    """A datagram callback that records what arrived and can be awaited."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, tuple[str, int], float]] = []
        self._changed = asyncio.Event()

    def __call__(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self.items.append((data, source, now))
        self._changed.set()

    @property
    def payloads(self) -> list[bytes]:
        return [item[0] for item in self.items]

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` datagrams arrived."""

        async def _wait() -> None:
            while len(self.items) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(_wait(), timeout)


async def settle() -> None:
    """Give the loop a few passes so any datagram already queued is read."""
    for _ in range(5):
        await asyncio.sleep(0.01)


def igmp_groups(device: str = "lo") -> dict[str, int]:
    """Groups the kernel holds on ``device`` and their user counts (/proc/net/igmp)."""
    groups: dict[str, int] = {}
    current = None
    with open("/proc/net/igmp", encoding="ascii") as table:
        for line in table.readlines()[1:]:
            if not line.startswith("\t"):
                current = line.split()[1]
                continue
            if current == device:
                hex_group, users = line.split()[:2]
                raw = struct.pack("=I", int(hex_group, 16))
                groups[socket.inet_ntoa(raw)] = int(users)
    return groups


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def receiver(
    port: int, callback: Callable[[bytes, tuple[str, int], float], None], **kw: Any
) -> MulticastReceiver:
    kw.setdefault("reannounce_seconds", None)
    return MulticastReceiver(LO, port, callback, **kw)


# -- join / leave --------------------------------------------------------------


def test_join_and_leave_at_run_time(free_udp_port: int, make_group: Callable[[], str]) -> None:
    group_a, group_b = make_group(), make_group()

    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got) as rx, MulticastSender(LO) as tx:
            assert rx.join(group_a) is True
            assert rx.join(group_b) is True
            assert rx.groups == {group_a, group_b}
            tx.send(b"a1", group_a, free_udp_port)
            tx.send(b"b1", group_b, free_udp_port)
            await got.wait_for(2)
            assert sorted(got.payloads) == [b"a1", b"b1"]

            assert rx.leave(group_a) is True
            assert rx.groups == {group_b}
            for i in range(3):
                tx.send(b"a-after-%d" % i, group_a, free_udp_port)
            tx.send(b"b2", group_b, free_udp_port)
            await got.wait_for(3)
            await settle()
            assert sorted(got.payloads) == [b"a1", b"b1", b"b2"]

            # Joining again at run time brings the group back.
            assert rx.join(group_a) is True
            tx.send(b"a2", group_a, free_udp_port)
            await got.wait_for(4)
            assert got.payloads[-1] == b"a2"

    run(body())


def test_kernel_membership_follows_join_and_leave(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    group = make_group()

    async def body() -> None:
        async with receiver(free_udp_port, Collector()) as rx:
            assert group not in igmp_groups()
            rx.join(group)
            assert igmp_groups().get(group) == 1
            rx.leave(group)
            assert group not in igmp_groups()

    run(body())


def test_joins_are_reference_counted(free_udp_port: int, make_group: Callable[[], str]) -> None:
    group = make_group()

    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got) as rx, MulticastSender(LO) as tx:
            assert rx.join(group) is True
            assert rx.join(group) is False
            assert rx.refcount(group) == 2
            assert igmp_groups().get(group) == 1  # one kernel membership, not two

            assert rx.leave(group) is False
            assert rx.groups == {group}
            tx.send(b"still here", group, free_udp_port)
            await got.wait_for(1)

            assert rx.leave(group) is True
            assert rx.refcount(group) == 0
            assert group not in igmp_groups()
            assert rx.leave(group) is False  # leaving a group not joined is a no-op

    run(body())


def test_join_refuses_a_non_multicast_group(free_udp_port: int) -> None:
    async def body() -> None:
        async with receiver(free_udp_port, Collector()) as rx:
            with pytest.raises(ConfigError, match="not a multicast group"):
                rx.join("127.0.0.1")
            with pytest.raises(ConfigError, match="not an IPv4 address"):
                rx.join("brewery.Temperature")
            with pytest.raises(ConfigError):
                rx.leave("10.0.0.1")
            assert rx.groups == frozenset()

    run(body())


# -- isolation and sharing -------------------------------------------------------


def test_socket_does_not_see_groups_it_did_not_join(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    group_a, group_b = make_group(), make_group()

    async def body() -> None:
        got_a, got_b = Collector(), Collector()
        # Control: a plain socket on the same port with IP_MULTICAST_ALL left at
        # its default (1) sees group B without joining it, because rx_b joined B.
        control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        control.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        control.bind(("", free_udp_port))
        control.setblocking(False)
        try:
            async with (
                receiver(free_udp_port, got_a) as rx_a,
                receiver(free_udp_port, got_b) as rx_b,
                MulticastSender(LO) as tx,
            ):
                rx_a.join(group_a)
                rx_b.join(group_b)
                tx.send(b"to-b", group_b, free_udp_port)
                tx.send(b"to-a", group_a, free_udp_port)
                await got_a.wait_for(1)
                await got_b.wait_for(1)
                await settle()
                assert got_a.payloads == [b"to-a"]
                assert got_b.payloads == [b"to-b"]
                assert sorted([control.recv(64), control.recv(64)]) == [b"to-a", b"to-b"]
        finally:
            control.close()

    run(body())


def test_two_receivers_in_one_process_both_get_every_datagram(
    free_udp_port: int, test_group: str
) -> None:
    count = 200

    async def body() -> None:
        first, second = Collector(), Collector()
        async with (
            receiver(free_udp_port, first) as rx1,
            receiver(free_udp_port, second) as rx2,
            MulticastSender(LO) as tx,
        ):
            rx1.join(test_group)
            rx2.join(test_group)
            for i in range(count):
                assert tx.send(i.to_bytes(4, "big"), test_group, free_udp_port)
            await first.wait_for(count)
            await second.wait_for(count)
            await settle()
            expected = [i.to_bytes(4, "big") for i in range(count)]
            assert first.payloads == expected
            assert second.payloads == expected

    run(body())


# -- spreading over sockets ------------------------------------------------------


def test_groups_beyond_the_per_socket_limit_spread_over_sockets(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    groups = [make_group() for _ in range(8)]

    async def body() -> None:
        got = Collector()
        async with (
            receiver(free_udp_port, got, max_memberships_per_socket=3) as rx,
            MulticastSender(LO) as tx,
        ):
            for group in groups:
                rx.join(group)
            assert rx.stats().sockets == 3  # 3 + 3 + 2
            for group in groups:
                tx.send(group.encode(), group, free_udp_port)
            await got.wait_for(len(groups))
            await settle()
            assert sorted(got.payloads) == sorted(g.encode() for g in groups)

            # Emptying the last socket closes it; a freed slot is reused first.
            for group in groups[6:]:
                rx.leave(group)
            assert rx.stats().sockets == 2
            rx.leave(groups[0])
            rx.join(groups[7])
            assert rx.stats().sockets == 2
            tx.send(b"again", groups[7], free_udp_port)
            await got.wait_for(len(groups) + 1)

    run(body())


def test_kernel_limit_lower_than_configured_still_spreads(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    kernel_limit = _sockets.read_max_memberships()
    if kernel_limit > 40:
        pytest.skip(f"igmp_max_memberships is {kernel_limit}; test needs a small limit")
    groups = [make_group() for _ in range(kernel_limit + 3)]

    async def body() -> None:
        got = Collector()
        # Claim a per-socket limit far above the kernel's: ENOBUFS must move on.
        async with (
            receiver(free_udp_port, got, max_memberships_per_socket=1000) as rx,
            MulticastSender(LO) as tx,
        ):
            for group in groups:
                rx.join(group)
            assert rx.stats().sockets == 2
            assert rx.groups == set(groups)
            for group in groups:
                tx.send(group.encode(), group, free_udp_port)
            await got.wait_for(len(groups))
            assert sorted(got.payloads) == sorted(g.encode() for g in groups)

    run(body())


# -- drain loop and stats --------------------------------------------------------


def test_burst_of_20000_datagrams_arrives_without_loss(free_udp_port: int, test_group: str) -> None:
    count, max_batch = 20_000, 512

    async def body() -> None:
        seen = bytearray(count)

        def on_datagram(data: bytes, source: tuple[str, int], now: float) -> None:
            seen[int.from_bytes(data[:4], "big")] += 1

        async with (
            receiver(
                free_udp_port, on_datagram, rcvbuf=32 * 1024 * 1024, max_batch=max_batch
            ) as rx,
            MulticastSender(LO) as tx,
        ):
            rx.join(test_group)
            # ~1 KiB of kernel memory per small datagram on loopback (skb truesize).
            if rx.stats().rcvbuf < count * 1200:
                pytest.skip(
                    f"receive buffer is {rx.stats().rcvbuf} bytes; needs root or a "
                    f"larger net.core.rmem_max to hold the whole burst"
                )
            payload = bytes(60)
            # The whole burst is queued in the kernel before the loop runs once.
            for i in range(count):
                assert tx.send(i.to_bytes(4, "big") + payload, test_group, free_udp_port)
            assert tx.stats().sent == count
            while rx.stats().datagrams < count:
                await asyncio.sleep(0.01)
            await settle()
            stats = rx.stats()
            assert stats.datagrams == count
            assert stats.bytes == count * 64
            assert stats.kernel_drops == 0
            assert bytes(seen) == b"\x01" * count  # every sequence number exactly once
            # Normally the whole burst waits in the kernel and is read in drains of
            # exactly max_batch; if softirq work is deferred under load, some
            # datagrams arrive while draining, so only the bounds are exact.
            assert stats.max_batch <= max_batch
            assert stats.full_drains <= count // max_batch
            assert stats.drains >= -(-count // max_batch)

    run(body(), timeout=40)


def test_stats_count_exactly(free_udp_port: int, make_group: Callable[[], str]) -> None:
    group_a, group_b = make_group(), make_group()
    sizes = [1, 10, 100, 1000, 1400]

    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got, rcvbuf=1 << 20) as rx, MulticastSender(LO) as tx:
            empty = rx.stats()
            assert (empty.datagrams, empty.sockets, empty.groups, empty.rcvbuf) == (0, 0, 0, 0)
            rx.join(group_a)
            rx.join(group_b)
            for size in sizes:
                tx.send(bytes(size), group_a, free_udp_port)
            tx.send(b"xyz", group_b, free_udp_port)
            await got.wait_for(len(sizes) + 1)
            await settle()
            stats = rx.stats()
            assert stats.datagrams == len(sizes) + 1
            assert stats.bytes == sum(sizes) + 3
            assert 1 <= stats.drains <= stats.datagrams
            assert stats.max_batch >= 1
            assert stats.full_drains == 0
            assert stats.sockets == 1
            assert stats.groups == 2
            assert stats.rcvbuf >= 1 << 20  # the kernel reports about twice the request
            assert stats.callback_errors == 0
            assert stats.receive_errors == 0
            assert stats.kernel_drops == 0
            # Every datagram of a drain shares the loop time read once at its start.
            assert all(source[0] == LO for _, source, _ in got.items)

    run(body())


def test_datagrams_above_the_limit_are_dropped_and_counted(
    free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 21 finding 8: a 60 KB (IP-fragmented) datagram was accepted and logged by a
    # node whose budget is 1,400 bytes. Now it is dropped unread, counted, logged once.
    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got, max_datagram=1400) as rx, \
                MulticastSender(LO) as tx:
            rx.join(test_group)
            for _ in range(5):
                tx.send(bytes(60_000), test_group, free_udp_port)
                tx.send(bytes(1401), test_group, free_udp_port)
            tx.send(bytes(1400), test_group, free_udp_port)
            await got.wait_for(1)
            await settle()
            stats = rx.stats()
            assert got.payloads == [bytes(1400)]
            assert stats.oversize == 10
            assert stats.datagrams == 1
            assert stats.callback_errors == stats.receive_errors == 0

    with caplog.at_level("WARNING", logger="ganglion.runtime.transport"):
        run(body())
    assert sum("above the 1400-byte limit" in r.getMessage() for r in caplog.records) == 1


def test_a_receiver_knows_its_interface_and_takes_what_arrives_there(
    free_udp_port: int, test_group: str
) -> None:
    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got) as rx, MulticastSender(LO) as tx:
            assert rx._ifindex == socket.if_nametoindex("lo")
            rx.join(test_group)
            tx.send(b"multicast", test_group, free_udp_port)
            # a unicast to the port on lo arrived on lo too
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as uni:
                uni.sendto(b"unicast", (LO, free_udp_port))
            await got.wait_for(2)
            assert sorted(got.payloads) == [b"multicast", b"unicast"]
            assert rx.stats().wrong_interface == 0

    run(body())


def test_datagrams_from_another_interface_are_dropped_and_counted(
    free_udp_port: int, test_group: str, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Issue 20: a receiver must not take datagrams that arrived on another interface
    # (a unicast to its port there). Loopback has one interface, so the receiver is
    # told another index: everything sent on lo then arrived elsewhere.
    other = socket.if_nametoindex("lo") + 1000
    monkeypatch.setattr(_sockets, "interface_index", lambda address: other)

    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got) as rx, MulticastSender(LO) as tx:
            rx.join(test_group)
            for index in range(5):
                tx.send(b"m%d" % index, test_group, free_udp_port)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as uni:
                uni.sendto(b"unicast", (LO, free_udp_port))
            for _ in range(50):
                if rx.stats().wrong_interface >= 6:
                    break
                await asyncio.sleep(0.01)
            await settle()
            stats = rx.stats()
            assert got.payloads == []
            assert stats.wrong_interface == 6
            assert stats.datagrams == 0 and stats.receive_errors == stats.callback_errors == 0

    with caplog.at_level("DEBUG", logger="ganglion.runtime.transport"):
        run(body())
    assert sum("arrived on interface" in r.getMessage() for r in caplog.records) == 1


def test_kernel_drops_are_reported_when_the_buffer_overflows(
    free_udp_port: int, test_group: str
) -> None:
    count = 300

    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got, rcvbuf=4096) as rx, MulticastSender(LO) as tx:
            rx.join(test_group)
            for i in range(count):
                tx.send(i.to_bytes(4, "big") + bytes(500), test_group, free_udp_port)
            await settle()
            stats = rx.stats()
            assert stats.kernel_drops is not None and stats.kernel_drops > 0
            assert stats.datagrams + stats.kernel_drops == count

    run(body())


def test_callback_errors_are_counted_and_do_not_stop_the_drain(
    free_udp_port: int, test_group: str
) -> None:
    async def body() -> None:
        good: list[bytes] = []

        def on_datagram(data: bytes, source: tuple[str, int], now: float) -> None:
            if data == b"boom":
                raise ValueError("bad datagram")
            good.append(data)

        async with receiver(free_udp_port, on_datagram) as rx, MulticastSender(LO) as tx:
            rx.join(test_group)
            for data in (b"one", b"boom", b"two", b"boom", b"three"):
                tx.send(data, test_group, free_udp_port)
            for _ in range(200):
                if rx.stats().datagrams == 5:
                    break
                await asyncio.sleep(0.01)
            assert good == [b"one", b"two", b"three"]
            assert rx.stats().callback_errors == 2

    run(body())


def test_callback_may_leave_the_last_group_mid_drain(free_udp_port: int, test_group: str) -> None:
    async def body() -> None:
        got: list[bytes] = []

        def on_datagram(data: bytes, source: tuple[str, int], now: float) -> None:
            got.append(data)
            rx.leave(test_group)

        rx = receiver(free_udp_port, on_datagram)
        async with rx, MulticastSender(LO) as tx:
            rx.join(test_group)
            for i in range(5):
                tx.send(b"%d" % i, test_group, free_udp_port)
            for _ in range(200):
                if got:
                    break
                await asyncio.sleep(0.01)
            await settle()
            assert got == [b"0"]  # the socket closed under the drain, which stopped cleanly
            stats = rx.stats()
            assert (stats.sockets, stats.groups, stats.receive_errors) == (0, 0, 0)

    run(body())


def test_drain_reads_the_loop_clock_once_per_drain(free_udp_port: int, test_group: str) -> None:
    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got, max_batch=4) as rx, MulticastSender(LO) as tx:
            rx.join(test_group)
            for i in range(10):
                tx.send(b"%d" % i, test_group, free_udp_port)
            await got.wait_for(10)
            stamps = [now for _, _, now in got.items]
            assert stamps == sorted(stamps)
            # One timestamp per drain, and no drain reads more than max_batch.
            per_drain = Counter(stamps)
            assert max(per_drain.values()) <= 4
            stats = rx.stats()
            assert stats.drains == len(per_drain)
            assert stats.full_drains == sum(1 for n in per_drain.values() if n == 4)
            assert stats.max_batch == max(per_drain.values())

    run(body())


# -- re-announce -----------------------------------------------------------------


def test_reannounce_runs_periodically_and_keeps_memberships(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    group_a, group_b = make_group(), make_group()

    async def body() -> None:
        got = Collector()
        async with (
            receiver(free_udp_port, got, reannounce_seconds=0.02) as rx,
            MulticastSender(LO) as tx,
        ):
            rx.join(group_a)
            rx.join(group_b)
            for _ in range(500):
                if rx.stats().reannounces >= 6:
                    break
                await asyncio.sleep(0.01)
            assert rx.stats().reannounces >= 6  # three rounds of two groups
            assert rx.stats().reannounce_errors == 0
            lo_groups = igmp_groups()
            assert lo_groups.get(group_a) == 1 and lo_groups.get(group_b) == 1
            tx.send(b"a", group_a, free_udp_port)
            tx.send(b"b", group_b, free_udp_port)
            await got.wait_for(2)

    run(body())


def test_reannounce_timer_stops_when_nothing_is_joined(free_udp_port: int, test_group: str) -> None:
    async def body() -> None:
        async with receiver(free_udp_port, Collector(), reannounce_seconds=0.01) as rx:
            rx.join(test_group)
            rx.leave(test_group)
            await asyncio.sleep(0.1)
            assert rx.stats().reannounces == 0

    run(body())


def test_reannounce_can_be_driven_by_hand(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    groups = [make_group() for _ in range(3)]

    async def body() -> None:
        async with receiver(free_udp_port, Collector(), reannounce_seconds=None) as rx:
            assert rx.reannounce() == 0
            for group in groups:
                rx.join(group)
            await asyncio.sleep(0.05)
            assert rx.stats().reannounces == 0  # no timer without a period
            assert rx.reannounce() == 3
            assert rx.stats().reannounces == 3
            assert set(groups) <= set(igmp_groups())

    run(body())


def test_reannounce_repairs_a_membership_the_kernel_lost(
    free_udp_port: int, test_group: str
) -> None:
    async def body() -> None:
        got = Collector()
        async with receiver(free_udp_port, got) as rx, MulticastSender(LO) as tx:
            rx.join(test_group)
            # Simulate the kernel forgetting it (as when an address goes away).
            slot_sock = rx._slot_of[test_group].sock
            assert _sockets.drop_membership(slot_sock, test_group, LO)
            assert test_group not in igmp_groups()
            assert rx.reannounce() == 1
            assert igmp_groups().get(test_group) == 1
            tx.send(b"back", test_group, free_udp_port)
            await got.wait_for(1)

    run(body())


# -- closing and errors ------------------------------------------------------------


def test_close_releases_every_socket_without_resource_warnings(
    free_udp_port: int, make_group: Callable[[], str]
) -> None:
    groups = [make_group() for _ in range(5)]

    async def body() -> None:
        fds_before = open_fds()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rx = receiver(free_udp_port, Collector(), max_memberships_per_socket=2)
            for group in groups:
                rx.join(group)
            assert rx.stats().sockets == 3
            assert open_fds() == fds_before + 3
            rx.close()
            rx.close()  # twice is fine
            del rx
            gc.collect()
        assert open_fds() == fds_before
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
        assert not set(groups) & set(igmp_groups())

    run(body())


def test_closed_receiver_refuses_joins(free_udp_port: int, test_group: str) -> None:
    async def body() -> None:
        rx = receiver(free_udp_port, Collector())
        rx.close()
        assert rx.closed
        with pytest.raises(TransportError, match="closed"):
            rx.join(test_group)
        assert rx.leave(test_group) is False
        assert rx.stats().sockets == 0

    run(body())


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.255.254.253", "no interface of this host has the address 10.255.254.253"),
        ("eth0", "not an IPv4 address"),
        ("239.255.1.1", "must be a unicast address"),
        ("0.0.0.0", "must be a unicast address"),
    ],
)
def test_bad_interface_address_gives_a_clear_error(
    free_udp_port: int, address: str, message: str
) -> None:
    async def body() -> None:
        with pytest.raises(InterfaceError, match=message):
            MulticastReceiver(address, free_udp_port, Collector())
        with pytest.raises(InterfaceError, match=message):
            MulticastSender(address)

    run(body())


def test_port_held_exclusively_by_another_program_is_reported(
    free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture
) -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("", free_udp_port))  # no SO_REUSEADDR

    async def body() -> None:
        async with receiver(free_udp_port, Collector()) as rx:
            with pytest.raises(TransportError, match="in use") as info:
                rx.join(test_group)
            assert info.value.errno == 98 or sys.platform != "linux"
            assert rx.groups == frozenset()
            assert rx.stats().sockets == 0

    try:
        run(body())
    finally:
        squatter.close()
    assert "in use" in caplog.text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rcvbuf": 0},
        {"max_memberships_per_socket": 0},
        {"max_batch": -1},
        {"reannounce_seconds": 0},
        {"reannounce_seconds": -5.0},
    ],
)
def test_bad_settings_are_refused(free_udp_port: int, kwargs: dict[str, Any]) -> None:
    async def body() -> None:
        with pytest.raises(ConfigError):
            MulticastReceiver(LO, free_udp_port, Collector(), **kwargs)

    run(body())


def test_bad_port_is_refused() -> None:
    async def body() -> None:
        for port in (0, 65536, -1):
            with pytest.raises(ConfigError, match=r"not in 1\.\.65535"):
                MulticastReceiver(LO, port, Collector())

    run(body())


def test_receiver_needs_a_loop_outside_coroutines(free_udp_port: int) -> None:
    with pytest.raises(RuntimeError):
        MulticastReceiver(LO, free_udp_port, lambda d, s, n: None)
    loop = asyncio.new_event_loop()
    try:
        rx = MulticastReceiver(LO, free_udp_port, lambda d, s, n: None, loop=loop)
        assert repr(rx) == f"<MulticastReceiver 127.0.0.1:{free_udp_port} 0 groups>"
        rx.close()
        assert repr(rx).endswith("closed>")
    finally:
        loop.close()


def test_the_drains_flag_test_is_a_plain_int() -> None:
    # socket.MSG_TRUNC is an IntFlag: `flags & MSG_TRUNC` would run enum's Python
    # __rand__ for every datagram (measured 10-35 us after a wake-up from sleep).
    from ganglion.runtime import transport

    assert type(transport._MSG_TRUNC) is int
    assert transport._MSG_TRUNC == socket.MSG_TRUNC
