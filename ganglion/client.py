"""The Python client for external plugins: talk to a node's plugin bus over zmq.

Theory of operation: a node binds two zmq sockets for plugins (docs/plugin-frames.md):

* the *publish* address, where a plugin connects a PUB (or XPUB) socket and
  sends two frames ``[type name, CBOR payload]``;
* the *subscribe* address, where a plugin connects a SUB socket, subscribes to
  type names and receives three frames ``[type name, CBOR payload, meta]``.

Over ``ipc://`` the two addresses are ``<base>.pub`` and ``<base>.sub`` (the base
is ``<state dir>/bus`` for a node); over TCP they are ``tcp://127.0.0.1:PORT``
and ``PORT + 1``. :func:`bus_address` turns a state directory, an ipc base, or a
``tcp://`` / ``ipc://`` URL into that pair.

:class:`PluginClient` publishes through an XPUB socket rather than a plain PUB:
zmq drops whatever a publisher sends before the subscriber's subscription has
reached it, and an XPUB *sees* that subscription arrive. So the first
:meth:`PluginClient.publish` waits (bounded) until the node is listening and
raises :class:`~ganglion.errors.TransportError` if it never does, instead of
silently dropping the plugin's first readings.

zmq subscriptions are prefix matches; the client drops messages whose type name
is not exactly one it subscribed to. It depends on nothing in ganglion but
:mod:`ganglion.types`, the bus's frame definitions (:mod:`ganglion.plugin_frames`)
and key file (:mod:`ganglion.bus_secret`), re-exported here, the error classes and
the loader of the optional compiled bus helpers (:mod:`ganglion.runtime._bus_accel`),
so a plugin process stays light.

Speed. A plugin's end of the bus is often the slowest stage of a stream of
messages, so the per-message work is kept small: a type name is checked once and
remembered; a publish asks zmq whether the node went away at most once per
:data:`LISTEN_CHECK_S` (not per message) and sends its two frames with two plain
sends. Where ``ganglion._busfast`` is built (``GANGLION_BUS_FAST``, as for the node's
bus) :meth:`PluginClient.recv` reads every queued delivery in one call (at most
:data:`RECV_BATCH`) with the meta frame already parsed, and then decodes them one per
call; otherwise it reads them one by one with pyzmq, the reference path that the
tests hold the compiled one to, message by message.

Noticing the node go away. zmq reconnects by itself but tells a socket's owner
nothing, so the client watches its publish socket's connection with a zmq monitor
(``HANDSHAKE_SUCCEEDED``: the node is there; ``DISCONNECTED``: it is gone) and sends
ZMTP heartbeats (``ZMQ_HEARTBEAT_IVL`` / ``ZMQ_HEARTBEAT_TIMEOUT``, every
``heartbeat`` seconds): a node that exits or is killed closes its socket, which the
monitor reports at once; one that is frozen (stopped, or its host gone, over tcp)
misses three heartbeats in a row and its connection is dropped. The client then
reports it (:attr:`PluginClient.node_connected`, :attr:`PluginClient.disconnects`,
one log line per loss) and zmq keeps reconnecting until a node is back.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import zmq

from ganglion.bus_secret import BUS_SECRET_ENV, BusSecret, read_bus_secret
from ganglion.errors import DecodeError, TransportError
from ganglion.plugin_frames import (
    DEFAULT_HWM,
    STATE_DIR_BUS_NAME,
    BusAddress,
    PluginMeta,
    bus_address,
    ipc_address,
)
from ganglion.runtime import _bus_accel
from ganglion.types import (
    encode_payload,
    lookup,
    payload_decoder,
    type_name_of,
    type_of,
    validate_type_name,
)

__all__ = [
    "BUS_SECRET_ENV",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_HWM",
    "DEFAULT_READY_TIMEOUT",
    "STATE_DIR_BUS_NAME",
    "BusAddress",
    "BusSecret",
    "PluginClient",
    "PluginMeta",
    "bus_address",
    "ipc_address",
    "read_bus_secret",
]

#: How long the first publish waits for the node's subscription, in seconds.
DEFAULT_READY_TIMEOUT = 5.0

#: Seconds between two checks, while publishing, that the node is still listening.
LISTEN_CHECK_S = 0.001

#: Deliveries the compiled reader takes off the socket in one call.
RECV_BATCH = 256

#: Seconds between two ZMTP heartbeats to the node (three missed: the node is gone).
DEFAULT_HEARTBEAT = 5.0

_log = logging.getLogger(__name__)

#: Type names remembered as checked (publish) per client.
_MAX_NAMES = 4096

#: zmq flags as plain ints (pyzmq's enum costs a few us per message).
_DONTWAIT = int(zmq.DONTWAIT)
_SNDMORE_DONTWAIT = int(zmq.SNDMORE | zmq.DONTWAIT)
_POLLIN = int(zmq.POLLIN)
_EVENTS = int(zmq.EVENTS)

#: The compiled reader (``ganglion._busfast``), when built (chosen once at import).
_fast = _bus_accel.load()


class PluginClient:
    """A connection from an external plugin process to a node's plugin bus.

    Synchronous and single-threaded (zmq sockets are not thread-safe); use one
    client per thread. ``with PluginClient(state_dir) as bus: ...`` closes it.
    """

    def __init__(
        self,
        where: str | os.PathLike[str] | BusAddress,
        *,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        hwm: int = DEFAULT_HWM,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        secret: BusSecret | str | os.PathLike[str] | None = None,
        heartbeat: float | None = DEFAULT_HEARTBEAT,
    ) -> None:
        """Connect to a bus (connecting never blocks; zmq retries in the background).

        Args:
            where: anything :func:`bus_address` accepts.
            ready_timeout: how long a publish waits for the node to be listening.
            hwm: per-socket queue bound, in messages.
            context: a zmq context to share; a private one by default.
            secret: for a node that restricts its bus (``[bus] secret_file``): the
                secret file or a :class:`BusSecret`. None reads the file named by
                ``GANGLION_BUS_SECRET_FILE`` if that is set, else connects without.
            heartbeat: seconds between ZMTP heartbeats on the publish socket; a node
                that answers none for three of them counts as gone (one that exits
                or is killed is noticed at once). None sends no heartbeats.

        Raises:
            ValueError: ``where`` cannot be resolved, or ``heartbeat`` is not positive.
            ConfigError: the secret file is unreadable, open to every user, or malformed.
        """
        if heartbeat is not None and not heartbeat > 0:
            raise ValueError(f"heartbeat must be a positive number of seconds or None, "
                             f"not {heartbeat!r}")
        self.address = bus_address(where)
        if secret is None and os.environ.get(BUS_SECRET_ENV):
            secret = os.environ[BUS_SECRET_ENV]
        self.secret = secret if secret is None or isinstance(secret, BusSecret) else (
            read_bus_secret(secret))
        self.ready_timeout = ready_timeout
        #: Messages received but not returned: bad frames, bad meta, bad payload.
        self.bad_messages = 0
        #: Messages zmq received for a prefix of a subscribed name, not the name.
        self.filtered = 0
        #: Publishes refused because the queue to the node was full.
        self.dropped = 0
        self._own_context = context is None
        self._ctx = context if context is not None else zmq.Context()
        self._pub = self._ctx.socket(zmq.XPUB)
        self._sub = self._ctx.socket(zmq.SUB)
        for sock in (self._pub, self._sub):
            sock.linger = 0
            sock.sndhwm = hwm
            sock.rcvhwm = hwm
            if self.secret is not None:
                self.secret.apply(sock)
        # Full queue: make send raise Again (counted) rather than drop silently.
        self._pub.setsockopt(zmq.XPUB_NODROP, 1)
        if heartbeat is not None:
            # Only the publish socket: one connection tells whether the node is there,
            # and a node's idle wake-ups grow by one per plugin per interval, not two.
            interval_ms = max(1, int(heartbeat * 1000))
            self._pub.setsockopt(zmq.HEARTBEAT_IVL, interval_ms)
            self._pub.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * interval_ms)
        # A node that refuses our handshake (no or wrong secret) shows up here, so
        # wait_ready can say so instead of "no node is listening"; so do the node's
        # arrivals and departures (node_connected).
        self._monitor = self._pub.get_monitor_socket(_WATCHED)
        self._refused: str | None = None
        self._poller = zmq.Poller()  # recv's wait: a delivery, or news of the node
        self._poller.register(self._sub, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._connected = False
        #: Times the connection to the node was lost (it exited, was killed, or froze).
        self.disconnects = 0
        self._pub.connect(self.address.publish)
        self._sub.connect(self.address.subscribe)
        self._listening = False
        self._next_check = 0.0  # time.monotonic() of the next "still listening?" check
        self._names: dict[str, bytes] = {}  # type names checked for publish_raw
        self._topics: set[str] = set()
        self._wanted: dict[bytes, str] = {}  # the topics as their raw frame
        self._decoders: dict[str, tuple[object, Callable[[bytes], object]]] = {}
        self._fast = _fast
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._closed = False

    def publish(self, msg: object) -> bool:
        """Publish a registered message (or a Record) to the node.

        Args:
            msg: an instance of a registered message class, or a :class:`Record`.

        Returns:
            True if queued for the node; False if the queue was full (counted
            in :attr:`dropped`).

        Raises:
            TypeRegistrationError: ``msg``'s class is not registered.
            EncodeError: a field holds a value its annotation does not allow.
            TransportError: no node started listening within ``ready_timeout``.
        """
        return self.publish_raw(type_name_of(msg), encode_payload(msg))

    def publish_raw(self, type_name: str, payload: bytes) -> bool:
        """Publish an already encoded CBOR payload under a type name.

        Args:
            type_name: a valid dotted type name.
            payload: a CBOR map (the node drops anything else and counts it).

        Returns:
            True if queued for the node; False if the queue was full.

        Raises:
            TypeNameError: ``type_name`` is not a valid type name.
            TransportError: no node started listening within ``ready_timeout``.
        """
        self._check_open()
        name = self._names.get(type_name)
        if name is None:
            name = validate_type_name(type_name).encode()
            if len(self._names) < _MAX_NAMES:
                self._names[type_name] = name
        # Listening, and nothing new from the node (a 0x00 when it goes away): one
        # getsockopt per LISTEN_CHECK_S, not a poll of two sockets per message.
        if not self._listening:
            self.wait_ready(self.ready_timeout)
        else:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + LISTEN_CHECK_S
                if int(self._pub.getsockopt(_EVENTS)) & _POLLIN:
                    self.wait_ready(self.ready_timeout)
        pub = self._pub
        try:
            # XPUB_NODROP: a full queue refuses the first frame; once it is taken the
            # second is too (a message is atomic). Two sends cost half a send_multipart.
            pub.send(name, _SNDMORE_DONTWAIT)
        except zmq.Again:
            self.dropped += 1
            return False
        pub.send(payload, _DONTWAIT)
        return True

    def wait_ready(self, timeout: float) -> None:
        """Wait until the node's bus is listening to this client's publishes.

        Args:
            timeout: seconds to wait at most.

        Raises:
            TransportError: it did not start listening in time.
        """
        self._check_open()
        deadline = time.monotonic() + timeout
        self._read_subscription_events(0)
        while not self._listening:
            left = deadline - time.monotonic()
            if left <= 0:
                if self._refused is not None:
                    hint = ("this bus secret is not the node's" if self.secret is not None
                            else f"the node requires a bus secret (secret=, {BUS_SECRET_ENV})")
                    raise TransportError(f"the node on {self.address.publish} refused this "
                                         f"plugin's handshake ({self._refused}): {hint}")
                raise TransportError(
                    f"no node is listening on {self.address.publish} "
                    f"(waited {timeout:g} s); is the node running?"
                )
            self._read_subscription_events(left)

    @property
    def node_connected(self) -> bool:
        """Whether the node's bus is connected to this client now (its handshake done).

        False before the first connection and from the moment the node goes away (it
        exits or is killed: at once; it freezes: after three missed heartbeats) until
        zmq has connected to a node again. Reading it never blocks.
        """
        self._check_open()
        self._read_monitor()
        return self._connected

    def subscribe(self, *types: type | str) -> None:
        """Receive messages of these types (registered classes or type names).

        Raises:
            TypeNameError: a name is not a valid type name.
            TypeRegistrationError: a class is not registered.
        """
        self._check_open()
        for name in map(_name_of, types):
            if name not in self._topics:
                self._topics.add(name)
                self._wanted[name.encode()] = name
                self._sub.subscribe(name.encode())

    def unsubscribe(self, *types: type | str) -> None:
        """Stop receiving these types; names not subscribed are ignored."""
        self._check_open()
        for name in map(_name_of, types):
            if name in self._topics:
                self._topics.discard(name)
                del self._wanted[name.encode()]
                self._sub.unsubscribe(name.encode())

    def recv(self, timeout: float | None = None) -> tuple[object, PluginMeta]:
        """Return the next message of a subscribed type and where it came from.

        The message is an instance of its registered class, or a :class:`Record`.
        Malformed messages are skipped and counted in :attr:`bad_messages`.

        Args:
            timeout: seconds to wait at most; None waits forever.

        Returns:
            ``(message, meta)``.

        Raises:
            TimeoutError: nothing arrived in time.
        """
        self._check_open()
        deadline = None if timeout is None else time.monotonic() + timeout
        pending, fast = self._pending, self._fast
        while True:
            if pending:  # read before, by the compiled reader
                decoded = self._decode(pending.popleft())
                if decoded is not None:
                    return decoded
                continue
            # What is queued already needs no poll.
            if fast is not None:
                pending.extend(fast.recv_many(self._sub.underlying, RECV_BATCH))
                if pending:
                    continue
            else:
                try:
                    frames = self._sub.recv_multipart(flags=_DONTWAIT)
                except zmq.Again:
                    pass
                else:
                    decoded = self._decode(frames)
                    if decoded is not None:
                        return decoded
                    continue
            wait_ms = -1 if deadline is None else max(
                0, int((deadline - time.monotonic()) * 1000))
            if not self._wait_delivery(wait_ms):
                raise TimeoutError(f"no message within {timeout:g} s") from None

    def __iter__(self) -> Iterator[tuple[object, PluginMeta]]:
        """Yield ``(message, meta)`` forever (until the client is closed)."""
        while not self._closed:
            yield self.recv()

    def close(self) -> None:
        """Close the sockets (pending messages are discarded); idempotent."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self._pub.disable_monitor()
        self._monitor.close(linger=0)
        self._pub.close(linger=0)
        self._sub.close(linger=0)
        if self._own_context:
            self._ctx.term()

    def __enter__(self) -> PluginClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- private helpers --------------------------------------------------

    def _decode(self, frames: list[bytes] | tuple[Any, ...]) -> tuple[object, PluginMeta] | None:
        """Turn delivered frames into (message, meta), or None to skip them (counted).

        ``frames`` are pyzmq's (the reference path), or what the compiled reader made of
        them: the first three, the meta frame already parsed to its four fields when it
        has the layout the bus writes.
        """
        if len(frames) < 3:
            self.bad_messages += 1
            return None
        raw = frames[0]
        name = self._wanted.get(raw)
        if name is None:
            try:
                raw.decode()
            except UnicodeDecodeError:
                self.bad_messages += 1
                return None
            self.filtered += 1
            return None
        # One decoder per type, made again when what is registered under it changes
        # (decode_payload would look the type up and build one per message).
        known = lookup(name)
        cached = self._decoders.get(name)
        if cached is None or cached[0] is not known:
            cached = self._decoders[name] = (known, payload_decoder(name))
        try:
            fields = frames[2]
            meta = PluginMeta(*fields) if type(fields) is tuple else PluginMeta.decode(fields)
            return cached[1](frames[1]), meta
        except DecodeError:
            self.bad_messages += 1
            return None

    def _wait_delivery(self, wait_ms: int) -> bool:
        """Wait for a delivery (-1: forever), noting the node's comings and goings meanwhile.

        Returns:
            True when one is queued, False when ``wait_ms`` passed without one.
        """
        sub, poll = self._sub, self._poller.poll
        deadline = None if wait_ms < 0 else time.monotonic() + wait_ms / 1000
        while True:
            ready = poll(wait_ms)
            if len(ready) == 1 and ready[0][0] is sub:
                return True  # the common case, kept short: it is on the latency path
            if ready:
                self._read_monitor()
                if any(sock is sub for sock, _ in ready):
                    return True
            if deadline is not None:
                wait_ms = int((deadline - time.monotonic()) * 1000)
                if wait_ms <= 0:
                    return False

    def _read_subscription_events(self, timeout: float) -> None:
        """Read what the node's XSUB told our XPUB; ``\\x01`` means it listens."""
        wait_ms = int(timeout * 1000)
        poller = zmq.Poller()
        poller.register(self._pub, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        while ready := dict(poller.poll(wait_ms)):
            wait_ms = 0
            if self._monitor in ready:
                self._read_monitor()
            if self._pub not in ready:
                continue
            event = self._pub.recv()
            # The bus subscribes to everything (empty prefix); when the node
            # goes away zmq reports the matching unsubscribe.
            if event == b"\x01":
                self._listening = True
            elif event == b"\x00":
                self._listening = False

    def _read_monitor(self) -> None:
        """Note the node's arrivals and departures, and why it refused our handshake
        (zmq retries in both cases; the client only reports)."""
        while self._monitor.poll(0):
            frames = self._monitor.recv_multipart()
            event = int.from_bytes(frames[0][:2], "little")
            if event == _UP:
                self._refused = None
                if not self._connected and self.disconnects:
                    _log.info("plugin bus: connected to the node on %s again",
                              self.address.publish)
                self._connected = True
            elif event == _DOWN:
                if self._connected:
                    self.disconnects += 1
                    _log.warning("plugin bus: the node on %s went away (exited, killed, or "
                                 "no heartbeat); reconnecting when it is back",
                                 self.address.publish)
                self._connected = False
            else:
                self._refused = _HANDSHAKE_REASONS.get(event, "handshake failed")

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("this PluginClient is closed")


#: Monitor events of a refused handshake, and how to name each to a user.
_HANDSHAKE_REASONS: dict[int, str] = {
    int(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL): "handshake failed",
    int(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL): "security mechanism mismatch",
    int(zmq.EVENT_HANDSHAKE_FAILED_AUTH): "key refused",
}
_UP = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_DOWN = int(zmq.EVENT_DISCONNECTED)
#: The monitor events the client reads: refusals, and the node coming and going.
_WATCHED = sum(_HANDSHAKE_REASONS) | _UP | _DOWN


def _name_of(t: type | str) -> str:
    """The type name of a registered class, or a checked name."""
    return validate_type_name(t) if isinstance(t, str) else type_of(t).name
