"""Endpoint: typed publish/subscribe over UDP multicast, one group per type.

Theory of operation: an endpoint owns one :class:`MulticastSender` and one
:class:`MulticastReceiver` on the chosen interface. ``group_for`` maps a type
name to its multicast group (the agreed map in a node; the deterministic first
choice, a hash of the name, when used alone).

* ``publish(msg)`` numbers the message (one counter per type), hands the object
  itself to local subscribers (no decoding in-process) and, when some other node
  wants the type (see *matching*), encodes it once with the class's generated
  encoder and queues the bytes in the type's packer, which batches adaptively
  (:mod:`ganglion.runtime._outgoing`). Once a class has been sent this way, a
  *route* (name, encoder, packer, largest payload) is kept for it, so the next
  publishes skip every lookup and check that cannot have changed; any change of
  interest, group or waiting messages drops the routes. Where ``ganglion._speedups``
  is built, a route also holds the type's compiled lanes (a ``SendLane``: its plan,
  its group and port, the socket and the packer, resolved once): a message published
  while idle is then numbered, encoded, framed and sent in C before any other Python
  runs (with a network key, signed or encrypted by the packer's sealer once, just
  before the send), one published under load is encoded into the datagram being filled, and
  anything that is not that plain case is left to the Python path, which does the
  same thing slower (:mod:`ganglion.runtime._accel`).
* **Matching** (as DDS and ROS 2 do it): given ``remote_interest``, the endpoint
  sends a type only while that function (asked once per type, then updated with
  :meth:`Endpoint.set_remote_interest`) says some other node subscribes to it.
  Without interest nothing is encoded or sent, but the message still takes its
  sequence number (local subscribers see consecutive numbers, and receivers see
  a pause in sending as a jump, which they never count as loss because they
  rebase when they subscribe again), it is still the type's last value (kept as
  the object and encoded only if a late joiner asks), and its size is still
  checked: a message that could not fit in a datagram is refused at publish
  whatever the interest. The check uses the class's size bound (an upper bound
  of the encoded size computed without encoding, :mod:`ganglion.types._codegen`);
  only a message whose bound exceeds the budget is encoded to measure it
  exactly. Messages of a type whose group is still being agreed wait (encoded)
  whatever the interest, and are sent when it is decided only if someone wants
  them by then, so a subscriber that appears meanwhile gets a new type's first
  readings. Without ``remote_interest`` (an endpoint used alone) every type is sent.
* The first local subscriber of a type joins its group; the last one to close
  leaves it and forgets where the senders' sequences were (the next subscription
  starts a fresh baseline). ``on_subscriptions(type_name, subscribed)`` is told
  of both, so a node can tell its peers.
* Received datagrams are decoded, sequence-checked and delivered by
  :class:`~ganglion.runtime._incoming.Incoming` (a datagram of a stream already
  seen is matched by its header bytes and only its batch is decoded). Nothing a
  peer sends raises out of the receive path: bad datagrams are counted and
  dropped, and the first few of each kind are logged.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ganglion import defaults
from ganglion.errors import DecodeError, EncodeError, LocalError
from ganglion.runtime._accel import speedups
from ganglion.runtime._incoming import Incoming
from ganglion.runtime._outgoing import YIELD_CPU, Outgoing
from ganglion.runtime._sender import SenderStats
from ganglion.runtime._sockets import validate_group
from ganglion.runtime.lastvalues import DEFAULT_MAX_KEYS, LastValues
from ganglion.runtime.replayed import ReplayedRecord
from ganglion.runtime.subscription import (
    DEFAULT_QUEUE_SIZE,
    Callback,
    MessageInfo,
    Subscription,
)
from ganglion.runtime.transport import MulticastReceiver, MulticastSender, ReceiverStats
from ganglion.sequence import SequenceStats, SequenceTable
from ganglion.types import (
    MessageType,
    Record,
    decode_payload,
    encode_message,
    encode_payload,
    lookup,
    type_of,
    validate_type_name,
)
from ganglion.wire import NODE_ID_SIZE, KeyRing, Packer, as_keyring, encode_origin
from ganglion.wire._packer import FULL

if TYPE_CHECKING:
    from ganglion._speedups import SendLane

_log = logging.getLogger(__name__)

#: Bad datagrams are logged once per kind and sending host (a node with the wrong key
#: sends many, and one line says all there is to say), for at most this many hosts per
#: kind; later ones go to the debug log. All are counted (stats()).
_LOG_HOSTS = 8
#: Builds a MessageInfo from a full tuple of its fields, skipping the keyword parsing.
_new_info = tuple.__new__
#: The clock of every send timestamp, bound once (read per published message).
_time_ns = time.time_ns

__all__ = ["Endpoint", "EndpointStats", "GroupFor", "MessageInfo", "Subscription"]

#: Maps a type name to its group; None while the group is not known yet (publishes
#: wait in a bounded queue, subscriptions join once :meth:`Endpoint.set_group` runs).
GroupFor = Callable[[str], "str | IPv4Address | None"]

#: Messages per type waiting for a group before the oldest is dropped.
DEFAULT_PENDING_LIMIT = 1000
#: Seconds subscribers keep listening on a type's old group after it moved.
DEFAULT_MOVE_GRACE = 10.0

#: Whether some other node subscribes to a type (publisher-side matching).
RemoteInterest = Callable[[str], bool]
#: Told ``(type_name, True)`` when a type gets its first local subscriber and
#: ``(type_name, False)`` when its last one closes.
SubscriptionsChanged = Callable[[str, bool], None]


def _max_payload(packer: Packer) -> int:
    """The largest payload that fits in one of ``packer``'s datagrams alone."""
    size = packer.limit
    while size > 0 and not packer.fits(size):
        size -= 1
    return size


