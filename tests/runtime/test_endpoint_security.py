"""Endpoint receive path against hostile or broken input: network key, MACs, garbage.

Bad datagrams are sent with a plain socket to the endpoint's group via
127.0.0.1. Each test then sends a valid *barrier* message on the same socket
and group: once it is delivered, everything before it has been processed, so
"nothing was delivered" is checked without sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from ganglion.errors import AuthError
from ganglion.runtime import _sockets
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import encode_payload, lookup, message
from ganglion.wire import KeyRing, Packer, decode_datagram

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = "127.0.0.1"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
TYPE = "test_endpoint_security.Ping"


@message(TYPE)
@dataclasses.dataclass
class Ping:
    n: int


def run(coro: Coroutine[Any, Any, None], timeout: float = 15.0) -> None:
    """Run a test coroutine on a fresh loop, failing it after ``timeout`` seconds."""
    asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)


class Inbox:
    def __init__(self) -> None:
        self.msgs: list[Any] = []
        self.infos: list[MessageInfo] = []

    def __call__(self, msg: Any, info: MessageInfo) -> None:
        self.msgs.append(msg)
        self.infos.append(info)

    async def wait_for(self, count: int, timeout: float = 5.0) -> None:
        await wait_until(lambda: len(self.msgs) >= count, timeout)


class Raw:
    """A plain socket sending hand-made datagrams to one group and port via loopback."""

    def __init__(self, group: str, port: int) -> None:
        self.dest = (group, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.node_id = os.urandom(8)
        self.seq = 0

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, self.dest)

    def ping(self, n: int, *, key: bytes | None = None, node_id: bytes | None = None,
             seq: int | None = None) -> bytes:
        """Build (not send) a valid datagram carrying Ping(n)."""
        mtype = lookup(TYPE)
        assert mtype is not None
        if seq is None:
            seq, self.seq = self.seq, self.seq + 1
        packer = Packer(node_id=node_id or self.node_id, type_name=TYPE,
                        fingerprint=mtype.fingerprint, first_seq=seq, boot=1, key=key)
        packer.add(encode_payload(Ping(n)), 1_700_000_000_000_000_000)
        return packer.build()

    def close(self) -> None:
        self.sock.close()


def endpoint(port: int, group: str, **kw: Any) -> Endpoint:
    return Endpoint(interface=LO, port=port, group_for=lambda _name: group, **kw)


def tap(group: str, port: int) -> socket.socket:
    """A plain non-blocking socket that sees every datagram sent to ``group:port``."""
    sock = _sockets.open_receive_socket(port, 1 << 20)
    _sockets.add_membership(sock, group, LO)
    return sock


async def read_tap(sock: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    got: list[bytes] = []

    def more() -> bool:
        try:
            while True:
                got.append(sock.recv(65536))
        except BlockingIOError:
            pass
        return len(got) >= count

    await wait_until(more, timeout)
    return got


@pytest.mark.parametrize("encrypt", [False, True], ids=["mac-only", "encrypted"])
def test_endpoints_sharing_a_key_exchange_signed_datagrams(free_udp_port: int,
                                                           test_group: str, encrypt: bool) -> None:
    async def main() -> None:
        inbox = Inbox()
        with tap(test_group, free_udp_port) as wire:
            async with endpoint(free_udp_port, test_group,
                                key=KeyRing([KEY], encrypt=encrypt)) as tx, \
                    endpoint(free_udp_port, test_group, key=KEY) as rx:
                rx.subscribe(Ping, inbox)
                for n in range(3):
                    tx.publish(Ping(n))
                await tx.flush()
                await inbox.wait_for(3)
                assert inbox.msgs == [Ping(0), Ping(1), Ping(2)]
                stats = rx.stats()
                assert (stats.received, stats.bad_mac, stats.decode_errors) == (3, 0, 0)
                sent = await read_tap(wire, tx.stats().datagrams_sent)
                # On the wire: every datagram carries a MAC (or is encrypted) under KEY,
                # and only KEY.
                envs = [decode_datagram(d, key=KEY) for d in sent]
                assert all(e.encrypted if encrypt else e.signed for e in envs)
                for d in sent:
                    with pytest.raises(AuthError):
                        decode_datagram(d, key=OTHER_KEY)
                    with pytest.raises(AuthError):
                        decode_datagram(d, key=None)

    run(main())


def test_endpoint_without_a_key_drops_signed_datagrams(free_udp_port: int,
                                                      test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                raw.send(raw.ping(0, key=KEY))
                raw.send(raw.ping(1))  # unsigned barrier
                await inbox.wait_for(1)
                assert inbox.msgs == [Ping(1)]
                assert (rx.stats().bad_mac, rx.stats().received) == (1, 1)
        finally:
            raw.close()

    run(main())


@pytest.mark.parametrize("sender_key", [None, OTHER_KEY], ids=["unsigned", "wrong-key"])
def test_keyed_endpoint_drops_unsigned_and_wrong_key_datagrams(
        free_udp_port: int, test_group: str, sender_key: bytes | None,
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group, key=KEY) as rx:
                rx.subscribe(Ping, inbox)
                for n in range(4):
                    raw.send(raw.ping(n, key=sender_key))
                raw.send(raw.ping(99, key=KEY))  # barrier
                await inbox.wait_for(1)
                assert inbox.msgs == [Ping(99)]
                stats = rx.stats()
                assert stats.bad_mac == 4
                assert stats.received == 1
                assert stats.decode_errors == 0
        finally:
            raw.close()

    with caplog.at_level(logging.WARNING, logger="ganglion.runtime.endpoint"):
        run(main())
    warned = [r.getMessage() for r in caplog.records if "bad_mac" in r.getMessage()]
    assert len(warned) == 1, f"a wrong key warns once, then counts: {warned}"


def test_forged_datagram_is_dropped_as_bad_mac(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group, key=KEY) as rx:
                rx.subscribe(Ping, inbox)
                good = raw.ping(7, key=KEY)
                for pos in (20, len(good) // 2, len(good) - 20, len(good) - 1):
                    forged = bytearray(good)
                    forged[pos] ^= 0x01
                    raw.send(bytes(forged))
                raw.send(good[:-1])  # a truncated MAC
                raw.send(good)  # the genuine one is the barrier
                await inbox.wait_for(1)
                assert inbox.msgs == [Ping(7)]
                stats = rx.stats()
                assert stats.bad_mac + stats.decode_errors == 5
                assert stats.bad_mac >= 4
        finally:
            raw.close()

    run(main())


def test_replayed_signed_datagram_is_not_delivered_twice(free_udp_port: int,
                                                        test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group, key=KEY) as rx:
                rx.subscribe(Ping, inbox)
                first = raw.ping(1, key=KEY)
                raw.send(first)
                raw.send(first)  # replay
                raw.send(raw.ping(2, key=KEY))  # barrier
                await inbox.wait_for(2)
                assert inbox.msgs == [Ping(1), Ping(2)]
                assert rx.stats().duplicates == 1
        finally:
            raw.close()

    run(main())


GARBAGE = [
    b"",
    b"x",
    b"hello world, not a ganglion datagram",
    bytes(64),
    b"\xff" * 1400,
]


def test_garbage_datagrams_are_counted_as_decode_errors_and_do_not_stop_the_endpoint(
        free_udp_port: int, test_group: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                good = raw.ping(0)
                garbage = [*GARBAGE, good[:10], good[:-3], good + b"\x00\x01"]
                for junk in garbage * 2:
                    raw.send(junk)
                raw.send(raw.ping(1))  # barrier
                await inbox.wait_for(1)
                assert inbox.msgs == [Ping(1)]
                stats = rx.stats()
                assert stats.decode_errors == 2 * len(garbage)
                assert stats.bad_mac == 0
                assert stats.receiver.callback_errors == 0
        finally:
            raw.close()

    with caplog.at_level(logging.WARNING, logger="ganglion.runtime.endpoint"):
        run(main())
    dropped = [r for r in caplog.records if "dropped a datagram" in r.getMessage()]
    assert len(dropped) == 1, "one bad datagram of a kind from a host is logged, the rest counted"
    assert "only counted" in dropped[-1].getMessage()


def test_envelope_with_a_payload_that_is_not_cbor_counts_a_decode_error(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                mtype = lookup(TYPE)
                assert mtype is not None
                packer = Packer(node_id=raw.node_id, type_name=TYPE,
                                fingerprint=mtype.fingerprint, first_seq=0, boot=1)
                packer.add(b"\xff\xfe", 1)  # not CBOR
                packer.add(encode_payload(Ping(5)), 2)  # the rest of the batch still counts
                packer.add(b"\x83\x01\x02\x03", 3)  # CBOR, but not a map
                packer.add(encode_payload(Ping(6)), 4)
                raw.send(packer.build())
                await inbox.wait_for(2)
                assert inbox.msgs == [Ping(5), Ping(6)]
                assert rx.stats().decode_errors == 2
        finally:
            raw.close()

    run(main())


def test_payload_with_our_fingerprint_that_does_not_fit_the_class_is_a_decode_error(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                mtype = lookup(TYPE)
                assert mtype is not None
                packer = Packer(node_id=raw.node_id, type_name=TYPE,
                                fingerprint=mtype.fingerprint, first_seq=0, boot=1)
                packer.add(b"\xa1\x61n\x63abc", 1)  # {"n": "abc"}: n must be an int
                raw.send(packer.build())
                raw.send(raw.ping(8, seq=1))  # barrier
                await inbox.wait_for(1)
                assert inbox.msgs == [Ping(8)]
                assert rx.stats().decode_errors == 1
                assert rx.stats().schema_mismatches == 0
        finally:
            raw.close()

    run(main())


def test_unicast_datagram_to_the_port_is_decoded_and_dropped_too(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        inbox = Inbox()
        raw = Raw(test_group, free_udp_port)
        try:
            async with endpoint(free_udp_port, test_group) as rx:
                rx.subscribe(Ping, inbox)
                raw.sock.sendto(b"not for you", (LO, free_udp_port))
                raw.send(raw.ping(3))
                await inbox.wait_for(1)
                await wait_until(lambda: rx.stats().receiver.datagrams >= 2)
                assert inbox.msgs == [Ping(3)]
                assert rx.stats().decode_errors == 1
        finally:
            raw.close()

    run(main())
