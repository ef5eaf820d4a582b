"""Helpers for control-channel tests on loopback: real channels, a forger, a recorder.

Everything goes over 127.0.0.0/8: channels send multicast out of 127.0.0.1 to a
group and port no other test uses; the :class:`Forger` sends datagrams encoded
from docs/protocol.md (``encode_datagram``, CBOR payloads) from a loopback address
of its choice, as a third host on the LAN would; the :class:`Recorder` captures
what goes to the group, as a sniffer on the LAN would. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2

from consensus.messages import Message
from ganglion.runtime.control import ControlChannel
from ganglion.runtime.control_messages import Heartbeat, PaxosFrame
from ganglion.runtime.journal import Journal
from ganglion.types import encode_payload, type_of
from ganglion.wire import decode_datagram, encode_datagram

LOOPBACK = "127.0.0.1"


def channel(tmp_path: Path, name: str, port: int, group: str, *,
            node_id: bytes | None = None, key: bytes | None = None,
            heartbeat_seconds: float = 0.1, peer_timeout: float = 1.0,
            **kwargs: Any) -> ControlChannel:
    """A member control channel on loopback with its journal under ``tmp_path / name``."""
    (tmp_path / name).mkdir(exist_ok=True)
    return ControlChannel(
        node_id=node_id or (name.encode() * 8)[:8], name=name, version="test",
        interface=LOOPBACK, port=port, group=group, key=key,
        journal=Journal(tmp_path / name / "journal"), tick_seconds=0.05,
        heartbeat_seconds=heartbeat_seconds, peer_timeout=peer_timeout,
        on_change=lambda change: None, publishes=list, clock_synced=lambda: True,
        last_value=lambda name: None, on_last_value=lambda lv, info: None, **kwargs)


async def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> float:
    """Poll ``condition`` every 10 ms; return the seconds it took, fail after ``timeout``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)
    return loop.time() - start


def frame(msg: Message, to: int | None = None) -> PaxosFrame:
    """A consensus message as the control channel carries it."""
    return PaxosFrame(body=cbor2.dumps(msg.to_wire()), to=to)


class Forger:
    """Sends hand-made control datagrams to ``group:port`` from loopback ``address``.

    Args:
        group: the control group.
        port: the control port.
        address: the source address (any of 127.0.0.0/8).
        key: sign the datagrams with this network key.
    """

    def __init__(self, group: str, port: int, *, address: str = LOOPBACK,
                 key: bytes | None = None) -> None:
        self.group, self.port, self.key = group, port, key
        self._seq: dict[tuple[bytes, str], int] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF,
                             socket.inet_aton(LOOPBACK))
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
        self.sock.bind((address, 0))

    def datagram(self, sender: bytes, msg: object, *, boot: int = 1) -> bytes:
        """Encode ``msg`` as ``sender``'s next datagram of its type (docs/protocol.md)."""
        mtype = type_of(msg)
        seq = self._seq.get((sender, mtype.name), 0)
        self._seq[(sender, mtype.name)] = seq + 1
        return encode_datagram(node_id=sender, type_name=mtype.name,
                               fingerprint=mtype.fingerprint, first_seq=seq,
                               timestamps=[time.time_ns()], payloads=[encode_payload(msg)],
                               boot=boot, key=self.key, max_datagram=None)

    def send(self, sender: bytes, msg: object, *, boot: int = 1) -> None:
        """Send ``msg`` under node id ``sender`` to the group."""
        self.raw(self.datagram(sender, msg, boot=boot))

    def raw(self, datagram: bytes) -> None:
        """Send bytes as they are to the group."""
        self.sock.sendto(datagram, (self.group, self.port))

    def close(self) -> None:
        self.sock.close()


def heartbeat(name: str, *, role: str = "member", **fields: Any) -> Heartbeat:
    """A heartbeat of a current node (give ``nonce``/``ask``/``echo`` as needed)."""
    return Heartbeat(name=name, role=role, version="test", clock_synced=True,
                     publishes=[], subscribes=[], **fields)


class Recorder:
    """Captures every datagram sent to ``group:port`` (or, unicast, to ``address:port``).

    Args:
        port: the port to listen on.
        group: the group to join; None listens for unicast only.
        address: the address to bind (the wildcard for a group).
    """

    def __init__(self, port: int, group: str | None, *, address: str = "") -> None:
        self.datagrams: list[tuple[bytes, str]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.sock.setsockopt(socket.IPPROTO_IP, 49, 0)  # IP_MULTICAST_ALL off: our group only
        self.sock.bind((address, port))
        if group is not None:
            mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(LOOPBACK))
            self.sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        self.sock.setblocking(False)
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        """Read on the running loop until :meth:`stop`."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._read)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def close(self) -> None:
        self.stop()
        self.sock.close()

    def _read(self) -> None:
        for _ in range(1000):
            try:
                data, source = self.sock.recvfrom(65536)
            except BlockingIOError:
                return
            self.datagrams.append((data, source[0]))

    def messages(self, *, key: bytes | None = None) -> list[tuple[bytes, str, bytes]]:
        """``(sender id, type name, payload)`` of every datagram captured (one per message)."""
        out = []
        for data, _ in self.datagrams:
            env = decode_datagram(data, key=key)
            out += [(env.node_id, env.type_name, p) for p in env.payloads]
        return out


def consensus_kinds(recorder: Recorder, *, sender: bytes, key: bytes | None = None) -> list[str]:
    """The kinds of the consensus messages ``sender`` sent that ``recorder`` captured."""
    kinds = []
    for node_id, type_name, payload in recorder.messages(key=key):
        if node_id == sender and type_name == "ganglion.control.Paxos":
            body = cbor2.loads(payload)["body"]
            kinds.append(cbor2.loads(body)[0])
    return kinds