def _default_group_for(type_name: str) -> IPv4Address:
    from consensus.allocator import preferred_group

    return preferred_group(type_name)


@dataclasses.dataclass(frozen=True, slots=True)
class EndpointStats:
    """Counters of an endpoint since it started.

    Attributes:
        published: messages published here.
        datagrams_sent: datagrams they went out in (fewer when batching applied).
        received: messages from the network delivered to local subscribers.
        lost: messages missing from the sequences seen (gaps not filled later).
        duplicates: messages received twice and dropped.
        reordered: messages that arrived after a later one (delivered).
        stale: messages older than the replay window, dropped.
        decode_errors: datagrams or payloads that failed to decode, dropped.
        bad_mac: datagrams without a valid MAC or AEAD tag under the network keys
            (forged, altered, another network's, or encrypted and this node has no
            key), dropped.
        schema_mismatches: messages whose sender's schema fingerprint differs from ours.
        pending: messages waiting for their type's group to be known.
        pending_dropped: messages dropped from a full waiting queue (oldest first).
        queue_dropped: messages a slow ``async for`` subscriber lost (oldest first).
        streams: per (sender node id, type name) sequence counters.
        sender: the send socket's counters.
        receiver: the receive sockets' counters (effective SO_RCVBUF included).
        key_cache_evictions: per-sender decryption keys evicted from the bounded cache
            (:data:`ganglion.wire._aead.OPENER_CAP`; shared with the node's other endpoint).
        trackers_evicted: (sender, type) sequence trackers evicted from the bounded
            table (4,096, least recently used first); ``streams`` holds the rest.
        last_value_keys: keys whose latest message is kept, per type published here
            (1 for a type without a key; one per sensor for ``sensors.Temperature``).
        last_values_evicted: keys evicted from a full last-value table (see
            ``Endpoint(last_value_keys=...)``).
    """

    published: int
    datagrams_sent: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    stale: int
    decode_errors: int
    bad_mac: int
    schema_mismatches: int
    pending: int
    pending_dropped: int
    queue_dropped: int
    streams: dict[tuple[bytes, str], SequenceStats]
    sender: SenderStats
    receiver: ReceiverStats
    key_cache_evictions: int = 0
    trackers_evicted: int = 0
    last_value_keys: dict[str, int] = dataclasses.field(default_factory=dict)
    last_values_evicted: int = 0


