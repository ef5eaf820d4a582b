"""Socket-level helpers for IPv4 multicast: options, memberships, validation.

Theory of operation
-------------------
Everything here is a thin, synchronous wrapper around one ``setsockopt`` or
``bind``; the asyncio receiver and sender in :mod:`ganglion.runtime.transport`
compose them. Each helper turns the kernel's errno into a ganglion error whose
message says what to do: an interface address that is not on this host becomes
:class:`~ganglion.errors.InterfaceError`, a bad group or port
:class:`~ganglion.errors.ConfigError`, and any other failure
:class:`~ganglion.errors.TransportError` (an ``OSError``, so ``errno`` survives).

Linux specifics, with fallbacks so the module imports anywhere:

* ``IP_MULTICAST_ALL`` (49) defaults to 1, which makes a socket bound to the
  wildcard address receive *every* group any socket on the host joined on that
  port. We set it to 0 so a socket receives only its own groups.
* ``SO_REUSEADDR`` alone lets every process bind the port on Linux; receive
  sockets there must *not* set ``SO_REUSEPORT``. Since Linux 6.5, when exactly
  one socket on the host joined a group on the arrival interface, UDP early
  demux hands the datagram to that socket and ``inet_steal_sock`` then re-picks
  a socket of its reuseport group by a hash of the addresses, ignoring
  memberships: a node on ``lo`` took about half the control traffic that a node
  on ``eth0`` of the same host should have had (measured: 9 of 20 datagrams),
  and that node lost it. BSD and macOS need ``SO_REUSEPORT`` to share a port,
  so it is set there.
* ``net.ipv4.igmp_max_memberships`` (default 20) caps memberships per socket;
  the receiver spreads groups over several sockets to stay under it.
* ``SO_RCVBUF`` is capped by ``net.core.rmem_max``; like systemd's
  ``fd_increase_rxbuf`` we fall back to ``SO_RCVBUFFORCE`` when that cap bites
  and the process has CAP_NET_ADMIN. The kernel doubles the request for its
  bookkeeping, so the effective size read back is about twice what was asked.
* UDP segmentation offload (``UDP_SEGMENT``, Linux 4.18+) sends a run of
  equal-size datagrams (the last may be shorter) in one ``sendmsg``; the kernel
  cuts it into ordinary datagrams, in software where the device cannot. Its
  receiving twin ``UDP_GRO`` (Linux 5.0+) lets such a run, coalesced on its way
  in (always on loopback, by the driver on some NICs), reach a socket as one
  buffer plus its segment size in a control message. Both are optional: where
  the kernel refuses them, datagrams go one per system call.
* ``IP_PKTINFO`` makes every read carry the index of the interface the datagram
  arrived on. A socket bound to the wildcard address still takes a *unicast*
  datagram to its port arriving on any interface (a catch-up answer meant for a
  node on ``eth0`` may reach one on ``lo`` of the same host), and where
  ``IP_MULTICAST_ALL`` is missing, other groups too; the receiver drops what
  arrived elsewhere than its interface (``wrong_interface``).
* ``/proc/net/udp`` lists a per-socket ``drops`` count (datagrams the kernel
  discarded because the receive buffer was full); reading it is a file read
  per call, so it is done only when stats are asked for.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
import struct
import sys
from collections.abc import Iterable
from pathlib import Path

from ganglion import defaults
from ganglion.errors import ConfigError, InterfaceError, TransportError
from ganglion.netif import list_interfaces

__all__ = [
    "GRO_CMSG_SPACE",
    "GSO_MAX_BYTES",
    "GSO_MAX_SEGMENTS",
    "IP_MULTICAST_ALL",
    "add_membership",
    "check_local_address",
    "drop_membership",
    "enable_gro",
    "enable_pktinfo",
    "gro_segment_size",
    "gso_available",
    "gso_cmsg",
    "interface_index",
    "kernel_drops",
    "open_receive_socket",
    "open_send_socket",
    "read_cmsgs",
    "read_max_memberships",
    "set_rcvbuf",
    "validate_group",
    "validate_interface_address",
    "validate_port",
]

_log = logging.getLogger(__name__)

#: Linux's IP_MULTICAST_ALL; older Pythons' socket module lacks the constant.
IP_MULTICAST_ALL: int = getattr(socket, "IP_MULTICAST_ALL", 49)
#: SO_RCVBUFFORCE (33 on Linux; the socket module does not export it).
_SO_RCVBUFFORCE: int | None = getattr(
    socket, "SO_RCVBUFFORCE", 33 if sys.platform.startswith("linux") else None
)

#: Whether receive sockets share their port with SO_REUSEPORT: not on Linux, where
#: SO_REUSEADDR suffices and SO_REUSEPORT misdelivers multicast (module notes).
_SHARE_WITH_REUSEPORT: bool = hasattr(socket, "SO_REUSEPORT") and not sys.platform.startswith(
    "linux")

#: SOL_UDP and its options UDP_SEGMENT (send) and UDP_GRO (receive); Python 3.11's
#: socket module exports none of the latter two.
SOL_UDP: int = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT: int = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO: int = getattr(socket, "UDP_GRO", 104)
#: Most datagrams and bytes one segmented send may carry (defined with the other
#: limits in ganglion.defaults, which the sans-I/O send side reads too).
GSO_MAX_SEGMENTS = defaults.GSO_MAX_SEGMENTS
GSO_MAX_BYTES = defaults.GSO_MAX_BYTES
#: Room for the UDP_GRO control message (an int: the segment size).
GRO_CMSG_SPACE: int = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_U16 = struct.Struct("=H").pack
#: IP_PKTINFO (8 on Linux; Python 3.11's socket module lacks it) and the room for its
#: control message (struct in_pktinfo: the interface index, then two addresses).
IP_PKTINFO: int = getattr(socket, "IP_PKTINFO", 8)
PKTINFO_CMSG_SPACE: int = socket.CMSG_SPACE(12) if hasattr(socket, "CMSG_SPACE") else 0
_IFINDEX = struct.Struct("=i")

_MAX_MEMBERSHIPS_PATH = Path("/proc/sys/net/ipv4/igmp_max_memberships")
_DEFAULT_MAX_MEMBERSHIPS = 20
_PROC_NET_UDP = Path("/proc/net/udp")

# errnos that mean "this address is not an address of this host".
_NOT_LOCAL = {errno.EADDRNOTAVAIL, errno.ENODEV}


def validate_interface_address(address: str) -> str:
    """Check that ``address`` is a dotted-quad IPv4 unicast address.

    Args:
        address: the interface address, e.g. ``"127.0.0.1"``.

    Returns:
        The address in canonical form.

    Raises:
        InterfaceError: it is not an IPv4 address, or it is a multicast or
            unspecified address.
    """
    try:
        addr = ipaddress.IPv4Address(address)
    except (ipaddress.AddressValueError, ValueError):
        raise InterfaceError(
            f"interface address {address!r} is not an IPv4 address; pass the chosen "
            f"interface's address (see ganglion.netif.resolve_interface)"
        ) from None
    if addr.is_multicast or addr.is_unspecified:
        raise InterfaceError(f"interface address {address} must be a unicast address of this host")
    return str(addr)


def check_local_address(address: str) -> None:
    """Check that ``address`` belongs to an interface of this host.

    Binding a throw-away UDP socket is the cheapest portable test: the kernel
    refuses with EADDRNOTAVAIL for an address no interface has.

    Args:
        address: a validated IPv4 address.

    Raises:
        InterfaceError: no interface of this host has the address.
        TransportError: the probe socket failed for another reason.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((address, 0))
    except OSError as exc:
        if exc.errno in _NOT_LOCAL:
            raise InterfaceError(
                f"no interface of this host has the address {address}; choose one with "
                f"--iface (e.g. --iface lo for this host only)"
            ) from exc
        raise TransportError(exc.errno, f"cannot use interface address {address}: {exc}") from exc
    finally:
        probe.close()


