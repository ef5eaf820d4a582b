"""Multicast transport at the bytes level: receive datagrams from joined groups.

Theory of operation
-------------------
The receive path is built on measurements (two processes, loopback, 64-byte
datagrams): asyncio's ``create_datagram_endpoint`` reads ~70k datagrams/s and
loses ~85% under a blast, because it takes one event-loop pass per datagram and
``recvfrom`` with a 256 KiB buffer (an mmap/munmap each time). Instead, each
socket is registered with ``loop.add_reader`` and, when readable, *drained*:
``recvmsg(65536, ...)`` (a malloc, no mmap; measured ~1 us) until the kernel says
EAGAIN, bounded by ``max_batch`` per wake-up so one busy socket cannot starve
the rest of the loop. The loop clock is read once per drain and handed to every
datagram of it, as zeroconf's ``datagram_received`` does.

Sockets are bound to ``('', port)``, not to a group address: one socket then
serves up to ``igmp_max_memberships`` groups (one fd and one reader for many
types), and ``IP_MULTICAST_ALL=0`` makes it receive only the groups it joined,
so other sockets' groups on the same port stay out. Binding to the group would
need one socket per group. The cost of the wildcard bind is that a unicast
datagram sent to the port is delivered too, from any interface. So every socket
asks for ``IP_PKTINFO`` (where the kernel has it) and both drains drop a datagram
that arrived on another interface than the receiver's, counted as
``wrong_interface``: a node on ``lo`` must not take what a LAN node on the same
host was sent (see :mod:`ganglion.runtime._sockets` for the multicast side). The
check is one more control message per read, parsed where the GRO one is. The
callback is not told which group a datagram came to: the envelope names its type.

Memberships are reference-counted: :meth:`MulticastReceiver.join` and
:meth:`~MulticastReceiver.leave` pair up, and the kernel membership is added on
the first join and dropped on the last leave. Two users of one group (a type
moving between groups while another type still uses the old one) then cannot
cut each other off. Groups are packed onto sockets first-fit; a socket is
opened when all are full and closed when its last group leaves. If the kernel
refuses a membership with ENOBUFS (its limit is lower than we were told), that
socket is marked full and the group goes to another one.

Where the kernel has ``UDP_GRO`` each socket turns it on: a run of datagrams
that one sender sent in a single segmented send (see :mod:`ganglion.runtime._sender`)
and that reached us coalesced (always on loopback) comes back as one buffer plus
the segment size. It is cut into its datagrams, each handed to the callback as if
read alone, or goes whole to a run callback (the endpoint's takes consecutive lone
messages of one stream as one batch). That saves a system call per datagram of
the run; a datagram that was not coalesced comes
back with no control message and is handed on whole. ``recvmsg``, which can
carry that control message, costs about what ``recvfrom`` does (measured:
0.94-0.98 us against 0.79-1.06 us for 1,100 bytes), so every socket is read with
it, GRO or not.

Where the optional C extension ``ganglion._speedups`` is built (see
:mod:`ganglion.runtime._accel`), the reader registered with the loop is its ``drain``,
which does exactly what :meth:`MulticastReceiver._drain` does (that method stays the
reference, and the pure-Python path) with no Python frame before a callback, into a
per-socket 64 KiB buffer. It first offers each datagram to the endpoint's *lane*
(``lane=``), which delivers a known stream's messages itself
(:mod:`ganglion.runtime._incoming`); with a lane, a coalesced run is offered to it
datagram by datagram (what the run callback would deliver and count for it) instead
of going to the run callback whole. Both drains count into one list
(``_counts``) and report errors through :meth:`MulticastReceiver._report`.

IGMP-snooping switches forget a group after ~260 s without a membership
report, and without a querier on the LAN nobody asks for one. So every
``reannounce_seconds`` each membership is dropped and re-added, which makes
the kernel send a fresh report. Datagrams to that group arriving in the few
microseconds between the two calls are lost; that is the price of a report
without raw IGMP sockets. Re-announcing also repairs a membership the kernel
lost (an interface address removed and re-added).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ganglion import defaults
from ganglion.errors import ConfigError, TransportError
from ganglion.runtime import _sockets
from ganglion.runtime._accel import speedups
from ganglion.runtime._lifecycle import ClosesAtOnce
from ganglion.runtime._sender import MulticastSender, SenderStats

__all__ = [
    "DatagramCallback",
    "MulticastReceiver",
    "MulticastSender",
    "ReceiverStats",
    "RunCallback",
    "SenderStats",
]

_log = logging.getLogger(__name__)

#: Called once per datagram: the payload, the sender's (ip, port), and the loop
#: time read once at the start of the drain that received it.
DatagramCallback = Callable[[bytes, tuple[str, int], float], None]
#: Called once per coalesced run (UDP_GRO): the run, its segment size (every
#: datagram but the last has exactly that size), the source and the loop time.
RunCallback = Callable[[bytes, int, tuple[str, int], float], object]

# Largest UDP payload over IPv4 is 65,507 bytes; a 64 KiB buffer never truncates.
_RECV_SIZE = 65536
# The largest UDP payload over IPv4: the default receive limit (no limit).
_UDP_MAX = 65507
_CMSG_SPACE = _sockets.GRO_CMSG_SPACE + _sockets.PKTINFO_CMSG_SPACE
_read_cmsgs = _sockets.read_cmsgs
# A plain int: socket.MSG_TRUNC is an IntFlag, and ``int & IntFlag`` runs enum's Python
# ``__rand__`` per datagram (about 1 us warm, 10-35 us right after the process wakes).
_MSG_TRUNC: int = int(getattr(socket, "MSG_TRUNC", 0x20))
_DEFAULT_MAX_BATCH = 512
#: Indexes of MulticastReceiver._counts (the compiled drain's order).
_C_DATAGRAMS, _C_BYTES, _C_DRAINS, _C_MAX_SEEN, _C_FULL_DRAINS, _C_COALESCED = range(6)


@dataclass(frozen=True, slots=True)
class ReceiverStats:
    """Counters of a :class:`MulticastReceiver` since it was created.

    Attributes:
        datagrams: datagrams handed to the callback.
        bytes: their total payload size.
        drains: reader wake-ups that read at least one datagram.
        max_batch: the most datagrams one drain read.
        full_drains: drains that stopped at the ``max_batch`` bound with data left.
        callback_errors: exceptions the callback raised (logged, then ignored).
        receive_errors: unexpected ``recvmsg`` errors and truncated reads (logged).
        sockets: sockets open now.
        groups: groups joined now.
        rcvbuf: the smallest effective SO_RCVBUF of the open sockets (kernel's
            figure, about twice the request), or 0 with no socket open.
        reannounces: memberships re-announced (drop + add) so far.
        reannounce_errors: re-announcements that failed (logged; retried next time).
        kernel_drops: datagrams the kernel dropped on the open sockets because the
            buffer was full, from ``/proc/net/udp``; None where unavailable.
        coalesced: datagrams that arrived in coalesced runs (UDP_GRO) and were cut
            apart here (included in ``datagrams``).
        gro: whether the open sockets accept coalesced runs.
        oversize: datagrams (or coalesced runs) dropped unread because they were
            larger than ``max_datagram`` (forged, or fragmented far above the budget).
        wrong_interface: datagrams dropped unread because they arrived on another
            interface than the receiver's (a unicast to the port on another interface).
    """

    datagrams: int
    bytes: int
    drains: int
    max_batch: int
    full_drains: int
    callback_errors: int
    receive_errors: int
    sockets: int
    groups: int
    rcvbuf: int
    reannounces: int
    reannounce_errors: int
    kernel_drops: int | None
    coalesced: int = 0
    gro: bool = False
    oversize: int = 0
    wrong_interface: int = 0


class _Slot:
    """One receive socket and the groups it holds."""

    __slots__ = ("buffer", "capacity", "closed", "gro", "groups", "ifindex", "rcvbuf", "sock")

    def __init__(self, sock: socket.socket, capacity: int, rcvbuf: int, gro: bool) -> None:
        self.sock = sock
        self.capacity = capacity
        self.rcvbuf = rcvbuf
        self.gro = gro  # UDP_GRO is on: runs of datagrams may arrive coalesced
        self.groups: set[str] = set()
        self.closed = False
        self.buffer: bytearray | None = None  # the compiled drain's read buffer
        self.ifindex = 0  # the arrival interface datagrams must have (IP_PKTINFO); 0: any


class MulticastReceiver(ClosesAtOnce):
    """Receives datagrams sent to the multicast groups it joined on one port.

    Must be created and used on the event loop's thread (``async_`` rules);
    sockets are opened lazily on the first :meth:`join`.

    Example::

        async with MulticastReceiver("127.0.0.1", 47800, on_datagram) as rx:
            rx.join("239.255.1.7")
            ...
    """

    def __init__(
        self,
        interface: str,
        port: int,
        on_datagram: DatagramCallback,
        *,
        rcvbuf: int = defaults.RCVBUF_BYTES,
        max_memberships_per_socket: int | None = None,
        max_batch: int = _DEFAULT_MAX_BATCH,
        reannounce_seconds: float | None = defaults.REANNOUNCE_SECONDS,
        loop: asyncio.AbstractEventLoop | None = None,
        gro: bool = True,
        on_run: RunCallback | None = None,
        lane: object | None = None,
        max_datagram: int = _UDP_MAX,
    ) -> None:
        """Validate the settings; no socket is opened until the first join.

        Args:
            interface: IPv4 address of the chosen interface (``Interface.address``).
            port: the UDP port every group of this receiver uses.
            on_datagram: called for each datagram; exceptions are logged and counted.
            rcvbuf: SO_RCVBUF to ask for on each socket, in bytes.
            max_memberships_per_socket: groups per socket; None reads
                ``net.ipv4.igmp_max_memberships`` (20 when unreadable).
            max_batch: most datagrams read per socket per loop wake-up.
            reannounce_seconds: period of IGMP re-announcements; None disables them.
            loop: the event loop; None takes the running loop.
            gro: accept coalesced runs of datagrams (UDP_GRO) where the kernel can.
            on_run: called with a whole coalesced run; None cuts each run into its
                datagrams and calls ``on_datagram`` for each, in order.
            lane: a ``ganglion._speedups.Lane`` (``Incoming.lane()``) that may take a
                datagram before ``on_datagram``; used only by the compiled drain.
            max_datagram: largest datagram accepted, in bytes; a larger one (a run
                whose segments are larger) is dropped unread and counted as oversize.

        Raises:
            InterfaceError: ``interface`` is not an IPv4 address of this host.
            ConfigError: the port or a numeric setting is out of range.
            RuntimeError: no loop was given and none is running.
        """
        self._interface = _sockets.validate_interface_address(interface)
        _sockets.check_local_address(self._interface)
        # The arrival interface datagrams must have; 0 (unknown) filters nothing.
        self._ifindex = _sockets.interface_index(self._interface)
        self._port = _sockets.validate_port(port)
        self._on_datagram = on_datagram
        self._on_run = on_run if on_run is not None else self._cut_run
        self._rcvbuf = _positive(rcvbuf, "rcvbuf")
        if max_memberships_per_socket is None:
            max_memberships_per_socket = _sockets.read_max_memberships()
        self._per_socket = _positive(max_memberships_per_socket, "max_memberships_per_socket")
        self._max_batch = _positive(max_batch, "max_batch")
        self._max_datagram = _positive(max_datagram, "max_datagram")
        if reannounce_seconds is not None and not reannounce_seconds > 0:
            raise ConfigError(f"reannounce_seconds must be > 0 or None, not {reannounce_seconds!r}")
        self._reannounce_seconds = reannounce_seconds
        self._gro = gro
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._slots: list[_Slot] = []
        self._slot_of: dict[str, _Slot] = {}
        self._refs: dict[str, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._lane = lane
        # datagrams, bytes, drains, largest drain, full drains, coalesced (the _C_* indexes):
        # one list, so the compiled drain adds to the same counters.
        self._counts = [0] * 6
        self._callback_errors = 0
        self._receive_errors = 0
        self._oversize = 0
        self._wrong_interface = 0
        self._reannounces = 0
        self._reannounce_errors = 0

    # -- public API ----------------------------------------------------------

    @property
    def interface(self) -> str:
        """The interface address memberships are made on."""
        return self._interface

    @property
    def port(self) -> int:
        """The UDP port."""
        return self._port

    @property
    def groups(self) -> frozenset[str]:
        """The groups joined now (each at least once)."""
        return frozenset(self._refs)

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def join(self, group: str) -> bool:
        """Take one reference on ``group``, joining it on the first.

        Args:
            group: an IPv4 multicast address.

        Returns:
            True when this call made the kernel membership, False when the group
            was already joined and only its reference count went up.

        Raises:
            ConfigError: ``group`` is not an IPv4 multicast address.
            InterfaceError: the interface address is gone from this host.
            TransportError: a socket could not be opened or the kernel refused
                the membership (logged). Raised rather than returned because a
                subscriber would otherwise wait forever for data.
            TransportError: the receiver is closed (errno EBADF).
        """
        self._check_open()
        group = _sockets.validate_group(group)
        if group in self._refs:
            self._refs[group] += 1
            return False
        slot = self._add_membership(group)
        slot.groups.add(group)
        self._slot_of[group] = slot
        self._refs[group] = 1
        self._ensure_timer()
        return True

    def leave(self, group: str) -> bool:
        """Drop one reference on ``group``, leaving it on the last.

        Leaving a group that is not joined does nothing. A socket left with no
        group is closed.

        Args:
            group: an IPv4 multicast address.

        Returns:
            True when this call dropped the kernel membership.

        Raises:
            ConfigError: ``group`` is not an IPv4 multicast address.
        """
        group = _sockets.validate_group(group)
        count = self._refs.get(group, 0)
        if count == 0:
            return False
        if count > 1:
            self._refs[group] = count - 1
            return False
        del self._refs[group]
        slot = self._slot_of.pop(group)
        slot.groups.discard(group)
        try:
            _sockets.drop_membership(slot.sock, group, self._interface)
        except OSError as exc:
            # Closing the socket below drops the membership anyway.
            _log.warning("leaving %s: %s", group, exc)
        if not slot.groups:
            self._close_slot(slot)
        if not self._refs:
            self._cancel_timer()
        return True

    def refcount(self, group: str) -> int:
        """How many :meth:`join` calls on ``group`` are not yet matched by :meth:`leave`."""
        return self._refs.get(_sockets.validate_group(group), 0)

    def reannounce(self) -> int:
        """Re-announce every membership now (drop and re-add it).

        The periodic timer calls this; tests and callers may too.

        Returns:
            The number of memberships re-announced successfully.
        """
        done = 0
        for group, slot in list(self._slot_of.items()):
            try:
                _sockets.drop_membership(slot.sock, group, self._interface)
                _sockets.add_membership(slot.sock, group, self._interface)
            except OSError as exc:
                self._reannounce_errors += 1
                _log.warning("re-announcing %s failed (will retry): %s", group, exc)
                continue
            done += 1
        self._reannounces += done
        return done

    def stats(self) -> ReceiverStats:
        """A snapshot of the counters (reads ``/proc/net/udp`` for kernel drops)."""
        open_slots = [s for s in self._slots if not s.closed]
        datagrams, nbytes, drains, max_seen, full_drains, coalesced = self._counts
        return ReceiverStats(
            datagrams=datagrams,
            bytes=nbytes,
            drains=drains,
            max_batch=max_seen,
            full_drains=full_drains,
            callback_errors=self._callback_errors,
            receive_errors=self._receive_errors,
            sockets=len(open_slots),
            groups=len(self._refs),
            rcvbuf=min((s.rcvbuf for s in open_slots), default=0),
            reannounces=self._reannounces,
            reannounce_errors=self._reannounce_errors,
            kernel_drops=_sockets.kernel_drops(s.sock for s in open_slots),
            coalesced=coalesced,
            gro=bool(open_slots) and all(s.gro for s in open_slots),
            oversize=self._oversize,
            wrong_interface=self._wrong_interface,
        )

    def close(self) -> None:
        """Leave every group and close every socket; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        for slot in list(self._slots):
            self._close_slot(slot)
        self._slot_of.clear()
        self._refs.clear()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._refs)} groups"
        return f"<MulticastReceiver {self._interface}:{self._port} {state}>"

    # -- private: sockets and memberships -------------------------------------

    def _add_membership(self, group: str) -> _Slot:
        """Put ``group`` on the first socket with room, opening one if needed."""
        for slot in self._slots:
            if len(slot.groups) >= slot.capacity:
                continue
            try:
                _sockets.add_membership(slot.sock, group, self._interface)
            except TransportError as exc:
                if exc.errno != errno.ENOBUFS:
                    _log.error("%s", exc)
                    raise
                # The kernel's limit is lower than we assumed: this socket is full.
                slot.capacity = len(slot.groups)
                continue
            return slot
        slot = self._open_slot()
        try:
            _sockets.add_membership(slot.sock, group, self._interface)
        except OSError as exc:
            _log.error("%s", exc)
            self._close_slot(slot)
            raise
        return slot

    def _open_slot(self) -> _Slot:
        """Open a socket, register its reader, and remember it."""
        sock = _sockets.open_receive_socket(self._port, self._rcvbuf)
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        slot = _Slot(sock, self._per_socket, rcvbuf, self._gro and _sockets.enable_gro(sock))
        ifindex = self._ifindex if self._ifindex and _sockets.enable_pktinfo(sock) else 0
        slot.ifindex = ifindex
        if speedups is None:
            self._loop.add_reader(sock.fileno(), self._drain, slot)
        else:
            # The compiled drain, called by the loop with no Python frame in between.
            slot.buffer = bytearray(_RECV_SIZE)
            self._loop.add_reader(sock.fileno(), functools.partial(
                speedups.drain, sock.fileno(), slot, self._max_batch, slot.buffer, self._lane,
                self._on_datagram, self._on_run, self._loop.time, self._report, self._counts,
                self._max_datagram, ifindex))
        self._slots.append(slot)
        return slot

    def _close_slot(self, slot: _Slot) -> None:
        """Unregister and close one socket (the kernel drops its memberships)."""
        if slot.closed:
            return
        slot.closed = True
        self._loop.remove_reader(slot.sock.fileno())
        slot.sock.close()
        self._slots.remove(slot)

    # -- private: the drain loop ----------------------------------------------

    def _drain(self, slot: _Slot) -> None:
        """Read until EAGAIN or ``max_batch`` datagrams; the reader callback.

        A coalesced run (UDP_GRO) comes with its segment size; it goes to the run
        callback whole, and counts as the datagrams it holds. This is the reference
        for the compiled drain (``ganglion._speedups.drain``), used when that is not.
        """
        recvmsg = slot.sock.recvmsg
        on_datagram = self._on_datagram
        on_run = self._on_run
        now = self._loop.time()
        limit = self._max_batch
        max_size = self._max_datagram
        ifindex = slot.ifindex
        count = 0
        skipped = 0  # dropped unread; they count towards the bound of one drain too
        coalesced = 0
        nbytes = 0
        while count + skipped < limit:
            try:
                data, ancdata, flags, source = recvmsg(_RECV_SIZE, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._report("receive", exc)
                break
            nbytes += len(data)
            size, arrived = _read_cmsgs(ancdata) if ancdata else (0, 0)
            if ifindex and arrived and arrived != ifindex:
                skipped += 1
                self._report("wrong_interface", arrived)
                continue
            if flags & _MSG_TRUNC:
                skipped += 1
                self._report("truncated", len(data))
                continue
            if (size if size and size < len(data) else len(data)) > max_size:
                skipped += 1
                self._report("oversize", len(data))
                continue
            if not size or size >= len(data):
                count += 1
                try:
                    on_datagram(data, source, now)
                except Exception as exc:
                    self._report("callback", exc)
            else:
                run = -(-len(data) // size)  # datagrams in the run (the last may be shorter)
                count += run
                coalesced += run
                try:
                    on_run(data, size, source, now)
                except Exception as exc:
                    self._report("run", exc)
            if slot.closed:
                break
        if count:
            counts = self._counts
            counts[_C_DATAGRAMS] += count
            counts[_C_BYTES] += nbytes
            counts[_C_DRAINS] += 1
            if count > counts[_C_MAX_SEEN]:
                counts[_C_MAX_SEEN] = count
            if count >= limit:
                counts[_C_FULL_DRAINS] += 1
            counts[_C_COALESCED] += coalesced

    def _report(self, kind: str, detail: object) -> None:
        """Count and log what a drain could not deliver (both drains call this).

        ``kind``: ``receive`` (the read failed: an OSError), ``truncated`` (a read of
        ``detail`` bytes larger than any datagram), ``oversize`` (a datagram of ``detail``
        bytes above ``max_datagram``), ``wrong_interface`` (a datagram that arrived on
        interface index ``detail``, not the receiver's), ``callback`` or ``run`` (the
        datagram or run callback raised ``detail``).
        """
        if kind == "receive":
            self._receive_errors += 1
            _log.warning("receive error on port %d: %s", self._port, detail)
        elif kind == "oversize":
            # Counted, and logged once: a flood of them must not flood the log too.
            self._oversize += 1
            if self._oversize == 1:
                _log.warning("dropped a %s-byte datagram on port %d: above the %d-byte "
                             "limit (max_datagram); further ones are only counted",
                             detail, self._port, self._max_datagram)
        elif kind == "wrong_interface":
            # Not an error of ours: another node's unicast reached our socket. Counted,
            # and logged once at debug level.
            self._wrong_interface += 1
            if self._wrong_interface == 1:
                _log.debug("dropped a datagram on port %d that arrived on interface %s, not "
                           "this receiver's (%d); further ones are only counted",
                           self._port, detail, self._ifindex)
        elif kind == "truncated":
            self._receive_errors += 1
            # Larger than any datagram; nothing of it can be trusted.
            _log.warning("a %s-byte read on port %d was truncated; dropped", detail, self._port)
        else:
            self._callback_errors += 1
            what = "run callback raised; the rest of the run dropped" if kind == "run" \
                else "datagram callback raised; datagram dropped"
            _log.error(what, exc_info=detail if isinstance(detail, BaseException) else None)

    def _cut_run(self, data: bytes, size: int, source: tuple[str, int], now: float) -> None:
        """The default run callback: each datagram of the run to ``on_datagram`` alone."""
        on_datagram = self._on_datagram
        for at in range(0, len(data), size):
            try:
                on_datagram(data[at:at + size], source, now)
            except Exception:
                self._callback_errors += 1
                _log.exception("datagram callback raised; datagram dropped")

    # -- private: re-announce timer -------------------------------------------

    def _ensure_timer(self) -> None:
        if self._timer is None and self._reannounce_seconds is not None:
            self._timer = self._loop.call_later(self._reannounce_seconds, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed or not self._refs:
            return
        self.reannounce()
        self._ensure_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(errno.EBADF, "MulticastReceiver is closed")


# -- module helpers ----------------------------------------------------------


def _positive(value: int, name: str) -> int:
    """Validate a positive integer setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return value
