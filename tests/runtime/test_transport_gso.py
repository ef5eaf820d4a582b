"""Runs of datagrams in one system call: UDP GSO on send, UDP_GRO on receive, real sockets.

Every test checks what a receiver gets datagram by datagram: the same bytes, in
the same order, whether the run left in one segmented ``sendmsg`` or one
``sendto`` each, and whether it was read whole (GRO) or one datagram per read.
Where the kernel cannot do GSO the segmented tests skip; the fallback tests make
the kernel refuse it for real (a socket with ``SO_NO_CHECK``, which UDP GSO
needs checksums for, gets EINVAL).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from ganglion.runtime import _sockets
from ganglion.runtime.transport import MulticastReceiver, MulticastSender

pytestmark = [pytest.mark.usefixtures("multicast_loopback", "thread_leak_guard", "runtime_path"),
              pytest.mark.timeout(60)]

LO = "127.0.0.1"
#: SO_NO_CHECK (Linux): send without UDP checksums, which segmentation offload refuses.
SO_NO_CHECK = 11


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Any, timeout: float = 5.0) -> None:
    async def _poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(_poll(), timeout)


def datagrams(sizes: list[int]) -> list[bytes]:
    """Distinct datagrams of the given sizes (each starts with its index)."""
    return [i.to_bytes(2, "big") + bytes([i % 251]) * (size - 2) for i, size in enumerate(sizes)]


@contextlib.asynccontextmanager
async def joined(port: int, group: str, got: list[bytes], *, gro: bool = True,
                 **sender: Any) -> AsyncIterator[tuple[MulticastReceiver, MulticastSender]]:
    """A receiver on ``group`` collecting into ``got``, and a sender (``sender`` its
    keyword arguments) to send to it."""
    async with (
        MulticastReceiver(LO, port, lambda d, s, n: got.append(d), reannounce_seconds=None,
                          gro=gro) as rx,
        MulticastSender(LO, **sender) as tx,
    ):
        rx.join(group)
        yield rx, tx


def gso_or_skip() -> None:
    with MulticastSender(LO) as probe:
        if not probe.gso:
            pytest.skip("this kernel has no UDP segmentation offload")


@pytest.mark.parametrize("gro", [True, False])
def test_a_run_arrives_as_the_same_datagrams_in_order(free_udp_port: int, test_group: str,
                                                        gro: bool) -> None:
    gso_or_skip()
    sent = datagrams([1000] * 20 + [300])  # a shorter last one may end a run

    async def body() -> None:
        got: list[bytes] = []
        async with joined(free_udp_port, test_group, got, gro=gro) as (rx, tx):
            assert tx.send_many(sent, test_group, free_udp_port) == len(sent)
            await until(lambda: len(got) == len(sent))
            assert got == sent
            out = tx.stats()
            assert (out.sent, out.bytes, out.dropped) == (21, 20 * 1000 + 300, 0)
            assert (out.segmented_sends, out.segmented, out.gso) == (1, 21, True)
            stats = rx.stats()
            assert stats.datagrams == 21 and stats.gro is gro
            # On loopback the run reaches a GRO socket whole, and is cut apart here.
            assert stats.coalesced == (21 if gro else 0)

    run(body())


def test_runs_split_at_size_changes_and_at_the_segment_limit(free_udp_port: int,
                                                           test_group: str) -> None:
    gso_or_skip()
    sizes = [500] * 3 + [200] + [500] * 2 + [700] + [100] * (_sockets.GSO_MAX_SEGMENTS + 5)
    sent = datagrams(sizes)

    async def body() -> None:
        got: list[bytes] = []
        async with joined(free_udp_port, test_group, got) as (_rx, tx):
            tx.send_many(sent, test_group, free_udp_port)
            await until(lambda: len(got) == len(sent))
            assert got == sent
            # Runs: [500 x3, 200] (a shorter one ends a run), [500 x2] (a longer one
            # does not join), [700, 100], then the 100s, 64 per call at most: [100 x64],
            # [100 x4].
            out = tx.stats()
            assert (out.sent, out.dropped) == (len(sent), 0)
            assert (out.segmented_sends, out.segmented) == (5, len(sent))

    run(body())


def test_a_refused_segmented_send_falls_back_to_one_datagram_per_call(
        free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture) -> None:
    gso_or_skip()
    sock = _sockets.open_send_socket(LO, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
    sent = datagrams([800] * 10)

    async def body() -> None:
        got: list[bytes] = []
        async with joined(free_udp_port, test_group, got, sock=sock) as (_rx, tx):
            assert tx.gso
            with caplog.at_level(logging.INFO, logger="ganglion.runtime._sender"):
                assert tx.send_many(sent[:5], test_group, free_udp_port) == 5
                assert tx.send_many(sent[5:], test_group, free_udp_port) == 5
            await until(lambda: len(got) == 10)
            assert got == sent
            out = tx.stats()
            assert (out.sent, out.dropped, out.segmented_sends, out.gso) == (10, 0, 0, False)
            notes = [r for r in caplog.records if "segmentation offload" in r.getMessage()]
            assert len(notes) == 1 and "Invalid argument" in notes[0].getMessage()

    run(body())


def test_a_lone_datagram_goes_as_a_plain_send(free_udp_port: int, test_group: str) -> None:
    gso_or_skip()

    async def body() -> None:
        got: list[bytes] = []
        async with joined(free_udp_port, test_group, got) as (_rx, tx):
            assert tx.send_many(datagrams([700]), test_group, free_udp_port) == 1
            await until(lambda: len(got) == 1)
            assert got == datagrams([700])
            out = tx.stats()
            assert (out.sent, out.segmented_sends, out.segmented, out.gso) == (1, 0, 0, True)

    run(body())


def test_gso_false_sends_one_datagram_per_call(free_udp_port: int, test_group: str) -> None:
    sent = datagrams([600] * 6)

    async def body() -> None:
        got: list[bytes] = []
        async with joined(free_udp_port, test_group, got, gso=False) as (_rx, tx):
            assert not tx.gso
            tx.send_many(sent, test_group, free_udp_port)
            await until(lambda: len(got) == 6)
            assert got == sent and tx.stats().segmented_sends == 0

    run(body())


class ScriptedSendmsg:
    """A real UDP socket whose ``sendmsg`` fails with scripted errnos first; records sends."""

    def __init__(self, script: list[int]) -> None:
        self._real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.script = list(script)
        self.sent: list[bytes] = []

    def fileno(self) -> int:
        return self._real.fileno()

    def getsockopt(self, *args: Any) -> Any:
        return self._real.getsockopt(*args)

    def sendmsg(self, buffers: list[bytes], ancdata: Any, flags: int, addr: Any) -> int:
        if self.script:
            code = self.script.pop(0)
            raise OSError(code, errno.errorcode[code])
        (data,) = buffers
        size = int.from_bytes(ancdata[0][2], sys.byteorder)
        self.sent.extend(data[at:at + size] for at in range(0, len(data), size))
        return len(data)

    def sendto(self, data: bytes, addr: Any) -> int:
        self.sent.append(data)
        return len(data)

    def close(self) -> None:
        self._real.close()


def test_a_run_the_kernel_pushes_back_on_waits_and_leaves_in_order(test_group: str) -> None:
    gso_or_skip()
    sock = ScriptedSendmsg([errno.EAGAIN])
    sent = datagrams([400] * 4)

    async def body() -> None:
        tx = MulticastSender(LO, sock=sock)  # type: ignore[arg-type]
        try:
            assert tx.send_many(sent, test_group, 47000) == 4
            assert tx.stats().queued == 4 and sock.sent == []
            # Later datagrams wait behind the queue, so order is kept.
            assert tx.send_many(datagrams([400] * 6)[4:], test_group, 47000) == 2
            await until(lambda: tx.stats().queued == 0)
            assert sock.sent == datagrams([400] * 6)
            out = tx.stats()
            assert (out.sent, out.deferred, out.dropped, out.errors) == (6, 6, 0, {"EAGAIN": 1})
        finally:
            tx.close()

    run(body())


def test_a_hard_error_drops_the_run_and_counts_each_datagram(test_group: str) -> None:
    gso_or_skip()
    sock = ScriptedSendmsg([errno.ENETUNREACH])
    sent = datagrams([400] * 4)
    tx = MulticastSender(LO, sock=sock)  # type: ignore[arg-type]
    try:
        assert tx.send_many(sent, test_group, 47000) == 0
        out = tx.stats()
        assert (out.sent, out.dropped, out.errors, out.gso) == (0, 4, {"ENETUNREACH": 1}, True)
    finally:
        tx.close()
