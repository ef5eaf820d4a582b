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
:mod:`ganglion.types` (and the error classes), so a plugin process stays light.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import cbor2
import zmq

from ganglion.errors import ConfigError, DecodeError, TransportError
from ganglion.types import (
    encode_payload,
    lookup,
    payload_decoder,
    type_name_of,
    type_of,
    validate_type_name,
)

#: File name (without the ``.pub``/``.sub`` suffix) of a node's bus sockets in its state dir.
STATE_DIR_BUS_NAME = "bus"

#: How long the first publish waits for the node's subscription, in seconds.
DEFAULT_READY_TIMEOUT = 5.0

#: Messages each client socket queues before zmq refuses more (SNDHWM/RCVHWM).
DEFAULT_HWM = 1000

#: Environment variable naming the bus secret file when no ``secret`` argument is given.
BUS_SECRET_ENV = "GANGLION_BUS_SECRET_FILE"

#: zmq.DONTWAIT as a plain int (pyzmq's enum costs a few us per message).
_DONTWAIT = int(zmq.DONTWAIT)

#: Z85 text of a 32-byte CURVE key is 40 characters.
_Z85_KEY_CHARS = 40
_KEY_LINE = re.compile(r'^\s*(public|secret)-key\s*=\s*"([^"]*)"\s*$', re.MULTILINE)


@dataclasses.dataclass(frozen=True, slots=True)
class BusSecret:
    """The shared CURVE key pair that guards a restricted plugin bus.

    The node and every plugin hold the *same* pair: the node uses it as its
    CURVE server key, a plugin as both the server key it expects and its own
    client key, and the node accepts only clients that present it. Whoever can
    read the file can use the bus; nobody else can (docs/plugin-frames.md §1.1).

    Attributes:
        public: the public key, 40 characters of Z85 text.
        secret: the secret key, 40 characters of Z85 text.
    """

    public: bytes
    secret: bytes

    @classmethod
    def generate(cls) -> BusSecret:
        """Return a fresh random key pair.

        Raises:
            ConfigError: this libzmq was built without CURVE.
        """
        _require_curve()
        public, secret = zmq.curve_keypair()
        return cls(public=public, secret=secret)

    @classmethod
    def parse(cls, text: str, source: str = "bus secret") -> BusSecret:
        """Read the key pair from a secret file's text (the zcert format; see to_text).

        Args:
            text: the file's contents.
            source: what to call it in error messages.

        Returns:
            The pair, checked: the public key is the secret key's.

        Raises:
            ConfigError: a key line is missing or malformed, or the keys do not match.
        """
        keys = {kind: value for kind, value in _KEY_LINE.findall(text)}
        if set(keys) != {"public", "secret"}:
            raise ConfigError(f"{source}: expected the lines public-key = \"...\" and "
                              f"secret-key = \"...\" (a ZeroMQ CURVE secret certificate)")
        public, secret = keys["public"].encode("ascii", "replace"), keys["secret"].encode(
            "ascii", "replace")
        if len(public) != _Z85_KEY_CHARS or len(secret) != _Z85_KEY_CHARS:
            raise ConfigError(f"{source}: each key must be {_Z85_KEY_CHARS} characters of Z85")
        _require_curve()
        try:
            derived = zmq.curve_public(secret)
        except (zmq.ZMQError, ValueError) as exc:
            raise ConfigError(f"{source}: secret-key is not valid Z85 ({exc})") from None
        if derived != public:
            raise ConfigError(f"{source}: public-key does not belong to secret-key")
        return cls(public=public, secret=secret)

    def to_text(self) -> str:
        """Return the file contents: a ZeroMQ CURVE secret certificate (zcert format)."""
        return (
            "#   ganglion plugin bus secret: a ZeroMQ CURVE key pair shared by the node\n"
            "#   and its plugins. Whoever can read this file can use the bus. Keep it 0600.\n"
            "\n"
            "metadata\n"
            "curve\n"
            f'    public-key = "{self.public.decode()}"\n'
            f'    secret-key = "{self.secret.decode()}"\n'
        )

    def apply(self, sock: zmq.Socket[bytes]) -> None:
        """Make a plugin's socket authenticate to the node with this pair (before connect)."""
        sock.curve_serverkey = self.public
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret

    def __repr__(self) -> str:
        return f"BusSecret(public={self.public.decode()!r}, secret=<hidden>)"


