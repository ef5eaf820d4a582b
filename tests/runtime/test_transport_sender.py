"""MulticastSender: real loopback sends, plus injected push-back (EAGAIN, ENOBUFS)."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Coroutine
from typing import Any

import pytest

from ganglion.errors import ConfigError, TransportError
from ganglion.runtime.transport import MulticastReceiver, MulticastSender

pytestmark = pytest.mark.usefixtures("multicast_loopback", "thread_leak_guard")

LO = "127.0.0.1"


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


class PushBackSocket:
    """A real UDP socket whose ``sendto`` fails with scripted errnos first.

    ``script`` holds errnos (or None for "let it through") consumed one per
    call; after it runs out every call goes through. Sent datagrams are recorded
    instead of being put on the wire.
    """

    def __init__(self, script: list[int | None]) -> None:
        self._real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.script = list(script)
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.attempts = 0

    def fileno(self) -> int:
        return self._real.fileno()

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.attempts += 1
        code = self.script.pop(0) if self.script else None
        if code is not None:
            raise OSError(code, errno.errorcode[code])
        self.sent.append((data, addr))
        return len(data)

    def close(self) -> None:
        self._real.close()


def fake_sender(script: list[int | None], **kwargs: Any) -> tuple[MulticastSender, PushBackSocket]:
    sock = PushBackSocket(script)
    sender = MulticastSender(LO, sock=sock, **kwargs)  # type: ignore[arg-type]
    return sender, sock


async def until(predicate: Any, timeout: float = 5.0) -> None:
    """Poll ``predicate`` on the loop until true (bounded)."""

    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(_poll(), timeout)


# -- real sockets ------------------------------------------------------------------


def test_send_reaches_a_receiver_and_counts(free_udp_port: int, test_group: str) -> None:
    async def body() -> None:
        got: list[bytes] = []
        async with (
            MulticastReceiver(
                LO, free_udp_port, lambda d, s, n: got.append(d), reannounce_seconds=None
            ) as rx,
            MulticastSender(LO) as tx,
        ):
            rx.join(test_group)
            for size in (0, 1, 64, 1400):
                assert tx.send(bytes(size), test_group, free_udp_port) is True
            await until(lambda: len(got) == 4)
            assert [len(d) for d in got] == [0, 1, 64, 1400]
            stats = tx.stats()
            assert (stats.sent, stats.bytes, stats.dropped, stats.errors) == (4, 1465, 0, {})
            assert (stats.queued, stats.deferred, stats.max_queued) == (0, 0, 0)

    run(body())


def test_socket_options_name_the_interface_ttl_and_loop() -> None:
    with MulticastSender(LO, ttl=3, loop_back=False) as tx:
        sock = tx._sock
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 3
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 0
        raw_if = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
        assert socket.inet_ntoa(raw_if) == LO
        assert not sock.getblocking()
    with MulticastSender(LO) as tx:
        assert tx._sock is not None
        assert tx._sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
        assert tx._sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1


def test_oversized_datagram_is_dropped_counted_and_logged_once(
    free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), MulticastSender(LO) as tx:
        assert tx.send(bytes(70_000), test_group, free_udp_port) is False
        assert tx.send(bytes(70_000), test_group, free_udp_port) is False
        stats = tx.stats()
        assert stats.dropped == 2
        assert stats.errors == {"EMSGSIZE": 2}
        assert stats.sent == 0
    assert caplog.text.count("failed, dropping") == 1


@pytest.mark.parametrize(
    ("group", "port", "message"),
    [
        ("127.0.0.1", 5000, "not a multicast group"),
        ("192.0.2.1", 5000, "not a multicast group"),
        ("brewery", 5000, "not an IPv4 address"),
        ("239.255.1.1", 0, "not in 1"),
        ("239.255.1.1", 70000, "not in 1"),
    ],
)
def test_send_refuses_non_multicast_destinations(group: str, port: int, message: str) -> None:
    with MulticastSender(LO) as tx:
        with pytest.raises(ConfigError, match=message):
            tx.send(b"x", group, port)
        assert tx.stats().sent == 0


@pytest.mark.parametrize("ttl", [-1, 256, True])
def test_bad_ttl_is_refused(ttl: int) -> None:
    with pytest.raises(ConfigError, match="TTL"):
        MulticastSender(LO, ttl=ttl)


def test_bad_queue_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_queue"):
        MulticastSender(LO, max_queue=-1)
    with pytest.raises(ConfigError, match="retry_delay"):
        MulticastSender(LO, retry_delay=-0.5)


def test_closed_sender_raises_and_close_is_idempotent(test_group: str) -> None:
    tx = MulticastSender(LO)
    tx.close()
    tx.close()
    assert tx.closed
    assert repr(tx).endswith("closed>")
    with pytest.raises(TransportError, match="closed"):
        tx.send(b"x", test_group, 5000)


# -- push-back: EAGAIN, ENOBUFS ----------------------------------------------------


def test_eagain_queues_and_flushes_in_order_when_writable() -> None:
    async def body() -> None:
        tx, sock = fake_sender([errno.EAGAIN, errno.EAGAIN])
        with tx:
            assert tx.send(b"1", "239.255.9.9", 4000) is True  # EAGAIN: queued
            assert tx.send(b"2", "239.255.9.9", 4000) is True  # behind the queue
            assert tx.send(b"3", "239.255.9.8", 4001) is True
            assert tx.stats().queued == 3
            await until(lambda: tx.stats().queued == 0)
            assert sock.sent == [
                (b"1", ("239.255.9.9", 4000)),
                (b"2", ("239.255.9.9", 4000)),
                (b"3", ("239.255.9.8", 4001)),
            ]
            stats = tx.stats()
            assert stats.sent == 3
            assert stats.deferred == 3
            assert stats.max_queued == 3
            assert stats.errors == {"EAGAIN": 2}  # the first try and one flush attempt
            assert stats.dropped == 0
            # Idle again: the next send goes straight out.
            assert tx.send(b"4", "239.255.9.9", 4000) is True
            assert sock.sent[-1] == (b"4", ("239.255.9.9", 4000))
            assert tx.stats().deferred == 3

    run(body())


def test_enobufs_retries_after_a_delay() -> None:
    async def body() -> None:
        tx, sock = fake_sender([errno.ENOBUFS, errno.ENOBUFS, errno.ENOBUFS], retry_delay=0.005)
        with tx:
            assert tx.send(b"x", "239.255.9.9", 4000) is True
            await until(lambda: tx.stats().sent == 1)
            assert sock.attempts == 4
            assert tx.stats().errors == {"ENOBUFS": 3}
            assert sock.sent == [(b"x", ("239.255.9.9", 4000))]

    run(body())


def test_full_queue_drops_the_newest_datagram() -> None:
    async def body() -> None:
        tx, sock = fake_sender([errno.EAGAIN], max_queue=2)
        with tx:
            assert tx.send(b"a", "239.255.9.9", 4000) is True
            assert tx.send(b"b", "239.255.9.9", 4000) is True
            assert tx.send(b"c", "239.255.9.9", 4000) is False
            assert tx.stats().dropped == 1
            await until(lambda: tx.stats().queued == 0)
            assert [d for d, _ in sock.sent] == [b"a", b"b"]

    run(body())


def test_hard_error_while_flushing_drops_only_that_datagram() -> None:
    async def body() -> None:
        tx, sock = fake_sender([errno.EAGAIN, errno.EPERM])
        with tx:
            tx.send(b"a", "239.255.9.9", 4000)
            tx.send(b"b", "239.255.9.9", 4000)
            await until(lambda: tx.stats().queued == 0)
            assert [d for d, _ in sock.sent] == [b"b"]
            stats = tx.stats()
            assert (stats.sent, stats.dropped) == (1, 1)
            assert stats.errors == {"EAGAIN": 1, "EPERM": 1}

    run(body())


def test_close_with_a_backlog_counts_it_as_dropped() -> None:
    async def body() -> None:
        tx, sock = fake_sender([errno.ENOBUFS], retry_delay=10.0)
        tx.send(b"a", "239.255.9.9", 4000)
        tx.send(b"b", "239.255.9.9", 4000)
        tx.close()
        stats = tx.stats()
        assert (stats.queued, stats.dropped, stats.sent) == (0, 2, 0)
        await asyncio.sleep(0.01)
        assert sock.sent == []

    run(body())


def test_without_a_loop_transient_errors_drop() -> None:
    tx, sock = fake_sender([errno.EAGAIN])
    with tx:
        assert tx.send(b"a", "239.255.9.9", 4000) is False
        assert tx.send(b"b", "239.255.9.9", 4000) is True
        stats = tx.stats()
        assert (stats.sent, stats.dropped, stats.queued) == (1, 1, 0)
        assert stats.errors == {"EAGAIN": 1}
    assert [d for d, _ in sock.sent] == [b"b"]
