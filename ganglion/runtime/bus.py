"""The node's local bus for external plugins: a zmq XSUB/XPUB pair on ipc:// and tcp://.

Theory of operation. External plugins are separate processes in any language;
the frames they exchange with the node are specified in docs/plugin-frames.md.
The bus binds two sockets:

* an **XSUB** at the *publish* address (``ipc://<base>.pub``, and
  ``tcp://127.0.0.1:PORT`` if asked). Plugins connect PUB (or XPUB) sockets to
  it and send ``[type name, CBOR payload]``. The bus subscribes to everything
  (``\\x01``), validates each message (exactly two frames, a valid type name, a
  CBOR map payload), hands it to ``on_publish`` and, with ``forward`` on, sends
  it straight on to the plugins subscribed to that type. Bad messages are
  counted and dropped; nothing a plugin sends can stop the bus.
* an **XPUB** at the *subscribe* address (``ipc://<base>.sub``, and
  ``tcp://127.0.0.1:PORT+1``). Plugins connect SUB sockets and subscribe to type
  names; they receive ``[type name, CBOR payload, meta]``. The node calls
  :meth:`PluginBus.deliver` for every message of a type some plugin wants.

Subscription events. zmq's XPUB, *without* ``XPUB_VERBOSE``, reports a topic's
subscribe (``\\x01name``) only when the first subscriber of it appears and its
unsubscribe (``\\x00name``) only when the last one leaves, whether by
unsubscribing or by its process dying (zmq unsubscribes a closed connection's
topics). That is exactly the reference count the node needs (join a group with
the first subscriber, leave with the last); tests/runtime/test_bus.py checks it.
The bus also keeps the set of live topics, so :meth:`PluginBus.deliver` does no
encoding for types nobody wants. Topics that are not valid type names (the
empty prefix, ``sensors.``) still receive matching messages but are not passed
to ``on_subscribe``: a prefix names no group to join.

Back-pressure. Each plugin connection has a queue of ``hwm`` messages (zmq
SNDHWM and RCVHWM). The XPUB is set to ``XPUB_NODROP`` and sent to without
blocking, so a plugin that stops reading never blocks the node: the send is
refused, the message is not delivered to that type's plugin subscribers, and
``dropped`` counts it. On the publish side the bus drains its XSUB as fast as it
can, so a publisher's queue fills (and its non-blocking send is refused, which
the client counts) only when plugins publish faster than the bus moves messages
in all: below that capacity nothing is refused. (The price of counting is that a stuck subscriber of a type also
costs the other subscribers *of that type* the messages refused while it is
full; other types are unaffected.)

Bad input. A malformed publish (frames, type name, payload) or one the node
refuses (too large for a datagram, not matching its registered class) is
counted by reason and dropped. Only the first of each (plugin, reason) gets a
log line, with an excerpt of at most 64 bytes, never the frame; the rest are
summed into one summary line per ``summary_interval``
(:mod:`ganglion.runtime._bus_report`). A plugin is named by what zmq knows of
its connection: ``plugin-N`` on a restricted bus, its process id on ipc, its
address on tcp. Frames above ``max_message`` bytes (zmq ``MAXMSGSIZE``, 1 MiB by
default) are never buffered: zmq drops the connection mid-frame.

Access. ipc sockets are created 0600 inside a private 0700 directory and only
then moved to their final path, so no other user can connect even in the
instant after the bind. A TCP bus on 127.0.0.1 is open to every local user
unless a ``secret`` is given: then both sockets are CURVE servers that accept
only clients holding the same key pair (:mod:`ganglion.runtime._bus_auth`).

The hot loop. When the publish socket becomes readable the bus drains it without
waiting (``NOBLOCK`` until ``EAGAIN``, at most ``DRAIN_BUDGET`` messages before it lets
the event loop run other work) and moves bytes: a message of a type name already
checked (kept with what to do with it: forward to plugins, hand to the node) whose
payload passes :func:`~ganglion.types._payload.payload_problem`'s check is forwarded
with its meta frame as it came, never decoded. Where the compiled
``ganglion._busfast`` loads (:mod:`ganglion.runtime._bus_accel`) that loop runs in C
on the same sockets, passing only payloads in a plain subset it can check itself
and leaving every other message to :meth:`PluginBus._drain_python`'s path, the
reference. The node gets a plugin's message only while it wants the type
(``node_wants``: some other node or an in-process subscriber wants it, or it is the
type's first message); :meth:`PluginBus.refresh_interest` re-asks after a change.

Everything runs on the event loop: publishes are drained from a reader callback on
the XSUB's zmq descriptor, subscription events come through ``zmq.asyncio``; reads
and sends use synchronous shadows of the sockets with ``DONTWAIT`` (never await).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from ganglion.bus_secret import BusSecret
from ganglion.errors import ConfigError, GanglionError, TransportError
from ganglion.plugin_frames import DEFAULT_HWM, BusAddress, PluginMeta, ipc_address
from ganglion.runtime import _bus_accel
from ganglion.runtime._bus_auth import HandshakeWatch, ZapHandler, secure_server
from ganglion.runtime._bus_report import ReportLimiter, clip, excerpt
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import is_valid_type_name
from ganglion.types._payload import payload_problem

_log = logging.getLogger(__name__)

#: Largest frame a plugin may send (zmq MAXMSGSIZE); a bigger one disconnects it.
#: Far above the largest message that can reach the network (one UDP datagram,
#: 65,507 bytes at most) so plugins may still pass big messages to each other.
DEFAULT_MAX_MESSAGE = 1 << 20

#: Seconds between the summary lines of bad input that was not logged on its own.
DEFAULT_SUMMARY_INTERVAL = 60.0

#: Longest ipc socket path Linux accepts (sun_path is 108 bytes with the NUL).
MAX_IPC_PATH = 107

#: Messages drained in one go before the event loop gets to run other work.
DRAIN_BUDGET = 512

#: Type names remembered as checked, with what to do with them; a bus that sees more
#: distinct names still works, checking the others message by message.
MAX_ROUTES = 4096

#: Route flags: send on to plugin subscribers; hand to the node.
FORWARD, TO_NODE = 1, 2

#: Frames of a message kept for the report (a bad message's first frame names it).
_KEEP_FRAMES = 8

_SUBSCRIBE = 1
_UNSUBSCRIBE = 0
_DONTWAIT = int(zmq.DONTWAIT)  # a plain int: pyzmq's enum costs a few us per message

#: The compiled drain loop, when built (chosen once at import).
_fast = _bus_accel.load()

#: (messages for the node, a message left to the Python path as (frame count,
#: frames, peer) or None, received, forwarded, dropped): what one drain returns.
DrainResult = tuple[list[tuple[str, bytes]], "tuple[int, list[bytes], str | None] | None",
                    int, int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class BusStats:
    """Counters of a :class:`PluginBus` (a snapshot).

    Attributes:
        received: multipart messages read from plugin publishers.
        published: valid ones (well-formed, whatever the node then makes of them).
        to_node: valid ones handed to ``on_publish`` (the node wanted their type).
        forwarded: valid ones sent on to plugin subscribers by the bus itself.
        delivered: messages sent to plugin subscribers by :meth:`PluginBus.deliver`.
        dropped: sends refused because a subscriber's queue was full.
        bad_frames: publishes without exactly two frames.
        bad_type_names: publishes whose first frame is not a valid type name.
        bad_payloads: publishes whose payload is not a CBOR map.
        rejected: valid publishes ``on_publish`` refused with a ganglion error
            (e.g. too large for a datagram, or not matching the registered class).
        callback_errors: other exceptions raised by the on_* callbacks (logged).
        bad_deliveries: payloads from the network, passed on undecoded, that were not
            one plain CBOR map: not sent to plugins (another node's bug, or no key).
        refused_connections: handshakes refused on a bus with a secret (no or wrong key).
        unlogged: bad messages and refusals only counted, not logged on their own line.
        subscriptions: the topics plugins are subscribed to now, sorted.
        compiled: whether the compiled drain loop (``ganglion._busfast``) is in use.
    """

    received: int = 0
    published: int = 0
    to_node: int = 0
    forwarded: int = 0
    delivered: int = 0
    dropped: int = 0
    bad_frames: int = 0
    bad_type_names: int = 0
    bad_payloads: int = 0
    rejected: int = 0
    callback_errors: int = 0
    bad_deliveries: int = 0
    refused_connections: int = 0
    unlogged: int = 0
    subscriptions: tuple[str, ...] = ()
    compiled: bool = False

    @property
    def malformed(self) -> int:
        """Publishes dropped as malformed: bad frames, type names or payloads."""
        return self.bad_frames + self.bad_type_names + self.bad_payloads

    @property
    def refused(self) -> int:
        """Well-formed publishes the node refused (:attr:`rejected`)."""
        return self.rejected


def meta_from_info(info: MessageInfo) -> PluginMeta:
    """Return the meta frame contents for a message the node delivers.

    Args:
        info: the :class:`MessageInfo` the endpoint gave the node's subscriber.

    Returns:
        The matching :class:`PluginMeta`.
    """
    return PluginMeta(sender=info.sender, seq=info.seq, sent_ns=info.sent_ns, local=info.local)


class PluginBus:
    """The node's XSUB/XPUB proxy for external plugins; ``async with`` starts and closes it."""

    def __init__(
        self,
        *,
        ipc_path: Path | None,
        tcp_port: int | None = None,
        on_publish: Callable[[str, bytes], object],
        on_subscribe: Callable[[str], object],
        on_unsubscribe: Callable[[str], object],
        node_wants: Callable[[str], bool] | None = None,
        node_id: bytes = bytes(8),
        forward: bool = True,
        hwm: int = DEFAULT_HWM,
        max_message: int = DEFAULT_MAX_MESSAGE,
        ipc_mode: int = 0o600,
        context: zmq.asyncio.Context | None = None,
        secret: BusSecret | None = None,
        summary_interval: float = DEFAULT_SUMMARY_INTERVAL,
        compiled: bool | None = None,
    ) -> None:
        """Describe a bus; :meth:`start` binds it.

        Args:
            ipc_path: base of the ipc sockets (``<base>.pub`` and ``<base>.sub``
                are created); None for no ipc.
            tcp_port: publish port on 127.0.0.1 (subscribe is ``tcp_port + 1``);
                0 picks a free consecutive pair; None for no TCP.
            on_publish: called with ``(type name, payload)`` for each valid
                message a plugin publishes.
            on_subscribe: called with a type name when its first plugin subscriber appears.
            on_unsubscribe: called with a type name when its last plugin subscriber goes.
            node_wants: whether ``on_publish`` should get the messages of a type now;
                asked at a type's first message and after :meth:`refresh_interest`.
                None hands every valid message to ``on_publish``.
            node_id: the sender id put in the meta of messages the bus forwards itself.
            forward: send plugin publishes on to plugin subscribers of the type.
                A node with this on must not also :meth:`deliver` the messages
                it got from ``on_publish``, or plugins get them twice.
            hwm: queue bound per plugin connection, in messages.
            max_message: largest frame a plugin may send, in bytes.
            ipc_mode: permission bits of the ipc socket files (who may connect).
            context: a zmq asyncio context to share; a private one by default.
                With a ``secret`` it must have no other ZAP handler.
            secret: accept only plugins holding this CURVE key pair, on every
                address (ipc and tcp); None accepts any connection.
            summary_interval: seconds between summary lines of bad input that
                was only counted.
            compiled: use the compiled drain loop: None when it loads
                (``GANGLION_BUS_FAST``), False for the pure-Python reference, True
                to insist (a ConfigError when it is not built).

        Raises:
            ConfigError: neither address is asked for, a port is out of range,
                or an ipc path is too long for a Unix socket.
        """
        if ipc_path is None and tcp_port is None:
            raise ConfigError("the plugin bus needs an ipc_path, a tcp_port, or both")
        if tcp_port is not None and not 0 <= tcp_port <= 65534:
            raise ConfigError(f"plugin bus tcp_port must be 0..65534, got {tcp_port}")
        if len(node_id) != 8:
            raise ConfigError(f"node_id must be 8 bytes, got {len(node_id)}")
        if ipc_path is not None:
            longest = len(os.fsencode(ipc_path)) + len(".pub")
            if longest > MAX_IPC_PATH:
                raise ConfigError(
                    f"ipc path {str(ipc_path)!r} gives socket paths of {longest} bytes; "
                    f"Unix sockets allow {MAX_IPC_PATH}: use a shorter state directory"
                )
        if compiled and _fast is None:
            raise ConfigError("the compiled plugin bus loop (ganglion._busfast) is not "
                              "available; build it (pip install -e .) or use compiled=None")
        self._fast = _fast if compiled is None or compiled else None
        self._ipc_path = ipc_path
        self._tcp_port = tcp_port
        self._on_publish = on_publish
        self._on_subscribe = on_subscribe
        self._on_unsubscribe = on_unsubscribe
        self._node_wants = node_wants
        self._node_id = node_id
        self._forward_on = forward
        self._hwm = hwm
        self._max_message = max_message
        self._ipc_mode = ipc_mode
        self._secret = secret
        self._summary_interval = summary_interval
        self._zap: ZapHandler | None = None
        self._watches: list[HandshakeWatch] = []
        self._reports = ReportLimiter()
        self._own_context = context is None
        self._ctx = context
        self._endpoints: list[BusAddress] = []
        self._ipc_files: list[Path] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._xsub: zmq.asyncio.Socket | None = None
        self._xpub: zmq.asyncio.Socket | None = None
        self._xpub_send: zmq.Socket[bytes] | None = None
        self._xsub_read: zmq.Socket[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_fd: int | None = None
        self._again: asyncio.Handle | None = None
        # Topics with at least one subscriber: valid type names apart, so the
        # common exact-name check in deliver() is one set lookup.
        self._names: set[str] = set()
        self._prefixes: set[bytes] = set()
        # raw type name -> (name, FORWARD|TO_NODE): the names checked so far and what
        # to do with their messages; the compiled loop reads the same dict.
        self._routes: dict[bytes, tuple[str, int]] = {}
        # raw type name -> the last forward's meta seq
        self._forward_seq: dict[bytes, int] = {}
        self._counts: dict[str, int] = dict.fromkeys(
            (f.name for f in dataclasses.fields(BusStats)
             if f.name not in ("subscriptions", "unlogged", "compiled")), 0
        )

    # -- public API -------------------------------------------------------

    @property
    def endpoints(self) -> tuple[BusAddress, ...]:
        """The bound address pairs (ipc first, then tcp); empty before :meth:`start`."""
        return tuple(self._endpoints)

    @property
    def tcp_port(self) -> int | None:
        """The bound TCP publish port (subscribe is one more); None without TCP or before start."""
        for pair in self._endpoints:
            if pair.publish.startswith("tcp://"):
                return int(pair.publish.rpartition(":")[2])
        return None

    async def start(self) -> None:
        """Bind the sockets and start serving plugins.

        Raises:
            TransportError: an address cannot be bound, or another live process
                (another node on the same state directory) owns the ipc socket.
            ConfigError: the ipc path exists and is not a socket.
        """
        if self._xsub is not None:
            raise RuntimeError("PluginBus.start() called twice")
        if self._ctx is None:
            self._ctx = zmq.asyncio.Context()
        self._xsub = self._ctx.socket(zmq.XSUB)
        self._xpub = self._ctx.socket(zmq.XPUB)
        self._xpub_send = zmq.Socket.shadow(self._xpub.underlying)
        self._xsub_read = zmq.Socket.shadow(self._xsub.underlying)
        try:
            self._configure_sockets(self._xsub, self._xpub)
            if self._secret is not None:
                self._secure(self._secret)
            if self._ipc_path is not None:
                self._bind_ipc(self._ipc_path)
            if self._tcp_port is not None:
                self._bind_tcp(self._tcp_port)
        except BaseException:
            await self.close()
            raise
        # XSUB forwards subscriptions to the publishers: ask for everything.
        zmq.Socket.shadow(self._xsub.underlying).send(b"\x01")
        # Publishes are drained from a reader callback on zmq's descriptor, not a task
        # awaiting a future per wake-up: it runs as soon as the loop sees the descriptor.
        self._loop = asyncio.get_running_loop()
        fd = int(self._xsub_read.getsockopt(zmq.FD))
        self._reader_fd = fd
        self._loop.add_reader(fd, self._on_readable)
        self._again = self._loop.call_soon(self._on_readable)  # what came before the reader
        self._tasks = [
            asyncio.create_task(self._pump_subscriptions(self._xpub), name="bus-subscriptions"),
            asyncio.create_task(self._summaries(), name="bus-summaries"),
        ]

    async def close(self) -> None:
        """Stop serving, close the sockets (pending messages discarded), remove ipc files.

        Idempotent. Plugins see their subscriptions end; zmq reconnects them
        when a node binds the same addresses again.
        """
        if self._reader_fd is not None and self._loop is not None:
            self._loop.remove_reader(self._reader_fd)
            self._reader_fd = None
        if self._again is not None:
            self._again.cancel()
            self._again = None
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._log_summary()
        watches, self._watches = self._watches, []
        for watch in watches:
            await watch.close()
        if self._zap is not None:
            await self._zap.close()
            self._zap = None
        for sock in (self._xsub, self._xpub):
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        self._xpub_send = None
        self._xsub_read = None
        for path in self._ipc_files:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        self._ipc_files.clear()
        self._endpoints.clear()
        if self._own_context and self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def __aenter__(self) -> PluginBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def subscribed(self, type_name: str) -> bool:
        """Return True if some plugin's subscription matches ``type_name``."""
        if type_name in self._names:
            return True
        if not self._prefixes:
            return False
        raw = type_name.encode()
        return any(raw.startswith(prefix) for prefix in self._prefixes)

    def deliver(self, type_name: str, payload: bytes, meta: PluginMeta, *,
                check: bool = False) -> bool:
        """Send a message to the plugins subscribed to its type; never blocks.

        Args:
            type_name: the message's type name.
            payload: its CBOR payload, as on the wire.
            meta: where it came from (:func:`meta_from_info` builds one).
            check: make sure first that the payload is one plain CBOR map (it came
                from the network undecoded); one that is not is dropped and counted
                in ``bad_deliveries``.

        Returns:
            True if sent; False if no plugin wants the type, the bus is not
            running, the payload failed the check, or a subscriber's queue was
            full (counted in ``dropped``).
        """
        if self._xpub_send is None or not self.subscribed(type_name):
            return False
        if check and not (self._fast is not None and self._fast.check_payload(payload)) \
                and payload_problem(payload) is not None:
            self._counts["bad_deliveries"] += 1
            return False
        if self._send(type_name.encode(), payload, meta):
            self._counts["delivered"] += 1
            return True
        return False

    def stats(self) -> BusStats:
        """Return a snapshot of the counters and the live subscriptions."""
        topics = sorted(self._names) + sorted(p.decode(errors="replace") for p in self._prefixes)
        return BusStats(**self._counts, unlogged=self._reports.suppressed_total,
                        subscriptions=tuple(topics), compiled=self._fast is not None)

    def refresh_interest(self) -> None:
        """Ask ``node_wants`` again for every type seen (call it when the answer may change)."""
        self._reroute()

    # -- private helpers --------------------------------------------------

    def _configure_sockets(self, xsub: zmq.asyncio.Socket, xpub: zmq.asyncio.Socket) -> None:
        for sock in (xsub, xpub):
            sock.linger = 0
            sock.sndhwm = self._hwm
            sock.rcvhwm = self._hwm
        xsub.setsockopt(zmq.MAXMSGSIZE, self._max_message)
        xpub.setsockopt(zmq.MAXMSGSIZE, self._max_message)
        xpub.setsockopt(zmq.XPUB_NODROP, 1)

    def _secure(self, secret: BusSecret) -> None:
        """Make both sockets CURVE servers guarded by a ZAP handler (before binding)."""
        assert self._ctx is not None and self._xsub is not None and self._xpub is not None
        self._zap = ZapHandler(self._ctx, secret)
        self._zap.start()
        for sock, name in ((self._xsub, "publish"), (self._xpub, "subscribe")):
            secure_server(sock, secret)
            self._watches.append(HandshakeWatch(sock, name, self._on_refused))

    def _bind_ipc(self, base: Path) -> None:
        pair = ipc_address(base)
        for address in pair:
            _claim_ipc_path(Path(address[len("ipc://"):]))
        _warn_if_shared_dir(base.parent)
        assert self._xsub is not None and self._xpub is not None
        # Bind inside a fresh 0700 directory, set the mode, then move the socket
        # into place: at its final path it is never open to anyone else, not
        # even between bind() and chmod() (whatever the umask).
        # (tempfile.mkdtemp does the same, but imports shutil, bz2 and lzma: ~1 MB.)
        private = base.parent / f".bus-{os.urandom(8).hex()}"
        private.mkdir(mode=0o700)
        try:
            for sock, address in ((self._xsub, pair.publish), (self._xpub, pair.subscribe)):
                path = Path(address[len("ipc://"):])
                staged = private / path.name
                try:
                    sock.bind(f"ipc://{staged}")
                except zmq.ZMQError as exc:
                    raise TransportError(
                        f"cannot bind the plugin bus on {address}: {exc}") from exc
                os.chmod(staged, self._ipc_mode)
                os.replace(staged, path)
                self._ipc_files.append(path)
        finally:
            for leftover in private.iterdir():
                leftover.unlink()
            private.rmdir()
        self._endpoints.append(pair)

    def _bind_tcp(self, port: int) -> None:
        assert self._xsub is not None and self._xpub is not None
        if port:
            self._bind_tcp_pair(port)
            return
        # Port 0: the kernel picks the publish port; retry until port + 1 is free too.
        for _ in range(50):
            try:
                self._xsub.bind("tcp://127.0.0.1:*")
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind the plugin bus on 127.0.0.1: {exc}") from exc
            endpoint = self._xsub.getsockopt_string(zmq.LAST_ENDPOINT)
            picked = int(endpoint.rpartition(":")[2])
            if picked < 65535:
                try:
                    self._xpub.bind(f"tcp://127.0.0.1:{picked + 1}")
                except zmq.ZMQError:
                    pass
                else:
                    self._endpoints.append(BusAddress(endpoint, f"tcp://127.0.0.1:{picked + 1}"))
                    return
            self._xsub.unbind(endpoint)
        raise TransportError("no free pair of consecutive TCP ports on 127.0.0.1 after 50 tries")

    def _bind_tcp_pair(self, port: int) -> None:
        assert self._xsub is not None and self._xpub is not None
        pair = BusAddress(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}")
        for sock, address in ((self._xsub, pair.publish), (self._xpub, pair.subscribe)):
            try:
                sock.bind(address)
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind the plugin bus on {address}: {exc}") from exc
        self._endpoints.append(pair)

    def _on_readable(self) -> None:
        """Drain plugin publishes (zmq's descriptor said something changed)."""
        self._again = None
        if self._xsub_read is None or self._loop is None:
            return
        if self._drain(DRAIN_BUDGET) >= DRAIN_BUDGET:
            # More may wait, and zmq's descriptor signals only new arrivals once the
            # socket has been read dry: go on after the rest of this loop iteration.
            self._again = self._loop.call_soon(self._on_readable)

    def _drain(self, limit: int) -> int:
        """Read up to ``limit`` publishes without waiting; return how many were read."""
        total = 0
        fast = self._fast
        while total < limit and self._xsub_read is not None:
            try:
                if fast is not None:
                    assert self._xpub_send is not None
                    result: DrainResult = fast.drain(
                        self._xsub_read.underlying, self._xpub_send.underlying, self._routes,
                        self._forward_seq, self._node_id, limit - total)
                else:
                    result = self._drain_python(limit - total)
            except zmq.ZMQError:
                return total  # the socket is closing
            to_node, other, received, forwarded, dropped = result
            total += received
            counts = self._counts
            counts["received"] += received
            counts["forwarded"] += forwarded
            counts["dropped"] += dropped
            counts["published"] += received - (other is not None)
            for name, payload in to_node:
                if not self._give_node(name, payload, None):
                    # The node refused it: its type leaves the drain loop, so that the
                    # next refusal names the plugin (the loop does not look senders up).
                    self._routes.pop(name.encode(), None)
            if other is None:
                break  # dry, or the budget is spent
            try:
                self._handle_publish(other[1], other[2], frame_count=other[0])
            except Exception:  # a bug here must not end the bus
                if self._reports.first("bus", "internal_error"):
                    _log.exception("plugin bus: error handling a publish (logged once)")
        return total

    def _drain_python(self, limit: int) -> DrainResult:
        """The reference drain loop: what ``ganglion._busfast.drain`` does, in Python.

        Reads up to ``limit`` publishes without waiting. A message of two frames
        whose raw type name is in the routes and whose payload is well-formed is
        forwarded and/or kept for the node as its route says; the first other one
        stops the loop and is returned, for :meth:`_handle_publish` to judge.
        """
        sock = self._xsub_read
        assert sock is not None
        routes, to_node = self._routes, []
        other = None
        received = forwarded = dropped = 0
        while received < limit:
            try:
                # copy=False keeps zmq's per-connection metadata, to name a bad sender.
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            received += 1
            if len(frames) == 2:
                raw, payload = frames[0].bytes, frames[1].bytes
                route = routes.get(raw)
                if route is not None and payload_problem(payload) is None:
                    name, flags = route
                    if flags & FORWARD:
                        if self._forward(raw, payload):
                            forwarded += 1
                        else:
                            dropped += 1
                    if flags & TO_NODE:
                        to_node.append((name, payload))
                    continue
            other = (len(frames), [f.bytes for f in frames[:_KEEP_FRAMES]], _peer_of(frames[0]))
            break
        return to_node, other, received, forwarded, dropped

    async def _summaries(self) -> None:
        """Log what was only counted, once per ``summary_interval``, until cancelled."""
        while True:
            await asyncio.sleep(self._summary_interval)
            self._log_summary()

    def _log_summary(self) -> None:
        counts = self._reports.take_summary()
        if counts:
            detail = ", ".join(f"{reason} {n}" for reason, n in counts.items())
            _log.warning("plugin bus: %d more bad messages or refused connections not logged "
                         "one by one (%s); see the bus stats", sum(counts.values()), detail)

    def _report(self, peer_raw: str | None, reason: str, what: str) -> None:
        """Log a dropped message if it is the first of its (plugin, reason); else count it."""
        peer = _peer_name(peer_raw)
        if self._reports.first(peer, reason):
            _log.warning("plugin bus: dropped a message from %s (%s): %s; further ones from "
                         "this plugin for this reason are only counted", peer, reason, what)

    def _on_refused(self, socket_name: str, reason: str) -> None:
        self._counts["refused_connections"] += 1
        if self._reports.first(socket_name, "refused_connections"):
            _log.warning("plugin bus: refused a connection to the %s socket (%s): the bus "
                         "requires its secret; further refusals are only counted",
                         socket_name, reason)

    async def _pump_subscriptions(self, xpub: zmq.asyncio.Socket) -> None:
        """Read XPUB subscription events until cancelled."""
        while True:
            event = await xpub.recv()
            try:
                self._handle_subscription(event)
            except Exception:
                _log.exception("plugin bus: error handling a subscription event")

    def _handle_publish(self, frames: list[bytes], peer: str | None = None, *,
                        frame_count: int | None = None) -> None:
        """Judge one publish the drain loop left to Python: count and report, or pass it on.

        Args:
            frames: its frames (the first few, when there were many).
            peer: what zmq knows of its sender (``User-Id`` or ``Peer-Address``).
            frame_count: how many frames it had; ``len(frames)`` when None.
        """
        counts = self._counts
        count = len(frames) if frame_count is None else frame_count
        if count != 2:
            counts["bad_frames"] += 1
            self._report(peer, "bad_frames", f"{count} frames, not 2; the first is "
                         f"{excerpt(frames[0]) if frames else 'absent'}")
            return
        raw_name, payload = frames
        route = self._routes.get(raw_name)
        if route is None:
            try:
                name = raw_name.decode("ascii")
            except UnicodeDecodeError:
                name = ""
            if not is_valid_type_name(name):
                counts["bad_type_names"] += 1
                self._report(peer, "bad_type_names", f"type name {excerpt(raw_name)}")
                return
            route = (name, self._flags(name))
        name, flags = route
        problem = payload_problem(payload)
        if problem is not None:
            counts["bad_payloads"] += 1
            self._report(peer, "bad_payloads", f"{name}: {clip(problem)}; payload {excerpt(payload)}")
            return
        counts["published"] += 1
        if flags & FORWARD:
            if self._forward(raw_name, payload):
                counts["forwarded"] += 1
            else:
                counts["dropped"] += 1
        accepted = not flags & TO_NODE or self._give_node(name, payload, peer or "")
        if accepted and raw_name not in self._routes and len(self._routes) < MAX_ROUTES:
            # checked: later ones take the drain loop (asked again: the node's interest
            # may have changed with this message, its type's first)
            self._routes[raw_name] = (name, self._flags(name))

    def _give_node(self, name: str, payload: bytes, peer: str | None) -> bool:
        """Hand a valid publish to ``on_publish``; count a refusal, never raise.

        Args:
            name: its type name.
            payload: its payload.
            peer: what zmq knows of its sender; None when not looked up (the
                drain loop's messages), then the report names the type instead.

        Returns:
            False if the node refused it (a ganglion error), else True.
        """
        self._counts["to_node"] += 1
        try:
            self._on_publish(name, payload)
        except GanglionError as exc:  # the node refuses it: the plugin's fault, not a bug
            self._counts["rejected"] += 1
            self._report(peer if peer is not None else f"a plugin publishing {name}", "rejected",
                         f"{name}: {type(exc).__name__}: {clip(str(exc))}; "
                         f"payload {excerpt(payload)}")
            return False
        except Exception:
            self._callback_failed(self._on_publish, f"{name!r}, payload {excerpt(payload)}")
        return True

    def _forward(self, raw_name: bytes, payload: bytes) -> bool:
        """Send a plugin's publish on to the plugin subscribers of its type, with its meta."""
        seq = self._forward_seq.get(raw_name, 0) + 1
        self._forward_seq[raw_name] = seq
        meta = PluginMeta(sender=self._node_id, seq=seq, sent_ns=time.time_ns(), local=True)
        assert self._xpub_send is not None
        try:
            self._xpub_send.send_multipart([raw_name, payload, meta.encode()], flags=zmq.DONTWAIT)
        except zmq.Again:
            return False
        return True

    def _flags(self, name: str) -> int:
        """What to do with a valid publish of ``name`` now (FORWARD, TO_NODE)."""
        flags = FORWARD if self._forward_on and self.subscribed(name) else 0
        if self._node_wants is None:
            return flags | TO_NODE
        try:
            wanted = self._node_wants(name)
        except Exception:
            self._callback_failed(self._node_wants, repr(name))
            wanted = True
        return flags | (TO_NODE if wanted else 0)

    def _reroute(self) -> None:
        """Recompute every remembered route (subscriptions or the node's interest changed)."""
        for raw, (name, _) in list(self._routes.items()):
            self._routes[raw] = (name, self._flags(name))

    def _handle_subscription(self, event: bytes) -> None:
        if not event or event[0] not in (_SUBSCRIBE, _UNSUBSCRIBE):
            return  # a plugin wrote data to its SUB socket: meaningless, ignore
        topic = event[1:]
        name = topic.decode("ascii", errors="replace")
        valid = topic.isascii() and is_valid_type_name(name)
        if event[0] == _SUBSCRIBE:
            if valid and name not in self._names:
                self._names.add(name)
                self._call(self._on_subscribe, name)
            elif not valid:
                self._prefixes.add(topic)
        elif valid and name in self._names:
            self._names.discard(name)
            self._forward_seq.pop(topic, None)
            self._call(self._on_unsubscribe, name)
        elif not valid:
            self._prefixes.discard(topic)
        self._reroute()

    def _send(self, raw_name: bytes, payload: bytes, meta: PluginMeta) -> bool:
        xpub = self._xpub_send
        assert xpub is not None
        if self._fast is not None:
            # The same three frames, the meta frame written in C (fast.meta is
            # PluginMeta.encode's bytes, tests/runtime/test_bus_fast.py).
            if self._fast.deliver(xpub.underlying, raw_name, payload, meta.sender, meta.seq,
                                  meta.sent_ns, meta.local):
                return True
            self._counts["dropped"] += 1
            return False
        try:
            xpub.send_multipart([raw_name, payload, meta.encode()], flags=_DONTWAIT)
        except zmq.Again:
            self._counts["dropped"] += 1
            return False
        return True

    def _call(self, callback: Callable[..., object], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            self._callback_failed(callback, ", ".join(clip(repr(arg)) for arg in args))

    def _callback_failed(self, callback: Callable[..., object], args: str) -> None:
        """Count a callback's exception; log its traceback once per callback and exception."""
        self._counts["callback_errors"] += 1
        name = getattr(callback, "__name__", repr(callback))
        exc_type = sys.exc_info()[0]
        if self._reports.first(f"{name}: {getattr(exc_type, '__name__', 'error')}",
                               "callback_errors"):
            _log.exception("plugin bus: %s(%s) raised (logged once per exception type)",
                           name, args)


def _peer_of(frame: zmq.Frame) -> str | None:
    """What zmq knows of a received frame's sender: a ZAP user id, else its address."""
    for prop in ("User-Id", "Peer-Address"):
        try:
            value = frame.get(prop)
        except zmq.ZMQError:  # no such property on this connection
            continue
        if value:
            return str(value)
    return None


def _peer_name(value: str | None) -> str:
    """Name the plugin a message came from, from what :func:`_peer_of` found.

    A restricted bus names each accepted connection (``plugin-N``, from ZAP);
    otherwise ipc frames carry the peer's credentials (``localhost:UID:GID:PID``
    on Linux) and tcp frames its address.
    """
    if not value:
        return "plugin"
    host, _, creds = value.partition(":")
    parts = creds.split(":")
    if host == "localhost" and len(parts) == 3:
        return f"pid {parts[2]} (uid {parts[0]})"
    return clip(value, 64)


def _warn_if_shared_dir(directory: Path) -> None:
    """Warn when other users may replace the bus sockets in ``directory``."""
    with contextlib.suppress(OSError):
        mode = directory.stat().st_mode
        if mode & 0o022 and not mode & stat.S_ISVTX:
            _log.warning("plugin bus: %s is writable by other users, who could replace the "
                         "bus sockets; use a private directory (the state directory is 0700)",
                         directory)


def _claim_ipc_path(path: Path) -> None:
    """Remove a stale ipc socket file; refuse a live one or a file that is not a socket."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        path.unlink(missing_ok=True)  # left behind by a node that died: take it over
        return
    finally:
        probe.close()
    raise TransportError(f"{path} is in use by another running process (another node?)")