def validate_group(group: str) -> str:
    """Check that ``group`` is an IPv4 multicast address.

    Args:
        group: e.g. ``"239.255.3.7"``.

    Returns:
        The group in canonical form.

    Raises:
        ConfigError: it is not an IPv4 multicast address.
    """
    try:
        addr = ipaddress.IPv4Address(group)
    except (ipaddress.AddressValueError, ValueError):
        raise ConfigError(f"multicast group {group!r} is not an IPv4 address") from None
    if not addr.is_multicast:
        raise ConfigError(
            f"{group} is not a multicast group (224.0.0.0/4); ganglion only multicasts"
        )
    return str(addr)


def validate_port(port: int) -> int:
    """Check that ``port`` is a usable UDP port number (1..65535).

    Raises:
        ConfigError: it is not.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigError(f"UDP port {port!r} is not in 1..65535")
    return port


def read_max_memberships(path: Path = _MAX_MEMBERSHIPS_PATH) -> int:
    """The kernel's per-socket multicast membership limit.

    Args:
        path: where to read it (``/proc/sys/net/ipv4/igmp_max_memberships``).

    Returns:
        The limit, or 20 (Linux's default) when it cannot be read.
    """
    try:
        value = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return _DEFAULT_MAX_MEMBERSHIPS
    return value if value > 0 else _DEFAULT_MAX_MEMBERSHIPS


def open_receive_socket(port: int, rcvbuf: int) -> socket.socket:
    """Open a non-blocking UDP socket bound to ``('', port)`` for multicast.

    SO_REUSEADDR (SO_REUSEPORT off Linux; see the module notes for why not on
    Linux) lets several sockets and processes bind the same port; each multicast
    datagram is delivered to every socket that joined its group on the interface
    it arrived on. IP_MULTICAST_ALL=0 keeps the others' groups out.

    Args:
        port: the UDP port.
        rcvbuf: the receive buffer to ask for, in bytes.

    Returns:
        The bound socket.

    Raises:
        TransportError: bind failed (EADDRINUSE when another program holds the
            port without SO_REUSEADDR), or an option could not be set.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if _SHARE_WITH_REUSEPORT:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        _set_multicast_all_off(sock)
        set_rcvbuf(sock, rcvbuf)
        sock.setblocking(False)
        sock.bind(("", port))
    except OSError as exc:
        sock.close()
        if isinstance(exc, TransportError):
            raise
        if exc.errno == errno.EADDRINUSE:
            message = (
                f"UDP port {port} is in use by a program that did not set SO_REUSEADDR; "
                f"stop it or choose another port"
            )
        else:
            message = f"cannot open a multicast socket on UDP port {port}: {exc}"
        _log.error(message)
        raise TransportError(exc.errno, message) from exc
    return sock


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Raise the socket's receive buffer, forcing past rmem_max where allowed.

    Args:
        sock: the socket.
        size: the buffer to ask for, in bytes.

    Returns:
        The effective size the kernel reports (about twice the granted request).
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if effective < size and _SO_RCVBUFFORCE is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
        except OSError:
            # No CAP_NET_ADMIN: keep what rmem_max allows and say how to get more.
            _log.debug(
                "receive buffer capped at %d bytes; raise net.core.rmem_max for more", effective
            )
        effective = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return int(effective)


def add_membership(sock: socket.socket, group: str, interface: str) -> None:
    """Join ``group`` on the interface with address ``interface``.

    Raises:
        InterfaceError: no interface of this host has that address.
        TransportError: the kernel refused otherwise; ``errno`` is ENOBUFS when
            the socket already holds ``igmp_max_memberships`` groups.
    """
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, _mreq(group, interface))
    except OSError as exc:
        if exc.errno in _NOT_LOCAL:
            raise InterfaceError(
                f"cannot join {group}: no interface of this host has the address {interface}"
            ) from exc
        raise TransportError(exc.errno, f"cannot join multicast group {group}: {exc}") from exc