def read_bus_secret(path: str | os.PathLike[str]) -> BusSecret:
    """Read a bus secret file, refusing one that every user can read.

    Args:
        path: the file (the node's ``[bus] secret_file``).

    Returns:
        The key pair.

    Raises:
        ConfigError: the file cannot be read, other users may read or write it,
            or its contents are not a key pair.
    """
    path = Path(path)
    try:
        with open(path, encoding="ascii") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            text = fh.read(4096)  # a certificate is ~300 bytes: never read a huge file whole
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ConfigError(f"cannot read the bus secret file {path}: {reason}") from None
    if mode & 0o007:
        raise ConfigError(f"the bus secret file {path} is open to every user (mode "
                          f"{stat.S_IMODE(mode):o}); it protects nothing: chmod 600 {path}")
    return BusSecret.parse(text, str(path))


def _require_curve() -> None:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq has no CURVE support, which the bus secret needs "
                          "(a libzmq built with libsodium, as pyzmq's wheels are)")


class BusAddress(NamedTuple):
    """The two zmq addresses of one plugin bus.

    Attributes:
        publish: where a plugin connects its PUB/XPUB socket (the node's XSUB).
        subscribe: where a plugin connects its SUB socket (the node's XPUB).
    """

    publish: str
    subscribe: str


@dataclasses.dataclass(frozen=True, slots=True)
class PluginMeta:
    """Where a message delivered to a plugin came from (the third frame).

    Attributes:
        sender: the publishing node's 8-byte id.
        seq: the sender's sequence number for (sender, type).
        sent_ns: the sender's timestamp, ns since the epoch.
        local: True when it was published on this node (by a plugin or in-process).
    """

    sender: bytes
    seq: int
    sent_ns: int
    local: bool

    def encode(self) -> bytes:
        """Return the meta frame: a CBOR map ``{sender, seq, sent_ns, local}``."""
        return bytes(cbor2.dumps(
            {"sender": self.sender, "seq": self.seq, "sent_ns": self.sent_ns, "local": self.local}
        ))

    @classmethod
    def decode(cls, frame: bytes) -> PluginMeta:
        """Parse a meta frame; unknown keys are ignored.

        Raises:
            DecodeError: the frame is not a CBOR map with the four keys well typed.
        """
        try:
            item = cbor2.loads(frame, max_depth=4)
        except Exception as exc:  # cbor2 raises several exception types
            raise DecodeError(f"meta frame is not valid CBOR ({exc})") from None
        if type(item) is not dict:
            raise DecodeError("meta frame must be a CBOR map")
        sender, seq, sent_ns, local = (item.get(k) for k in ("sender", "seq", "sent_ns", "local"))
        if not (type(sender) is bytes and type(seq) is int and type(sent_ns) is int
                and type(local) is bool):
            raise DecodeError(f"meta frame has missing or mistyped keys: {sorted(map(str, item))}")
        return cls(sender=sender, seq=seq, sent_ns=sent_ns, local=local)

    @property
    def sender_hex(self) -> str:
        """The sender's node id as hex digits."""
        return self.sender.hex()


def bus_address(where: str | os.PathLike[str] | BusAddress) -> BusAddress:
    """Resolve where a node's bus is into its two zmq addresses.

    Args:
        where: a :class:`BusAddress`; a ``tcp://HOST:PORT`` URL (publish at PORT,
            subscribe at PORT + 1); an ``ipc://BASE`` URL; a node's state
            directory (an existing directory: the base is ``<dir>/bus``); or an
            ipc base path.

    Returns:
        The pair of addresses to connect to.

    Raises:
        ValueError: a ``tcp://`` URL without a usable port.
    """
    if isinstance(where, BusAddress):
        return where
    text = os.fspath(where)
    if text.startswith("tcp://"):
        host, _, port_text = text[len("tcp://"):].rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65535:
            raise ValueError(f"{text!r}: expected tcp://HOST:PORT with PORT in 1..65534")
        port = int(port_text)
        return BusAddress(f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}")
    if text.startswith("ipc://"):
        return ipc_address(text[len("ipc://"):])
    path = Path(text)
    return ipc_address(path / STATE_DIR_BUS_NAME if path.is_dir() else path)


