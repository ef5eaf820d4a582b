"""Encrypted readings between endpoints over loopback: delivery, tampering, rotation.

Two endpoints on 127.0.0.1 exchange a type; a tap socket sees what went on the wire.
The rotation test switches the sender's key in the middle of a stream while the
receiver accepts both keys, and checks that every message arrives; its control
retires the old key too early and sees the loss, so the test can tell a gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest
from test_endpoint_security import run, tap, wait_until

from ganglion.errors import ConfigError
from ganglion.runtime.endpoint import Endpoint
from ganglion.types import encode_payload, lookup, message
from ganglion.wire import FLAG_AEAD, KeyRing, Packer, decode_datagram, key_id
from ganglion.wire import keys as keys_module

pytestmark = pytest.mark.usefixtures("multicast_loopback")

LO = "127.0.0.1"
OLD = bytes(range(32))
NEW = bytes(range(40, 72))
TYPE = "test_aead_endpoint.Level"
#: Flags a v1 receiver from before encryption understands (MAC, clock, replayed).
V1_FLAGS = 0x07


@message(TYPE)
@dataclasses.dataclass
class Level:
    n: int


def endpoint(port: int, group: str, key: bytes | KeyRing | None) -> Endpoint:
    return Endpoint(interface=LO, port=port, group_for=lambda _name: group, key=key)


def drain(sock: socket.socket) -> list[bytes]:
    got: list[bytes] = []
    try:
        while True:
            got.append(sock.recv(65536))
    except BlockingIOError:
        return got


def test_encrypted_readings_arrive_and_tampered_ones_are_counted(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        got: list[int] = []
        with tap(test_group, free_udp_port) as wire:
            async with endpoint(free_udp_port, test_group, OLD) as tx, \
                    endpoint(free_udp_port, test_group, KeyRing([OLD], encrypt=False)) as rx:
                rx.subscribe(Level, lambda m, _i: got.append(m.n))
                for n in range(5):
                    tx.publish(Level(n))
                    await asyncio.sleep(0)
                await tx.flush()
                await wait_until(lambda: len(got) == 5)
                sent = drain(wire)
                assert sent and all(d[3] & FLAG_AEAD for d in sent)
                # A receiver from before encryption refuses (and counts) these: flag bit 3
                # is outside what wire format v1 allowed.
                assert all(d[3] & ~V1_FLAGS for d in sent)
                # Tampered copies, sent again from a plain socket: counted, not delivered.
                raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                raw.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LO))
                raw.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
                with raw:
                    for at in (5, 13, 40, len(sent[0]) - 20, len(sent[0]) - 1):
                        forged = bytearray(sent[0])
                        forged[at] ^= 0x40
                        raw.sendto(bytes(forged), (test_group, free_udp_port))
                    await wait_until(lambda: rx.stats().bad_mac == 5)
                    # And a replay of the genuine datagram: a duplicate, not delivered.
                    raw.sendto(sent[0], (test_group, free_udp_port))
                    await wait_until(lambda: rx.stats().duplicates == 1)
                assert got == [0, 1, 2, 3, 4]
                assert rx.stats().received == 5

    run(main())


def test_mac_only_endpoints_send_the_v1_format_byte_for_byte(
        free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        box: list[bytes] = []
        with tap(test_group, free_udp_port) as wire:
            async with endpoint(free_udp_port, test_group,
                                KeyRing([OLD], encrypt=False)) as tx:
                tx.publish(Level(7))
                await tx.flush()
                def heard() -> bool:
                    box.extend(drain(wire))
                    return bool(box)

                await wait_until(heard)
                mtype = lookup(TYPE)
                assert mtype is not None
                env = decode_datagram(box[0], key=OLD)
                assert env.signed and not env.encrypted
                # What a keyed node before encryption would have sent for the same message.
                old = Packer(node_id=tx.node_id, type_name=TYPE, fingerprint=mtype.fingerprint,
                             boot=tx.boot, key=OLD)
                assert old.build_one(encode_payload(Level(7)), env.timestamps[0]) == box[0]

    run(main())


async def _rotate(port: int, group: str, *, retire_early: bool) -> tuple[int, int, set[bytes]]:
    """Publish 300 readings while the sender switches from OLD to NEW; the receiver's
    keys follow the documented steps (or drop OLD before the sender switched)."""
    got: list[int] = []
    async with endpoint(port, group, OLD) as tx, endpoint(port, group, OLD) as rx, \
            _tapped(group, port) as wire:
        rx.subscribe(Level, lambda m, _i: got.append(m.n))
        ids: set[bytes] = set()
        for n in range(300):
            if n == 50:  # step 1: both nodes accept NEW, still send OLD
                rx.set_keys(KeyRing([OLD, NEW]) if not retire_early else KeyRing([NEW]))
                tx.set_keys(KeyRing([OLD, NEW]))
            elif n == 150:  # step 2: the sender sends NEW, OLD still accepted
                tx.set_keys(KeyRing([NEW, OLD]))
            elif n == 250:  # step 3: once every node sends NEW, retire OLD
                rx.set_keys(KeyRing([NEW]))
                tx.set_keys(KeyRing([NEW]))
            tx.publish(Level(n))
            if n % 7 == 0:
                await asyncio.sleep(0.001)
            else:
                await asyncio.sleep(0)
            for d in drain(wire):
                ids.add(d[25 + len(TYPE) + 18:25 + len(TYPE) + 22])
        await tx.flush()
        await wait_until(lambda: len(got) == 300 or rx.stats().bad_mac > 0, 5.0)
        await asyncio.sleep(0.05)
        return len(set(got)), rx.stats().bad_mac, ids


class _tapped:
    def __init__(self, group: str, port: int) -> None:
        self.sock = tap(group, port)

    async def __aenter__(self) -> socket.socket:
        return self.sock

    async def __aexit__(self, *exc: object) -> None:
        self.sock.close()


def test_key_rotation_loses_nothing(free_udp_port: int, test_group: str) -> None:
    async def main() -> None:
        delivered, bad, ids = await _rotate(free_udp_port, test_group, retire_early=False)
        assert (delivered, bad) == (300, 0)
        assert ids == {key_id(OLD), key_id(NEW)}  # both keys were really used

    run(main())


def test_retiring_the_old_key_too_early_loses_readings(free_udp_port: int,
                                                       test_group: str) -> None:
    async def main() -> None:
        delivered, bad, _ids = await _rotate(free_udp_port, test_group, retire_early=True)
        assert bad > 0 and delivered < 300

    run(main())


def test_an_endpoint_that_must_encrypt_without_cryptography_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_module, "aead_available", lambda: False)
    with pytest.raises(ConfigError, match=r"ganglion-net\[secure\]"):
        Endpoint(interface=LO, key=OLD)
    Endpoint(interface=LO, key=KeyRing([OLD], encrypt=False))