def drop_membership(sock: socket.socket, group: str, interface: str) -> bool:
    """Leave ``group``; returns False when the socket was not a member (not an error)."""
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, _mreq(group, interface))
    except OSError as exc:
        if exc.errno in {errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV}:
            return False
        raise TransportError(exc.errno, f"cannot leave multicast group {group}: {exc}") from exc
    return True


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to hand coalesced runs of datagrams to ``sock`` whole (UDP_GRO).

    Returns:
        Whether it agreed; where it did not (not Linux, a kernel before 5.0), the
        socket receives one datagram per read as before.
    """
    if not sys.platform.startswith("linux") or not GRO_CMSG_SPACE:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def gro_segment_size(ancdata: list[tuple[int, int, bytes]]) -> int:
    """The segment size of a coalesced read, from ``recvmsg``'s control messages; 0 if none."""
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
            return int.from_bytes(data[:4], sys.byteorder)
    return 0


def enable_pktinfo(sock: socket.socket) -> bool:
    """Ask for each datagram's arrival interface (IP_PKTINFO) on reads of ``sock``.

    Returns:
        Whether the kernel agreed (Linux does); elsewhere the receiver cannot filter
        by interface and relies on memberships alone.
    """
    if not sys.platform.startswith("linux") or not PKTINFO_CMSG_SPACE:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    except OSError:
        return False
    return True


