"""System (a): raw Python blocking UDP multicast sockets, the ceiling.

Theory of operation: the publisher packs the header into one reused buffer and
calls ``sendto`` in a tight loop on a blocking socket whose multicast interface is
loopback. The subscriber binds a blocking socket to the group (``IP_MULTICAST_ALL``
off, so it sees only that group), joins on loopback, raises ``SO_RCVBUF`` to
ganglion's default, and calls ``recv_into`` on a reused buffer. ``SO_RCVTIMEO``
(rather than a Python socket timeout, which would add a ``poll`` per datagram)
wakes the loop every 50 ms to check the stop rule. Nothing else happens per
datagram beyond the shared :class:`Tally` bookkeeping.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from _transport_common import HEADER, make_payload
from _transport_role import LOOPBACK, RoleConfig, StopRule, sleep_until

#: Linux IP_MULTICAST_ALL (not exported by the socket module).
IP_MULTICAST_ALL = 49
#: Same receive buffer ganglion asks for, so the ceiling is not a buffer-size artefact.
RCVBUF_BYTES = 4 * 1024 * 1024
#: How often a blocked receive wakes to check the stop rule.
WAKE_SECONDS = 0.05


def open_sender() -> socket.socket:
    """Return a blocking UDP socket that sends multicast on loopback only."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    return sock


def open_receiver(group: str, port: int) -> socket.socket:
    """Return a blocking socket bound to ``group:port`` and joined on loopback.

    Args:
        group: the multicast group to join.
        port: the UDP port to bind.

    Returns:
        The socket, with ``SO_RCVTIMEO`` set to :data:`WAKE_SECONDS`.

    Raises:
        OSError: if the socket cannot be bound or the group joined.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
        sock.bind((group, port))
        mreq = socket.inet_aton(group) + socket.inet_aton(LOOPBACK)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        usec = int(WAKE_SECONDS * 1e6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, usec))
    except OSError:
        sock.close()
        raise
    return sock


def run_subscriber(cfg: RoleConfig, ready: Callable[[], None]) -> dict[str, Any]:
    """Receive one trial's messages and return the tally summary.

    Args:
        cfg: the trial's configuration.
        ready: called once the group is joined, before the first receive.

    Returns:
        :meth:`Tally.summary` plus the effective receive buffer size.

    Raises:
        OSError: if the receive socket cannot be set up.
    """
    tally = cfg.new_tally()
    buf = bytearray(max(cfg.size, 2048))
    unpack = HEADER.unpack_from
    now = time.monotonic_ns
    on_message = tally.on_message
    with open_receiver(cfg.group, cfg.port) as sock:
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        recv_into = sock.recv_into
        ready()
        stop = StopRule(cfg, now())
        while not stop.done(tally, now()):
            # Drain until the timeout fires; the stop rule is checked between bursts
            # and every `count` datagrams so a flood cannot keep the loop running forever.
            for _ in range(cfg.count):
                try:
                    recv_into(buf)
                except BlockingIOError:
                    break
                seq, t_ns = unpack(buf)
                on_message(seq, t_ns, now())
                if tally.complete:
                    break
    summary = tally.summary()
    summary["rcvbuf"] = rcvbuf
    return summary


def run_publisher(cfg: RoleConfig) -> dict[str, Any]:
    """Send ``cfg.count`` messages, flat out (blast) or at ``cfg.rate`` (paced).

    Returns:
        ``{"sent", "t_start_ns", "t_end_ns"}``.

    Raises:
        OSError: if the send socket cannot be set up or a send fails.
    """
    payload = make_payload(cfg.size)
    pack_into = HEADER.pack_into
    now = time.monotonic_ns
    addr = (cfg.group, cfg.port)
    with open_sender() as sock:
        sendto = sock.sendto
        t_start = now()
        if cfg.mode == "blast":
            for seq in range(cfg.count):
                pack_into(payload, 0, seq, now())
                sendto(payload, addr)
        else:
            period_ns = int(1e9 / cfg.rate)
            for seq in range(cfg.count):
                sleep_until(t_start + seq * period_ns)
                pack_into(payload, 0, seq, now())
                sendto(payload, addr)
        t_end = now()
    return {"sent": cfg.count, "t_start_ns": t_start, "t_end_ns": t_end}
