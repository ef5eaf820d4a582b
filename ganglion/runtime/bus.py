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

This module is the shell that owns the sockets and the event-loop wiring; the work
is split by job:

* :mod:`ganglion.runtime._bus_routes` (sans-IO): which plugin gets what (the
  subscription reference counts XPUB reports, the routes of checked type names),
  the validation of a publish, the counters (:class:`BusStats`);
* :mod:`ganglion.runtime._bus_drain`: the socket I/O of the hot loop (the Python
  reference drain loop, or ``ganglion._busfast``'s, :mod:`ganglion.runtime._bus_accel`)
  and the sends;
* :mod:`ganglion.runtime._bus_bind`: the ipc socket files (0600, made in a private
  directory) and the TCP port pair;
* :mod:`ganglion.runtime._bus_report`: which bad input gets a log line;
* :mod:`ganglion.runtime._bus_auth`: the CURVE secret and its ZAP handler.

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
summed into one summary line per ``summary_interval``. A plugin is named by what
zmq knows of its connection: ``plugin-N`` on a restricted bus, its process id on
ipc, its address on tcp. Frames above ``max_message`` bytes (zmq ``MAXMSGSIZE``,
1 MiB by default) are never buffered: zmq drops the connection mid-frame.

Access. A TCP bus on 127.0.0.1 is open to every local user unless a ``secret`` is
given: then both sockets are CURVE servers that accept only clients holding the
same key pair. ipc sockets are 0600.

The node gets a plugin's message only while it wants the type (``node_wants``: some
other node or an in-process subscriber wants it, or it is the type's first message);
:meth:`PluginBus.refresh_interest` re-asks after a change.

Everything runs on the event loop: publishes are drained from a reader callback on
the XSUB's zmq descriptor, subscription events come through ``zmq.asyncio``; reads
and sends use synchronous shadows of the sockets with ``DONTWAIT`` (never await).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from ganglion.bus_secret import BusSecret
from ganglion.errors import ConfigError, GanglionError
from ganglion.plugin_frames import DEFAULT_HWM, BusAddress, PluginMeta
from ganglion.runtime import _bus_accel
from ganglion.runtime._bus_auth import HandshakeWatch, ZapHandler, secure_server
from ganglion.runtime._bus_bind import (
    MAX_IPC_PATH,
    bind_ipc,
    bind_tcp,
    check_ipc_path,
)
from ganglion.runtime._bus_drain import Drainer, DrainResult
from ganglion.runtime._bus_report import ReportLimiter, clip, excerpt, peer_name
from ganglion.runtime._bus_routes import (
    COUNTERS,
    FORWARD,
    MAX_ROUTES,
    TO_NODE,
    Bad,
    BusRoutes,
    BusStats,
    judge,
)
from ganglion.runtime.subscription import MessageInfo

__all__ = [
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_SUMMARY_INTERVAL",
    "DRAIN_BUDGET",
    "FORWARD",
    "MAX_IPC_PATH",
    "MAX_ROUTES",
    "TO_NODE",
    "BusStats",
    "PluginBus",
    "meta_from_info",
]

_log = logging.getLogger(__name__)

#: Largest frame a plugin may send (zmq MAXMSGSIZE); a bigger one disconnects it.
#: Far above the largest message that can reach the network (one UDP datagram,
#: 65,507 bytes at most) so plugins may still pass big messages to each other.
DEFAULT_MAX_MESSAGE = 1 << 20

#: Seconds between the summary lines of bad input that was not logged on its own.
DEFAULT_SUMMARY_INTERVAL = 60.0

#: Messages drained in one go before the event loop gets to run other work.
DRAIN_BUDGET = 512

#: The compiled drain loop, when built (chosen once at import).
_fast = _bus_accel.load()


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
            check_ipc_path(ipc_path)
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
        self._io: Drainer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_fd: int | None = None
        self._again: asyncio.Handle | None = None
        self._routes = BusRoutes(forward=forward,
                                 node_wants=None if node_wants is None else self._wants)
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)

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
        self._xsub = xsub = self._ctx.socket(zmq.XSUB)
        self._xpub = xpub = self._ctx.socket(zmq.XPUB)
        # Reads and sends use synchronous shadows: no future per message.
        self._io = Drainer(zmq.Socket.shadow(xsub.underlying),
                           zmq.Socket.shadow(xpub.underlying), self._routes, self._node_id,
                           self._fast)
        try:
            self._configure_sockets(xsub, xpub)
            if self._secret is not None:
                self._secure(self._secret)
            if self._ipc_path is not None:
                pair, files = bind_ipc(xsub, xpub, self._ipc_path, self._ipc_mode)
                self._ipc_files += files
                self._endpoints.append(pair)
            if self._tcp_port is not None:
                self._endpoints.append(bind_tcp(xsub, xpub, self._tcp_port))
        except BaseException:
            await self.close()
            raise
        # XSUB forwards subscriptions to the publishers: ask for everything.
        self._io.xsub.send(b"\x01")
        # Publishes are drained from a reader callback on zmq's descriptor, not a task
        # awaiting a future per wake-up: it runs as soon as the loop sees the descriptor.
        self._loop = asyncio.get_running_loop()
        fd = int(self._io.xsub.getsockopt(zmq.FD))
        self._reader_fd = fd
        self._loop.add_reader(fd, self._on_readable)
        self._again = self._loop.call_soon(self._on_readable)  # what came before the reader
        self._tasks = [
            asyncio.create_task(self._pump_subscriptions(xpub), name="bus-subscriptions"),
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
        self._io = None
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
        return self._routes.subscribed(type_name)

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
        return self.deliver_info(type_name, payload, meta, check=check)

    def deliver_info(self, type_name: str, payload: bytes, info: MessageInfo | PluginMeta, *,
                     check: bool = False) -> bool:
        """:meth:`deliver`, the meta frame written from a :class:`MessageInfo` directly.

        The node's own subscription of a type plugins want calls this once per
        message: no :class:`PluginMeta` is made for it (the frame is the same).
        """
        io = self._io
        if io is None or not self._routes.subscribed(type_name):
            return False
        if check and not io.payload_ok(payload):
            self._counts["bad_deliveries"] += 1
            return False
        if io.send(type_name.encode(), payload, info.sender, info.seq, info.sent_ns, info.local):
            self._counts["delivered"] += 1
            return True
        self._counts["dropped"] += 1
        return False

    def stats(self) -> BusStats:
        """Return a snapshot of the counters and the live subscriptions."""
        return BusStats(**self._counts, unlogged=self._reports.suppressed_total,
                        subscriptions=self._routes.topics(), compiled=self._fast is not None)

    def refresh_interest(self) -> None:
        """Ask ``node_wants`` again for every type seen (call it when the answer may change)."""
        self._routes.reroute()

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

    def _on_readable(self) -> None:
        """Drain plugin publishes (zmq's descriptor said something changed)."""
        self._again = None
        if self._io is None or self._loop is None:
            return
        if self._drain(DRAIN_BUDGET) >= DRAIN_BUDGET:
            # More may wait, and zmq's descriptor signals only new arrivals once the
            # socket has been read dry: go on after the rest of this loop iteration.
            self._again = self._loop.call_soon(self._on_readable)

    def _drain(self, limit: int) -> int:
        """Read up to ``limit`` publishes without waiting; return how many were read."""
        total = 0
        while total < limit and self._io is not None:
            try:
                result: DrainResult = self._io.drain(limit - total)
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
                    self._routes.forget(name.encode())
            if other is None:
                break  # dry, or the budget is spent
            try:
                self._handle_publish(other[1], other[2], frame_count=other[0])
            except Exception:  # a bug here must not end the bus
                if self._reports.first("bus", "internal_error"):
                    _log.exception("plugin bus: error handling a publish (logged once)")
        return total

    def _handle_publish(self, frames: list[bytes], peer: str | None = None, *,
                        frame_count: int | None = None) -> None:
        """Judge one publish the drain loop left to Python: count and report, or pass it on.

        Args:
            frames: its frames (the first few, when there were many).
            peer: what zmq knows of its sender (``User-Id`` or ``Peer-Address``).
            frame_count: how many frames it had; ``len(frames)`` when None.
        """
        counts = self._counts
        verdict = judge(frames, len(frames) if frame_count is None else frame_count,
                        self._routes.routes)
        if isinstance(verdict, Bad):
            counts[verdict.reason] += 1
            self._report(peer, verdict.reason, verdict.what)
            return
        name = verdict
        raw_name, payload = frames
        route = self._routes.routes.get(raw_name)
        flags = route[1] if route is not None else self._routes.flags(name)
        counts["published"] += 1
        if flags & FORWARD:
            assert self._io is not None
            if self._io.forward(raw_name, payload):
                counts["forwarded"] += 1
            else:
                counts["dropped"] += 1
        if not flags & TO_NODE or self._give_node(name, payload, peer or ""):
            # checked: later ones take the drain loop (asked again: the node's interest
            # may have changed with this message, its type's first)
            self._routes.remember(raw_name, name)

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

    def _wants(self, name: str) -> bool:
        """``node_wants``, counted and logged when it raises (then the node gets them)."""
        assert self._node_wants is not None
        try:
            return self._node_wants(name)
        except Exception:
            self._callback_failed(self._node_wants, repr(name))
            return True

    async def _pump_subscriptions(self, xpub: zmq.asyncio.Socket) -> None:
        """Read XPUB subscription events until cancelled."""
        while True:
            event = await xpub.recv()
            try:
                self._handle_subscription(event)
            except Exception:
                _log.exception("plugin bus: error handling a subscription event")

    def _handle_subscription(self, event: bytes) -> None:
        told = self._routes.on_subscription(event)
        if told is not None:
            subscribe, name = told
            self._call(self._on_subscribe if subscribe else self._on_unsubscribe, name)
        if event and event[0] in (0, 1):
            self._routes.reroute()

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
        peer = peer_name(peer_raw)
        if self._reports.first(peer, reason):
            _log.warning("plugin bus: dropped a message from %s (%s): %s; further ones from "
                         "this plugin for this reason are only counted", peer, reason, what)

    def _on_refused(self, socket_name: str, reason: str) -> None:
        self._counts["refused_connections"] += 1
        if self._reports.first(socket_name, "refused_connections"):
            _log.warning("plugin bus: refused a connection to the %s socket (%s): the bus "
                         "requires its secret; further refusals are only counted",
                         socket_name, reason)

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