class Endpoint:
    """Typed publish/subscribe on multicast groups of one interface.

    Args:
        interface: IPv4 address of the chosen interface (see :mod:`ganglion.netif`).
        port: UDP port of the data groups.
        node_id: this endpoint's 8-byte id; random when None.
        boot: boot counter stamped on every datagram; it must grow each time a
            node with a persisted ``node_id`` restarts. When None, the current
            Unix time in seconds is used, which grows across restarts as long as
            the clock does.
        key: the 32-byte network key, or a :class:`~ganglion.wire.KeyRing` (the keys
            accepted, the sending one first, and whether to encrypt). With a key every
            datagram sent is encrypted (ChaCha20-Poly1305; a bytes key encrypts) or, if
            the ring says not to, signed; received datagrams must verify under one of
            the keys (encrypted or signed), others are dropped and counted.
        max_datagram: size budget of one datagram in bytes.
        ttl: multicast TTL.
        group_for: maps a type name to its multicast group, or None while unknown.
        rcvbuf: receive buffer to ask the kernel for.
        pending_limit: messages per type held while its group is unknown.
        move_grace: seconds to keep listening on a type's old group after a move.
        remote_interest: whether another node subscribes to a type; asked once per
            type, updated with :meth:`set_remote_interest`. None sends every type.
        on_subscriptions: told when a type gets its first local subscriber or
            loses its last.
        replay: mark every datagram as replayed from a log (``ganglion replay``),
            so receivers (a logger) can tell replayed readings from live ones.
        yield_on_send: after a message that leaves alone (light traffic), give up
            the CPU (``sched_yield``) so that a subscriber on this host, which the
            datagram just woke and Linux tends to queue on this CPU, runs at once
            rather than after the rest of this loop iteration (it halves one-way
            latency between processes on one host). On a busy CPU the publisher
            then waits for its next turn, up to a scheduling slice (a few ms);
            turn it off where that matters more than same-host latency.
        last_value_keys: latest messages kept per keyed type, one per key (the
            sensor of a reading); the least recently published key is evicted first.
    """

    def __init__(
        self,
        *,
        interface: str = "127.0.0.1",
        port: int = defaults.DATA_PORT,
        node_id: bytes | None = None,
        boot: int | None = None,
        key: bytes | KeyRing | None = None,
        max_datagram: int = defaults.MAX_DATAGRAM,
        ttl: int = defaults.DEFAULT_TTL,
        group_for: GroupFor | None = None,
        rcvbuf: int = defaults.RCVBUF_BYTES,
        pending_limit: int = DEFAULT_PENDING_LIMIT,
        move_grace: float = DEFAULT_MOVE_GRACE,
        remote_interest: RemoteInterest | None = None,
        on_subscriptions: SubscriptionsChanged | None = None,
        replay: bool = False,
        yield_on_send: bool = True,
        last_value_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if node_id is None:
            node_id = secrets.token_bytes(NODE_ID_SIZE)
        if len(node_id) != NODE_ID_SIZE:
            raise LocalError(f"node_id must be {NODE_ID_SIZE} bytes, got {len(node_id)}")
        self.node_id = node_id
        self.boot = int(time.time()) & 0xFFFFFFFF if boot is None else boot
        self.replay = replay
        self._yield_on_send = yield_on_send
        self.interface = interface
        self.port = port
        self._key = as_keyring(key)
        if self._key is not None and self._key.encrypt:
            self._key.require_aead()  # at once, not at start: the error names the fix
        self._max_datagram = max_datagram
        self._ttl = ttl
        self._rcvbuf = rcvbuf
        self._group_for = group_for or _default_group_for
        self._groups: dict[str, str] = {}
        self._subs: dict[str, list[Subscription]] = {}
        self._sequences = SequenceTable(strict=key is not None)
        self._counts: collections.Counter[str] = collections.Counter()
        self._bad_reported: dict[str, set[str]] = {}  # kind -> hosts already warned about
        self._sender: MulticastSender | None = None
        self._receiver: MulticastReceiver | None = None
        self._out: Outgoing | None = None
        self._queue_dropped_closed = 0
        self._pending_limit = pending_limit
        self._move_grace = move_grace
        self._pending: dict[str, collections.deque[tuple[int, bytes, int, bytes]]] = {}
        self._joined: dict[str, set[str]] = {}  # type -> groups joined for it
        self._move_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        # the latest message per (type, key): what late joiners are answered with
        self._last = LastValues(max_keys=last_value_keys)
        self._keep_last = self._last.keep
        # the publish paths store an unkeyed type's last value here themselves (the
        # common case, one dict store); a keyed or new type goes through keep()
        self._last_plain = self._last.plain
        self._last_keyed = self._last.keyed
        self._next_seq: collections.defaultdict[str, int] = collections.defaultdict(int)
        # class -> (name, type, fingerprint, largest payload that fits): the quiet path
        self._quiet: dict[type, tuple[str, MessageType, bytes, int]] = {}
        # class -> (name, encoder, packer, largest payload that fits, fingerprint): the
        # sending path, valid while the type is wanted, has a group and nothing waits
        self._routes: dict[type, tuple[str, Callable[[Any], bytes], Packer, int, bytes,
                                       SendLane | None]] = {}
        self._interest: dict[str, bool] = {}
        self._remote_interest = remote_interest
        self._on_subscriptions = on_subscriptions
        self._clock_synced = True
        self._in = Incoming(node_id=node_id, key=key, subs=self._subs,
                            sequences=self._sequences,
                            count_bad=self._count_bad)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the sockets. Must be called on the event loop that will run the endpoint.

        Raises:
            InterfaceError: ``interface`` is not an address of this host.
            TransportError: a socket could not be opened.
            LocalError: the endpoint is already started (close it first).
        """
        if self._sender is not None:
            # Opening again would orphan the open sockets and their loop readers.
            raise LocalError("the endpoint is already started")
        loop = asyncio.get_running_loop()
        self._sender = MulticastSender(self.interface, ttl=self._ttl, loop=loop)
        try:
            self._receiver = MulticastReceiver(self.interface, self.port, self._in.on_datagram,
                                               rcvbuf=self._rcvbuf, loop=loop,
                                               on_run=self._in.on_run, lane=self._in.lane(),
                                               max_datagram=self._max_datagram)
        except BaseException:
            self._sender.close()
            raise
        self._out = Outgoing(node_id=self.node_id, boot=self.boot, key=self._key,
                             max_datagram=self._max_datagram, send=self._send, loop=loop,
                             replayed=self.replay,
                             after_idle_send=YIELD_CPU if self._yield_on_send else None,
                             send_many=self._send_many if self._sender.gso else None)

    def set_keys(self, key: bytes | KeyRing | None) -> None:
        """Use another key ring from now on (key rotation without a restart).

        What is waiting to be sent leaves first under the old keys; received datagrams
        are checked against the new ring's keys. Rotating without a gap: give every
        node a ring accepting both keys first, then one sending with the new key,
        then one with only the new key (docs/security.md).

        Args:
            key: the new key or ring (bytes: one key, encrypting), or None for no key.

        Raises:
            ConfigError: the ring encrypts and ``cryptography`` is missing, or a key is
                not 32 bytes.
        """
        ring = as_keyring(key)
        if ring is not None and ring.encrypt:
            ring.require_aead()
        self._key = ring
        self._routes.clear()  # sizes changed (the overhead of a MAC or a tag)
        self._quiet.clear()
        if self._out is not None:
            self._out.set_keys(ring)
        self._in.set_keys(ring)

    async def flush(self, timeout: float = 1.0) -> None:
        """Send every queued message and wait (up to ``timeout`` s) for the socket to take them."""
        if self._out is not None:
            self._out.flush()
        deadline = time.monotonic() + timeout
        while self._sender is not None and self._sender.stats().queued and time.monotonic() < deadline:
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        """Flush, close every subscription, leave every group and close the sockets."""
        if self._out is not None:
            await self.flush()
            self._out.close()
            self._out = None
        self._routes.clear()
        for handle in self._move_timers.values():
            handle.cancel()
        self._move_timers.clear()
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None

    async def __aenter__(self) -> Endpoint:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- publish ---------------------------------------------------------------------

    def publish(self, msg: object) -> str:
        """Publish one message to every subscriber of its type, local and remote.

        Never blocks: the message is sent at once when the endpoint is idle, or
        batched with others of its type published in the same loop iteration.

        Args:
            msg: an instance of a registered message class, or a Record. A Record
                of a type registered here must fit its class; local subscribers
                then get the class instance, as remote ones do. A replaying
                endpoint sends a :class:`~ganglion.runtime.replayed.ReplayedRecord`
                with its origin and under its logged fingerprint.

        Returns:
            The message's type name.

        Raises:
            TypeRegistrationError: the message's class is not registered.
            TypeNameError: a Record's type name is not valid.
            EncodeError: a field holds a value its type does not allow.
            MessageTooLarge: the message cannot fit in one datagram (both sizes given).
            ConfigError: ``group_for`` maps the type to an address that is not multicast.
            LocalError: the endpoint is not started.
        """
        route = self._routes.get(type(msg))
        if route is not None:
            # The hot path of a sustained stream: a registered class whose type is
            # sent (someone wants it, its group is known, nothing waits). The state
            # that makes this valid is checked when the route is made, and every
            # change to it (interest, group, release, close) drops the routes.
            # Where the compiled lanes are built, the route's SendLane does what the
            # lines below would, with no other Python before the send, or nothing at
            # all (None) and the lines below do it: light traffic, the message
            # numbered, encoded and sent alone; under load, encoded into the datagram
            # filling up.
            lane = route[5]
            done = lane.publish(msg) if lane is not None else None
            out = self._out
            assert out is not None  # routes exist only while started
            name, encode, packer, max_payload, fingerprint, _ = route
            routed = True  # False: the message takes the general path below
            next_seq = self._next_seq
            if done is not None:
                encoded, seq, now_ns, sent, full = done
                next_seq[name] = seq + 1
                if sent:
                    self._sender.count_sent(sent)  # type: ignore[union-attr]
                    out.sent_alone()
                else:
                    out.messages += 1
                    if full:
                        out.emit(packer)  # another as large would not fit
            else:
                seq = next_seq[name]
                try:
                    encoded = encode(msg)
                except Exception:
                    encoded = b""  # the full path below re-encodes and raises the readable error
                if 0 < len(encoded) <= max_payload:
                    next_seq[name] = seq + 1
                    now_ns = _time_ns()
                    if packer.next_seq != seq:
                        out.skip_to(packer, seq)  # numbers taken that were never sent
                    if out.busy and packer.count and (added := packer.add(encoded, now_ns)):
                        # Outgoing.add's commonest case inlined: joining an open datagram
                        # under load. A full one (not added) takes the general path.
                        out.messages += 1
                        if added == FULL:
                            out.emit(packer)
                    else:
                        out.add(packer, encoded, now_ns)
                else:
                    routed = False
            if routed:
                if self._last_keyed.get(name, True):
                    self._keep_last(name, msg, encoded, fingerprint, seq, now_ns)
                else:
                    self._last_plain[name] = (msg, encoded, fingerprint, seq, now_ns)
                subs = self._subs.get(name)
                if subs:
                    info = _new_info(MessageInfo, (name, self.node_id, seq, now_ns, now_ns,
                                                   self.boot, True, None, self._clock_synced,
                                                   False, self.replay, fingerprint))
                    for sub in tuple(subs):
                        sub.deliver(msg, info)
                return name
        out = self._out
        if out is None:
            raise LocalError("the endpoint is not started; use `async with Endpoint(...)`")
        quiet = self._quiet.get(type(msg))
        if quiet is not None and not self._interest[quiet[0]]:
            # The common in-process case, kept short: a registered class nobody
            # else wants. Checked (validity, size bound), numbered, kept, delivered.
            name, mtype, fingerprint, max_payload = quiet
            try:
                bound = mtype.size_bound(msg)
            except Exception:
                bound = max_payload + 1  # the exact check raises the readable error
            if bound > max_payload:
                out.packer(name, fingerprint).check_fits(len(encode_message(msg, mtype)))
            next_seq = self._next_seq
            seq = next_seq[name]
            next_seq[name] = seq + 1
            now_ns = time.time_ns()
            if self._last_keyed.get(name, True):
                self._keep_last(name, msg, None, fingerprint, seq, now_ns)
            else:
                self._last_plain[name] = (msg, None, fingerprint, seq, now_ns)
            subs = self._subs.get(name)
            if subs:
                info = _new_info(MessageInfo, (name, self.node_id, seq, now_ns, now_ns, self.boot,
                                               True, None, self._clock_synced, False,
                                               self.replay, fingerprint))
                for sub in tuple(subs):
                    sub.deliver(msg, info)
            return name
        if isinstance(msg, Record):
            name, fingerprint, payload, local_msg = self._encode_record(msg)
        else:
            mtype = type_of(msg)
            name, fingerprint, payload, local_msg = mtype.name, mtype.fingerprint, None, msg
        interest = self._interest.get(name)
        if interest is None:
            interest = self._interest[name] = (self._remote_interest is None
                                               or self._remote_interest(name))
        packer = out.packer(name, fingerprint)
        group = self._group(name)  # resolved early: a bad group is the publisher's error
        # While the group is being agreed, messages wait whatever the interest: a
        # subscriber that appears meanwhile still gets a new type's first readings.
        hold = group is None or bool(self._pending.get(name))
        if interest or hold or payload is not None:
            if payload is None:
                payload = encode_message(msg, mtype)
            packer.check_fits(len(payload))
        else:
            self._check_size(msg, mtype, packer)
            if self._remote_interest is not None and type(msg) not in self._quiet:
                self._quiet[type(msg)] = (name, mtype, fingerprint, _max_payload(packer))
        seq = self._next_seq[name]
        self._next_seq[name] = seq + 1
        now_ns = time.time_ns()
        if hold:
            # Queued before local delivery: a subscriber that publishes this type
            # again from its callback gets the next number, and it is sent after this.
            self._hold(name, seq, payload, now_ns, fingerprint)  # type: ignore[arg-type]
        elif not interest:
            self._keep_last(name, local_msg, payload, fingerprint, seq, now_ns)
        else:
            if packer.next_seq != seq:
                out.skip_to(packer, seq)  # numbers taken while nobody else listened
            out.add(packer, payload, now_ns)  # type: ignore[arg-type]
            self._keep_last(name, local_msg, payload, fingerprint, seq, now_ns)
            if not isinstance(msg, Record) and type(msg) is mtype.cls \
                    and type(msg) not in self._routes:
                max_payload = _max_payload(packer)
                self._routes[type(msg)] = (name, mtype.encode, packer, max_payload, fingerprint,
                                           self._send_lane(name, mtype, packer, max_payload))
        subs = self._subs.get(name)
        if subs:
            info = _new_info(MessageInfo, (name, self.node_id, seq, now_ns, now_ns, self.boot,
                                           True, None, self._clock_synced, False, self.replay,
                                           fingerprint))
            for sub in tuple(subs):
                sub.deliver(local_msg, info)
        return name

    def _encode_record(self, msg: Record) -> tuple[str, bytes, bytes, object]:
        """A Record's (name, fingerprint, payload, what local subscribers get)."""
        name = validate_type_name(msg.type_name)
        known = lookup(name)
        if isinstance(msg, ReplayedRecord) and self.replay:
            return self._encode_replayed(name, known, msg)
        fingerprint = known.fingerprint if known is not None else bytes(8)
        payload = encode_payload(msg)
        if known is None:
            return name, fingerprint, payload, msg
        # Sent under the class's fingerprint, so receivers with the class decode it
        # strictly: refuse here what they would all drop, and give local subscribers
        # the class instance remote ones get.
        try:
            return name, fingerprint, payload, decode_payload(name, payload, fingerprint)
        except DecodeError as exc:
            raise EncodeError(f"Record does not fit its registered class: {exc}") from None

    @staticmethod
    def _encode_replayed(name: str, known: MessageType | None, msg: ReplayedRecord
                         ) -> tuple[str, bytes, bytes, object]:
        """A replayed Record's (name, fingerprint, payload, what local subscribers get).

        Sent under the fingerprint it was logged with (its fields are that version's),
        its origin after the fields' map (docs/protocol.md, section 4.4).
        """
        fingerprint = msg.fingerprint if msg.fingerprint is not None else bytes(8)
        body = encode_payload(Record(name, msg.fields))
        local: object = msg
        if known is not None:
            # Refuse here what receivers with the class would drop (the same fingerprint:
            # strict), and give local subscribers what those receivers get.
            try:
                local = decode_payload(name, body, fingerprint)
            except DecodeError as exc:
                raise EncodeError(f"Record does not fit its registered class: {exc}") from None
        return name, fingerprint, body + encode_origin(msg.origin), local

    @staticmethod
    def _check_size(msg: object, mtype: MessageType, packer: Packer) -> None:
        """Refuse a message that could never fit, without encoding it if its bound fits."""
        try:
            bound = mtype.size_bound(msg)
        except Exception:
            bound = len(encode_message(msg, mtype))  # raises EncodeError naming the field
        if packer.fits(bound):
            return
        packer.check_fits(len(encode_message(msg, mtype)))

    def datagram_for(self, msg: object) -> bytes:
        """Encode ``msg`` alone in a datagram, numbered in its type's stream, not sent.

        For a reply the caller sends to one node's address (unicast) instead of the
        group; receivers check it (key, sequence) like any datagram. Neither local
        subscribers nor the last value see it.

        Args:
            msg: an instance of a registered message class.

        Returns:
            The datagram.

        Raises:
            TypeRegistrationError: the message's class is not registered.
            EncodeError: a field holds a value its type does not allow.
            MessageTooLarge: the message cannot fit in one datagram.
            LocalError: the endpoint is not started.
        """
        out = self._out
        if out is None:
            raise LocalError("the endpoint is not started; use `async with Endpoint(...)`")
        mtype = type_of(msg)
        name = mtype.name
        payload = encode_message(msg, mtype)
        packer = out.packer(name, mtype.fingerprint)
        packer.check_fits(len(payload))
        seq = self._next_seq[name]
        self._next_seq[name] = seq + 1
        if packer.next_seq != seq or packer.count:
            out.skip_to(packer, seq)  # what waits leaves first, so numbers stay in order
        self._routes.pop(type(msg), None)  # a compiled lane must re-read the numbering
        return packer.build_one(payload, time.time_ns())

    # -- subscribe -------------------------------------------------------------------

    def subscribe(self, type_or_name: type | str, callback: Callback | None = None, *,
                  maxsize: int = DEFAULT_QUEUE_SIZE) -> Subscription:
        """Subscribe to one message type.

        Args:
            type_or_name: a registered class, or a dotted type name (types without
                a local class arrive as :class:`~ganglion.types.Record`).
            callback: called as ``callback(msg, info)`` for each message; without
                one, iterate the returned subscription with ``async for``.
            maxsize: messages an ``async for`` subscription buffers before dropping
                the oldest.

        Returns:
            The :class:`Subscription`; close it to unsubscribe.

        Raises:
            TypeNameError: the name is not a valid type name.
            TypeRegistrationError: the class is not registered.
            LocalError: the endpoint is not started.
        """
        if self._receiver is None:
            raise LocalError("the endpoint is not started; use `async with Endpoint(...)`")
        if isinstance(type_or_name, str):
            name = validate_type_name(type_or_name)
        else:
            name = type_of(type_or_name).name
        sub = Subscription(name, callback=callback, maxsize=maxsize, on_close=self._unsubscribe)
        subs = self._subs.setdefault(name, [])
        first = not subs
        if first:
            group = self._group(name)
            if group is not None:
                self._join(name, group)
        subs.append(sub)
        if first and self._on_subscriptions is not None:
            self._on_subscriptions(name, True)
        return sub

    def set_group(self, type_name: str, group: str | IPv4Address, *,
                  release_after: float = 0.0) -> None:
        """Tell the endpoint that ``type_name`` now uses ``group`` (assigned or moved).

        Messages waiting for the group are sent. On a move, subscribers join the
        new group at once and keep listening on the old one for ``move_grace``
        seconds, so readings sent by publishers that have not learned of the move
        yet still arrive; the sequence tracker drops any duplicate.

        Args:
            type_name: the type whose group is now known.
            group: its multicast group.
            release_after: seconds to hold the waiting messages back, so that
                subscribers on other nodes, who learn of the group at the same
                moment, have joined it before the first messages arrive.

        Raises:
            ConfigError: ``group`` is not a multicast address.
        """
        group = validate_group(str(group))
        old = self._groups.get(type_name)
        self._groups[type_name] = group
        self._routes.clear()
        if self._subs.get(type_name) and self._receiver is not None:
            self._join(type_name, group)
            if old is not None and old != group:
                self._schedule_leave(type_name, old)
        if release_after > 0 and self._pending.get(type_name):
            asyncio.get_running_loop().call_later(release_after, self._release, type_name)
        else:
            self._release(type_name)

    def clear_group(self, type_name: str) -> None:
        """Tell the endpoint that ``type_name`` has no group any more (it was retired).

        Subscribers stay subscribed and keep listening on the old group for
        ``move_grace`` seconds (readings from publishers that have not learned of the
        retire yet); if the type is assigned again, :meth:`set_group` joins its group.
        Messages published meanwhile wait, as for a type not agreed yet.

        Args:
            type_name: the retired type.
        """
        old = self._groups.pop(type_name, None)
        self._routes.clear()
        if old is not None and self._receiver is not None:
            for group in list(self._joined.get(type_name, ())):
                self._schedule_leave(type_name, group)

    @property
    def clock_synced(self) -> bool:
        """Whether outgoing datagrams are sent as from a synchronised clock."""
        return self._clock_synced

    def last_published(self, type_name: str) -> tuple[bytes, bytes, int, int] | None:
        """This endpoint's newest message of a type, whatever its key (see :meth:`last_values`).

        Returns:
            (payload, fingerprint, seq, sent_ns), or None.
        """
        values = self.last_values(type_name)
        return values[-1] if values else None

    def last_values(self, type_name: str) -> list[tuple[bytes, bytes, int, int]]:
        """This endpoint's latest message of a type per key: [(payload, fingerprint, seq, sent_ns)].

        One for a type without a key; for a keyed type (``sensors.Temperature``: its
        ``sensor``) one per key published, at most ``last_value_keys``, oldest
        sequence number first. Messages still waiting for their type's group do not
        count: a late joiner must not get a reading the network has not seen yet.
        Messages nobody else wanted (not sent, see *matching*) do count: they are
        encoded now, from the object published (so a message mutated after
        publishing is sent as it is now). A replaying endpoint (``replay=True``)
        answers for none: a replayer's readings are not current values, and a last
        value carries no origin, so a late joiner would take one for a live reading.
        """
        if self.replay:
            return []
        values = []
        for key, entry in self._last.entries(type_name):
            if entry.payload is None:
                try:
                    entry.payload = encode_payload(entry.msg)
                except EncodeError:
                    _log.warning("the last %s published cannot be encoded any more (mutated "
                                 "after publishing?); not answering for it", type_name)
                    continue
                self._last.store_payload(type_name, key, entry.seq, entry.payload)
            values.append((entry.payload, entry.fingerprint, entry.seq, entry.sent_ns))
        return values

    def last_value_counts(self) -> dict[tuple[str, tuple[Any, ...]], int]:
        """Messages published here per (type, key), for keyed types (see :meth:`last_values`).

        Only keys still held are listed (``last_value_keys`` per type, least recently
        published evicted first: ``stats().last_values_evicted``).
        """
        return {(name, key): count for (name, key), count in self._last.counts().items()
                if key is not None}

    def set_remote_interest(self, type_name: str, interested: bool) -> None:
        """Tell the endpoint whether some other node subscribes to ``type_name`` now.

        While not, its messages are delivered locally, numbered and kept as the
        last value, but neither encoded nor sent. Ignored by an endpoint made
        without ``remote_interest`` (it sends everything).
        """
        if self._remote_interest is not None:
            self._interest[type_name] = interested
            self._routes.clear()

    def remote_interest(self) -> dict[str, bool]:
        """The types this endpoint has decided about, and whether it sends each."""
        return dict(self._interest)

    def published(self) -> dict[str, int]:
        """Messages published here per type name (sent or not)."""
        # Every publish takes exactly one sequence number, so the counters are the same.
        return {name: count for name, count in self._next_seq.items() if count}

    def deliver_last_value(self, type_name: str, payload: bytes, *, sender: bytes,
                           fingerprint: bytes, seq: int, boot: int, sent_ns: int,
                           source: tuple[str, int] | None = None,
                           clock_synced: bool = True) -> bool:
        """Hand a peer's latest message (a late-joiner answer) to local subscribers.

        It is delivered, marked ``last_value``, only when no message as new from that
        sender has been seen, so a subscriber never gets an old reading after a newer one.
        Its sequence number is then recorded like a received message's, so the same
        reading arriving live afterwards is dropped as a duplicate. A publisher answers
        a keyed type with one message per key, oldest first, so each is newer than the
        one before and all are delivered; the numbers between them (other keys' older
        messages) are not counted as lost.

        Returns:
            True if it was delivered.
        """
        subs = self._subs.get(type_name)
        if not subs:
            return False
        seen = self._sequences.peek(sender, type_name)
        if seen is not None and seen.boot == boot and seen.highest is not None \
                and seen.highest >= seq:
            return False
        try:
            msg = decode_payload(type_name, payload, fingerprint)
        except DecodeError as exc:
            self._count_bad("decode_errors", str(exc), source or ("?", 0))
            return False
        tracker = self._sequences.tracker(sender, type_name)
        verdict = tracker.observe(seq, boot, sent_ns)
        # A keyed type is answered with one message per key, in sequence order: the
        # numbers between two answers are other keys' older messages (superseded by
        # their own answers), not losses, so the next message starts a new baseline.
        tracker.rebase()
        self._in.sync_evictions()
        if not verdict.deliver:
            return False
        info = MessageInfo(type_name=type_name, sender=sender, seq=seq, sent_ns=sent_ns,
                           received_ns=time.time_ns(), boot=boot, source=source,
                           clock_synced=clock_synced, last_value=True, fingerprint=fingerprint)
        for sub in list(subs):
            sub.deliver(msg, info)
        return True

    def set_clock_synced(self, synced: bool) -> None:
        """Flag (or stop flagging) outgoing datagrams as sent with an unsynchronised clock."""
        if synced == self._clock_synced:
            return
        self._clock_synced = synced
        if self._out is not None:
            self._out.set_clock_synced(synced)

    def subscribed(self) -> frozenset[str]:
        """Type names with at least one local subscriber."""
        return frozenset(name for name, subs in self._subs.items() if subs)

    # -- stats -----------------------------------------------------------------------

    def stats(self) -> EndpointStats:
        """A snapshot of every counter (see :class:`EndpointStats`)."""
        if self._sender is None or self._receiver is None or self._out is None:
            raise LocalError("the endpoint is not started")
        streams = self._sequences.stats()
        total = collections.Counter[str]()
        for s in streams.values():
            total.update(received=s.received, lost=s.lost, duplicates=s.duplicates,
                         reordered=s.reordered, stale=s.stale,
                         schema_mismatches=s.schema_mismatches)
        dropped = self._queue_dropped_closed + sum(
            sub.dropped for subs in self._subs.values() for sub in subs)
        c = self._counts
        pending = sum(len(q) for q in self._pending.values())
        return EndpointStats(
            published=sum(self._next_seq.values()), datagrams_sent=self._out.datagrams,
            received=self._in.received, lost=total["lost"], duplicates=total["duplicates"],
            reordered=total["reordered"], stale=total["stale"],
            decode_errors=c["decode_errors"], bad_mac=c["bad_mac"],
            schema_mismatches=total["schema_mismatches"], pending=pending,
            pending_dropped=c["pending_dropped"], queue_dropped=dropped,
            streams=streams, sender=self._sender.stats(), receiver=self._receiver.stats(),
            key_cache_evictions=self._in.aead_evictions,
            trackers_evicted=self._sequences.evicted,
            last_value_keys=self._last.keys(), last_values_evicted=self._last.evicted,
        )

    # -- internals -------------------------------------------------------------------

    def _group(self, type_name: str) -> str | None:
        group = self._groups.get(type_name)
        if group is None:
            found = self._group_for(type_name)
            if found is None:
                return None
            group = self._groups[type_name] = validate_group(str(found))
        return group

    def _send_lane(self, type_name: str, mtype: MessageType, packer: Packer,
                   max_payload: int) -> SendLane | None:
        """The compiled lanes of a route for ``mtype`` (a ``SendLane``, which resolves
        the group, the socket and the packer's slots once); None where they are not
        used (not built, or no plan for the type). On a keyed network the lane builds a
        lone datagram in clear and has the packer's sealer sign or encrypt it; batched
        datagrams are built (and sealed) by the packer, as without a key."""
        if speedups is None or mtype.plan is None:
            return None
        assert self._out is not None and self._sender is not None  # routes: only while started
        lane: SendLane = speedups.SendLane(
            self._next_seq, type_name, self._sender, self._out, packer, self._groups[type_name],
            self.port, mtype.plan, max_payload, self._out.yields_cpu)
        return lane

    def _send(self, datagram: bytes, type_name: str) -> bool:
        assert self._sender is not None
        group = self._groups[type_name]  # resolved before anything was queued
        return self._sender.send(datagram, group, self.port)

    def _send_many(self, datagrams: list[bytes], type_name: str) -> None:
        assert self._sender is not None
        self._sender.send_many(datagrams, self._groups[type_name], self.port)

    def _join(self, type_name: str, group: str) -> None:
        assert self._receiver is not None
        joined = self._joined.setdefault(type_name, set())
        if group not in joined:
            self._receiver.join(group)  # reference-counted by the receiver
            joined.add(group)
        timer = self._move_timers.pop((type_name, group), None)
        if timer is not None:
            timer.cancel()  # moved back before the grace period ended

    def _leave(self, type_name: str, group: str) -> None:
        self._move_timers.pop((type_name, group), None)
        joined = self._joined.get(type_name)
        if joined and group in joined:
            joined.discard(group)
            if self._receiver is not None:
                self._receiver.leave(group)

    def _schedule_leave(self, type_name: str, group: str) -> None:
        key = (type_name, group)
        if key not in self._move_timers:
            loop = asyncio.get_running_loop()
            self._move_timers[key] = loop.call_later(self._move_grace, self._leave,
                                                     type_name, group)

    def _hold(self, name: str, seq: int, payload: bytes, ts_ns: int, fingerprint: bytes) -> None:
        """Queue a message until its type has a group.

        Numbers are given at publish time, so local subscribers and the network
        agree on them; a message dropped from a full queue keeps its number, and
        receivers see the drop as a gap.
        """
        queue = self._pending.setdefault(name, collections.deque())
        if len(queue) >= self._pending_limit:
            queue.popleft()
            self._counts["pending_dropped"] += 1
        queue.append((seq, payload, ts_ns, fingerprint))

    def _release(self, type_name: str) -> None:
        """Send the messages that waited for ``type_name``'s group, with their numbers."""
        queue = self._pending.get(type_name)
        if not queue or self._out is None or type_name not in self._groups:
            return
        del self._pending[type_name]
        self._routes.clear()
        out = self._out
        if not self._interest.get(type_name, True):
            # nobody else wants them by now: the newest is the last value, none is sent
            # (each key's newest, for a keyed type)
            for seq, payload, ts_ns, fingerprint in queue:
                self._keep_last(type_name, None, payload, fingerprint, seq, ts_ns,
                                newer_only=True)
            return
        for seq, payload, ts_ns, fingerprint in queue:
            packer = out.packer(type_name, fingerprint)
            if packer.next_seq != seq:
                out.skip_to(packer, seq)
            out.add(packer, payload, ts_ns)
            self._keep_last(type_name, None, payload, fingerprint, seq, ts_ns, newer_only=True)

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.type_name)
        if not subs or sub not in subs:
            return
        subs.remove(sub)
        self._queue_dropped_closed += sub.dropped
        if not subs:
            for group in list(self._joined.get(sub.type_name, ())):
                self._leave(sub.type_name, group)
            # Senders may stop sending while nobody here listens (matching): the
            # next subscription must not count that pause as loss.
            self._sequences.rebase(sub.type_name)
            if self._on_subscriptions is not None:
                self._on_subscriptions(sub.type_name, False)

    def _count_bad(self, kind: str, detail: str, source: tuple[str, int]) -> None:
        self._counts[kind] += 1
        reported = self._bad_reported.setdefault(kind, set())
        if source[0] in reported or len(reported) >= _LOG_HOSTS:
            _log.debug("dropped a datagram from %s:%d (%s): %s", source[0], source[1], kind,
                       detail)
            return
        reported.add(source[0])
        _log.warning("dropped a datagram from %s:%d (%s): %s (further ones of this kind from "
                     "%s are only counted: stats().%s)", source[0], source[1], kind, detail,
                     source[0], kind)