def read_cmsgs(ancdata: list[tuple[int, int, bytes]]) -> tuple[int, int]:
    """The segment size (UDP_GRO; 0 if none) and arrival interface (0 if none) of a read."""
    size = ifindex = 0
    for level, kind, data in ancdata:
        if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
            size = int.from_bytes(data[:4], sys.byteorder)
        elif level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 4:
            ifindex = _IFINDEX.unpack_from(data)[0]
    return size, ifindex


def interface_index(address: str) -> int:
    """The kernel's index of the interface that has ``address``; 0 when unknown.

    Args:
        address: an IPv4 address of this host.

    Returns:
        The index (``if_nametoindex``), or 0 where the interfaces cannot be listed
        (then nothing is filtered by interface).
    """
    try:
        for iface in list_interfaces():
            if iface.address == address:
                return socket.if_nametoindex(iface.name)
    except (OSError, ImportError, ValueError) as exc:
        _log.debug("cannot find the interface index of %s: %s", address, exc)
    return 0


def gso_cmsg(segment_size: int) -> list[tuple[int, int, bytes]]:
    """The control message that makes one ``sendmsg`` leave as datagrams of ``segment_size``."""
    return [(SOL_UDP, UDP_SEGMENT, _U16(segment_size))]


def gso_available(sock: socket.socket) -> bool:
    """Whether the kernel knows UDP_SEGMENT (a send may still refuse it: see the sender)."""
    if not sys.platform.startswith("linux") or not hasattr(sock, "sendmsg"):
        return False
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def open_send_socket(interface: str, ttl: int, *, loop_back: bool = True) -> socket.socket:
    """Open a non-blocking UDP socket that multicasts out of ``interface``.

    Args:
        interface: the IPv4 address of the interface to send on (IP_MULTICAST_IF).
        ttl: the multicast TTL; 1 keeps datagrams on the local link.
        loop_back: IP_MULTICAST_LOOP, so receivers on this host see our datagrams.

    Returns:
        The socket.

    Raises:
        InterfaceError: no interface of this host has the address.
        ConfigError: the TTL is not in 0..255.
        TransportError: another option failed.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise ConfigError(f"multicast TTL {ttl!r} is not in 0..255")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1 if loop_back else 0)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno in _NOT_LOCAL:
            raise InterfaceError(
                f"cannot send multicast on {interface}: no interface of this host has that address"
            ) from exc
        raise TransportError(exc.errno, f"cannot open a multicast send socket: {exc}") from exc
    return sock


def kernel_drops(sockets: Iterable[socket.socket], table: Path = _PROC_NET_UDP) -> int | None:
    """Sum the kernel's receive-buffer drop counters for ``sockets``.

    Args:
        sockets: open UDP sockets of this process.
        table: the ``/proc/net/udp`` table to read (tests pass a copy).

    Returns:
        The total drops, or None where the table cannot be read (not Linux).
    """
    inodes = set()
    for sock in sockets:
        if sock.fileno() >= 0:
            inodes.add(os.fstat(sock.fileno()).st_ino)
    if not inodes:
        return 0
    try:
        lines = table.read_text(encoding="ascii").splitlines()[1:]
    except OSError:
        return None
    total = 0
    for line in lines:
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        fields = line.split()
        if len(fields) >= 13 and fields[9].isdigit() and int(fields[9]) in inodes:
            total += int(fields[12])
    return total


# -- private helpers ---------------------------------------------------------


def _mreq(group: str, interface: str) -> bytes:
    """struct ip_mreq: the group, then the interface address."""
    return struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(interface))


def _set_multicast_all_off(sock: socket.socket) -> None:
    """Receive only joined groups; a no-op where the option does not exist."""
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL, 0)
    except OSError as exc:
        if exc.errno not in {errno.ENOPROTOOPT, errno.EINVAL}:
            raise
        _log.debug("IP_MULTICAST_ALL not supported; sockets may see other groups on the port")