def ipc_address(base: str | os.PathLike[str]) -> BusAddress:
    """Return the ipc:// pair for a socket base path (``<base>.pub``, ``<base>.sub``)."""
    text = os.fspath(base)
    return BusAddress(f"ipc://{text}.pub", f"ipc://{text}.sub")


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

        Raises:
            ValueError: ``where`` cannot be resolved.
            ConfigError: the secret file is unreadable, open to every user, or malformed.
        """
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
        # A node that refuses our handshake (no or wrong secret) shows up here, so
        # wait_ready can say so instead of "no node is listening".
        self._monitor = self._pub.get_monitor_socket(_HANDSHAKE_FAILED)
        self._refused: str | None = None
        self._pub.connect(self.address.publish)
        self._sub.connect(self.address.subscribe)
        self._listening = False
        self._topics: set[str] = set()
        self._decoders: dict[str, tuple[object, Callable[[bytes], object]]] = {}
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
        name = validate_type_name(type_name).encode()
        # Listening, and nothing new from the node (a 0x00 when it goes away): one
        # getsockopt instead of a poll of two sockets per message.
        if not self._listening or int(self._pub.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            self.wait_ready(self.ready_timeout)
        try:
            self._pub.send_multipart([name, payload], flags=_DONTWAIT)
        except zmq.Again:
            self.dropped += 1
            return False
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
                self._sub.subscribe(name.encode())

    def unsubscribe(self, *types: type | str) -> None:
        """Stop receiving these types; names not subscribed are ignored."""
        self._check_open()
        for name in map(_name_of, types):
            if name in self._topics:
                self._topics.discard(name)
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
        while True:
            try:  # what is queued already needs no poll
                frames = self._sub.recv_multipart(flags=_DONTWAIT)
            except zmq.Again:
                wait_ms = -1 if deadline is None else max(
                    0, int((deadline - time.monotonic()) * 1000))
                if not self._sub.poll(wait_ms):
                    raise TimeoutError(f"no message within {timeout:g} s") from None
                continue
            decoded = self._decode(frames)
            if decoded is not None:
                return decoded

    def __iter__(self) -> Iterator[tuple[object, PluginMeta]]:
        """Yield ``(message, meta)`` forever (until the client is closed)."""
        while not self._closed:
            yield self.recv()

    def close(self) -> None:
        """Close the sockets (pending messages are discarded); idempotent."""
        if self._closed:
            return
        self._closed = True
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

    def _decode(self, frames: list[bytes]) -> tuple[object, PluginMeta] | None:
        """Turn delivered frames into (message, meta), or None to skip them."""
        if len(frames) < 3:
            self.bad_messages += 1
            return None
        try:
            name = frames[0].decode()
        except UnicodeDecodeError:
            self.bad_messages += 1
            return None
        if name not in self._topics:
            self.filtered += 1
            return None
        # One decoder per type, made again when what is registered under it changes
        # (decode_payload would look the type up and build one per message).
        known = lookup(name)
        cached = self._decoders.get(name)
        if cached is None or cached[0] is not known:
            cached = self._decoders[name] = (known, payload_decoder(name))
        try:
            meta = PluginMeta.decode(frames[2])
            return cached[1](frames[1]), meta
        except DecodeError:
            self.bad_messages += 1
            return None

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
        """Note why the node refused our handshake (zmq retries; we only report it)."""
        while self._monitor.poll(0):
            frames = self._monitor.recv_multipart()
            event = int.from_bytes(frames[0][:2], "little")
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
_HANDSHAKE_FAILED = sum(_HANDSHAKE_REASONS)


def _name_of(t: type | str) -> str:
    """The type name of a registered class, or a checked name."""
    return validate_type_name(t) if isinstance(t, str) else type_of(t).name
