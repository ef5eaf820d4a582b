"""Endpoint: typed publish/subscribe over UDP multicast, one group per type.

Theory of operation: an endpoint owns one :class:`MulticastSender` and one
:class:`MulticastReceiver` on the chosen interface, and puts together four parts,
each in a module of its own:

* the **publish side** (:mod:`ganglion.runtime._publishing`, sans I/O): numbering,
  matching (below), routes, the hold queue and the last values; ``publish(msg)`` is
  its :meth:`~ganglion.runtime._publishing.Publisher.publish`. It hands local
  subscribers the object itself (no decoding in-process) and, when some other node
  wants the type, encodes it once with the class's generated encoder (or the
  compiled lane does, ``ganglion._speedups``: :mod:`ganglion.runtime._accel`);
* the **send side** (:mod:`ganglion.runtime._outgoing`, sans I/O): per-type packers
  and adaptive batching (alone at once while idle, batched under load), handing
  datagrams to the sender (:mod:`ganglion.runtime._sender`);
* the **receive side** (:mod:`ganglion.runtime._incoming`): datagrams decoded,
  sequence-checked and delivered (a datagram of a stream already seen is matched by
  its header bytes and only its batch is decoded). Nothing a peer sends raises out of
  the receive path: bad datagrams are counted and dropped, and the first few of each
  kind are logged;
* **listening** (:mod:`ganglion.runtime._listening`): which group each type uses
  (``group_for``: the agreed map in a node; the deterministic first choice, a hash of
  the name, when used alone), the local subscriptions, and the joins, leaves and
  moves of groups they cause.

**Matching** (as DDS and ROS 2 do it): given ``remote_interest``, the endpoint sends a
type only while that function (asked once per type, then updated with
:meth:`Endpoint.set_remote_interest`) says some other node subscribes to it. Without
interest nothing is encoded or sent, but the message still takes its sequence number
(local subscribers see consecutive numbers, and receivers see a pause in sending as a
jump, which they never count as loss because they rebase when they subscribe again),
it is still the type's last value (kept as the object and encoded only if a late
joiner asks), and its size is still checked: a message that could not fit in a
datagram is refused at publish whatever the interest. The check uses the class's size
bound (an upper bound of the encoded size computed without encoding,
:mod:`ganglion.types._codegen`); only a message whose bound exceeds the budget is
encoded to measure it exactly. Messages of a type whose group is still being agreed
wait (encoded) whatever the interest, and are sent when it is decided only if someone
wants them by then, so a subscriber that appears meanwhile gets a new type's first
readings. Without ``remote_interest`` (an endpoint used alone) every type is sent.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import time
from ipaddress import IPv4Address
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ganglion import defaults
from ganglion.errors import LocalError
from ganglion.runtime._accel import speedups
from ganglion.runtime._incoming import GapHooks, Incoming
from ganglion.runtime._listening import (
    DEFAULT_MOVE_GRACE,
    GroupFor,
    Listening,
    SubscriptionsChanged,
)
from ganglion.runtime._outgoing import YIELD_CPU, Outgoing
from ganglion.runtime._publishing import DEFAULT_PENDING_LIMIT, Publisher, RemoteInterest
from ganglion.runtime._sender import GroupSender, SenderStats
from ganglion.runtime.lastvalues import DEFAULT_MAX_KEYS
from ganglion.runtime.subscription import (
    DEFAULT_QUEUE_SIZE,
    Callback,
    MessageInfo,
    Subscription,
)
from ganglion.runtime.transport import MulticastReceiver, MulticastSender, ReceiverStats
from ganglion.sequence import SequenceStats, SequenceTable
from ganglion.types import MessageType, type_of, validate_type_name
from ganglion.wire import NODE_ID_SIZE, KeyRing, Packer, as_keyring

if TYPE_CHECKING:
    from ganglion._speedups import SendLane
    from ganglion.repair import History, HistoryLimits, Requester

_log = logging.getLogger(__name__)

#: Bad datagrams are logged once per kind and sending host (a node with the wrong key
#: sends many, and one line says all there is to say), for at most this many hosts per
#: kind; later ones go to the debug log. All are counted (stats()).
_LOG_HOSTS = 8

__all__ = ["DEFAULT_MOVE_GRACE", "DEFAULT_PENDING_LIMIT", "Endpoint", "EndpointStats",
           "GroupFor", "MessageInfo", "RemoteInterest", "Subscription", "SubscriptionsChanged"]


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
        repaired: messages delivered from repairs and history answers (each stream's
            ``repaired`` in ``streams``, summed).
        permanently_lost: numbers given up for good (the repair requester's).
        repairs_dropped: repaired messages dropped as already delivered, too old to
            tell, or of a stream not followed here.
        history_dropped: history answers dropped likewise.
        history: the history's counters (``history_bytes``, ``history_messages``,
            evictions), empty without one.
        history_types: per type published here: (messages, bytes) held in the history.
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
    repaired: int = 0
    permanently_lost: int = 0
    repairs_dropped: int = 0
    history_dropped: int = 0
    history: dict[str, int] = dataclasses.field(default_factory=dict)
    history_types: dict[str, tuple[int, int]] = dataclasses.field(default_factory=dict)


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
        history: keeps every message published here of a type whose history is on
            (encoded even when nobody wants it), for repairs and history answers
            (:class:`ganglion.repair.History`); None keeps nothing.
        requester: the repair requester (:class:`ganglion.repair.Requester`), told
            of every gap, late arrival and sender restart the sequence tracking sees,
            and of types nobody here subscribes to any more; None: repair is off.
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
        history: History | None = None,
        requester: Requester | None = None,
    ) -> None:
        if node_id is None:
            node_id = os.urandom(NODE_ID_SIZE)
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
        self._subs: dict[str, list[Subscription]] = {}
        self._sequences = SequenceTable(strict=key is not None)
        self._counts: collections.Counter[str] = collections.Counter()
        self._bad_reported: dict[str, set[str]] = {}  # kind -> hosts already warned about
        self._sender: MulticastSender | None = None
        self._receiver: MulticastReceiver | None = None
        self._out: Outgoing | None = None
        self._on_subscriptions = on_subscriptions
        self.requester = requester
        self.history = history
        self._listening = Listening(group_for=group_for or _default_group_for, subs=self._subs,
                                    sequences=self._sequences, move_grace=move_grace,
                                    on_subscriptions=self._subscriptions_changed)
        self._groups = self._listening.groups  # where each type is sent (and listened to)
        self._pub = Publisher(node_id=node_id, boot=self.boot, replay=replay, subs=self._subs,
                              group_of=self._listening.group, remote_interest=remote_interest,
                              pending_limit=pending_limit, last_value_keys=last_value_keys,
                              history=history)
        # Each publish calls the Publisher's method directly: through the method below it
        # would run one more Python frame, 3% of a publish under load (bench/transport.py).
        self.publish = self._pub.publish  # type: ignore[method-assign]
        #: The next sequence number per type (read by tests and tools that fake a gap).
        self._next_seq = self._pub.next_seq
        self._in = Incoming(node_id=node_id, key=key, subs=self._subs,
                            sequences=self._sequences,
                            count_bad=self._count_bad, gaps=requester)

    def set_gap_hooks(self, hooks: GapHooks | None) -> None:
        """Tell ``hooks`` (the node's repair glue) of gaps instead of the bare requester,
        so a gap also sets the repair timer (None: back to the requester)."""
        self._in.gaps = hooks if hooks is not None else self.requester

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
        self._listening.receiver = self._receiver
        to_groups = GroupSender(self._sender, self._groups, self.port)
        self._out = Outgoing(node_id=self.node_id, boot=self.boot, key=self._key,
                             max_datagram=self._max_datagram, send=to_groups.send, loop=loop,
                             replayed=self.replay,
                             after_idle_send=YIELD_CPU if self._yield_on_send else None,
                             send_many=to_groups.send_many if self._sender.gso else None,
                             count_sent=self._sender.count_sent)
        self._pub.out = self._out
        self._pub.make_lane = self._send_lane
        self._pub.fold_later = loop.call_later
        self._in.set_clock(loop.time)

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
        self._pub.forget_routes()  # sizes changed (the overhead of a MAC or a tag)
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
        self._pub.out = None
        self._pub.fold_later = None
        self._pub.forget_routes()
        self._pub.fold()
        self._listening.close()
        if self._receiver is not None:
            self._receiver.close()
            self._receiver = None
            self._listening.receiver = None
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
        batched with others of its type published in the same loop iteration
        (:meth:`Publisher.publish <ganglion.runtime._publishing.Publisher.publish>`
        does the steps).

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

        An endpoint binds its Publisher's method in place of this one (the same call,
        one frame less); this is its documentation.
        """
        return self._pub.publish(msg)

    def publish_payload(self, type_name: str, payload: bytes, *,
                        exclude: Subscription | None = None) -> bool:
        """Publish an already encoded payload of a type not registered here, as it is.

        The bytes-in publish of the plugin bus: a plugin's payload is the CBOR map a
        datagram carries, so it is numbered, queued (or held for the type's group,
        or only kept as the last value while nobody else wants it) and sent without
        being decoded and encoded again, under the fingerprint a :class:`Record` of
        an unregistered type gets (8 zero bytes). It is decoded only when a local
        subscriber other than ``exclude`` is there to receive it (as a Record).

        Args:
            type_name: a valid type name (the caller checked it).
            payload: a well-formed payload (the caller checked it:
                :func:`ganglion.types._payload.payload_problem`).
            exclude: a subscription that must not get it (the bus's own, which
                passed the message to its plugins already).

        Returns:
            False, having done nothing, when the type is registered here: such a
            payload must be checked against its class, so the caller publishes the
            decoded message instead.

        Raises:
            MessageTooLarge: it cannot fit in one datagram.
            ConfigError: ``group_for`` maps the type to an address that is not multicast.
            LocalError: the endpoint is not started.
        """
        return self._pub.publish_payload(type_name, payload, exclude=exclude)

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
        return self._pub.datagram_for(msg)

    # -- subscribe and groups --------------------------------------------------------

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
        return self._listening.subscribe(name, callback, maxsize)

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
        self._listening.set_group(type_name, group)
        self._pub.forget_routes()
        if release_after > 0 and self._pub.held.waiting(type_name):
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
        self._listening.clear_group(type_name)
        self._pub.forget_routes()

    def subscribed(self) -> frozenset[str]:
        """Type names with at least one local subscriber."""
        return self._listening.subscribed()

    # -- clock, interest and last values ---------------------------------------------

    @property
    def clock_synced(self) -> bool:
        """Whether outgoing datagrams are sent as from a synchronised clock."""
        return self._pub.clock_synced

    def hold_sends(self) -> None:
        """Send what is published in this loop iteration together at its end, with no
        yield of the CPU between (:meth:`Outgoing.hold <ganglion.runtime._outgoing.Outgoing.hold>`)."""
        if self._out is not None:
            self._out.hold()

    def set_clock_synced(self, synced: bool) -> None:
        """Flag (or stop flagging) outgoing datagrams as sent with an unsynchronised clock."""
        if synced == self._pub.clock_synced:
            return
        self._pub.clock_synced = synced
        if self._out is not None:
            self._out.set_clock_synced(synced)

    def set_remote_interest(self, type_name: str, interested: bool) -> None:
        """Tell the endpoint whether some other node subscribes to ``type_name`` now.

        While not, its messages are delivered locally, numbered and kept as the
        last value, but neither encoded nor sent. Ignored by an endpoint made
        without ``remote_interest`` (it sends everything).
        """
        self._pub.set_interest(type_name, interested)

    def remote_interest(self) -> dict[str, bool]:
        """The types this endpoint has decided about, and whether it sends each."""
        return self._pub.interest()

    def published(self) -> dict[str, int]:
        """Messages published here per type name (sent or not)."""
        return self._pub.published()

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
        return self._pub.last_values(type_name)

    def last_value_counts(self) -> dict[tuple[str, tuple[Any, ...]], int]:
        """Messages published here per (type, key), for keyed types (see :meth:`last_values`).

        Only keys still held are listed (``last_value_keys`` per type, least recently
        published evicted first: ``stats().last_values_evicted``).
        """
        return {(name, key): count for (name, key), count in self._pub.last.counts().items()
                if key is not None}

    def deliver_last_value(self, type_name: str, payload: bytes, *, sender: bytes,
                           fingerprint: bytes, seq: int, boot: int, sent_ns: int,
                           source: tuple[str, int] | None = None,
                           clock_synced: bool = True) -> bool:
        """Hand a peer's latest message (a late-joiner answer) to local subscribers.

        It is delivered, marked ``last_value``, only when no message as new from that
        sender has been seen, so a subscriber never gets an old reading after a newer one
        (:meth:`Incoming.deliver_last_value
        <ganglion.runtime._incoming.Incoming.deliver_last_value>`).

        Returns:
            True if it was delivered.
        """
        return self._in.deliver_last_value(type_name, payload, sender=sender,
                                           fingerprint=fingerprint, seq=seq, boot=boot,
                                           sent_ns=sent_ns, source=source,
                                           clock_synced=clock_synced)

    def deliver_repair(self, type_name: str, fingerprint: bytes, *, sender: bytes, boot: int,
                       seq: int, sent_ns: int, payload: bytes, clock_synced: bool = True,
                       source: tuple[str, int] | None = None, history: bool = False) -> bool:
        """Hand one message a publisher sent again (NACK repair, or a history answer when
        ``history``) to local subscribers, once, marked ``MessageInfo.repaired``
        (:meth:`Incoming.deliver_repair <ganglion.runtime._incoming.Incoming.deliver_repair>`).

        Returns:
            True if it was delivered.
        """
        return self._in.deliver_repair(type_name, fingerprint, sender=sender, boot=boot,
                                       seq=seq, sent_ns=sent_ns, payload=payload,
                                       clock_synced=clock_synced, source=source,
                                       history=history)

    def note_tail(self, sender: bytes, type_name: str, boot: int, last_seq: int) -> int:
        """A publisher's announced last number of a type (a heartbeat's tail): the numbers
        above the highest seen become a gap, and the repair requester is told
        (:meth:`Incoming.note_tail <ganglion.runtime._incoming.Incoming.note_tail>`).

        Returns:
            How many numbers became the gap.
        """
        return self._in.note_tail(sender, type_name, boot, last_seq)

    def set_history_limits(self, type_name: str, limits: HistoryLimits) -> None:
        """Give one type its own history limits from now on (0 bytes or 0 s: off).

        Raises:
            LocalError: the endpoint keeps no history.
        """
        if self.history is None:
            raise LocalError("this endpoint keeps no history (Endpoint(history=None))")
        self.history.set_limits(type_name, limits)
        self._pub.forget_routes()  # each route asks for its keep buffer again

    def subscriber_count(self, type_name: str) -> int:
        """The local subscriptions open on ``type_name`` (the plugin bus asks it)."""
        return len(self._subs.get(type_name, ()))

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
        c = self._counts
        pub = self._pub
        lost_for_good = 0
        if self.requester is not None:
            # Per (sender, type): the requester's counters of every boot, summed.
            merged: dict[tuple[bytes, str], collections.Counter[str]] = {}
            for (node, type_name, _boot), rs in self.requester.stats().items():
                merged.setdefault((node, type_name), collections.Counter()).update(
                    repair_requests_sent=rs.repair_requests_sent,
                    repair_requests_suppressed=rs.repair_requests_suppressed,
                    permanently_lost=rs.permanently_lost)
                lost_for_good += rs.permanently_lost
            for key, counts in merged.items():
                seen = streams.get(key)
                if seen is not None:
                    streams[key] = dataclasses.replace(seen, **counts)
        history = self.history
        return EndpointStats(
            published=sum(pub.next_seq.values()), datagrams_sent=self._out.datagrams,
            received=self._in.received, lost=total["lost"], duplicates=total["duplicates"],
            reordered=total["reordered"], stale=total["stale"],
            decode_errors=c["decode_errors"], bad_mac=c["bad_mac"],
            schema_mismatches=total["schema_mismatches"], pending=len(pub.held),
            pending_dropped=pub.held.dropped, queue_dropped=self._listening.queue_dropped(),
            streams=streams, sender=self._sender.stats(), receiver=self._receiver.stats(),
            key_cache_evictions=self._in.aead_evictions,
            trackers_evicted=self._sequences.evicted,
            last_value_keys=pub.last.keys(), last_values_evicted=pub.last.evicted,
            repaired=sum(s.repaired for s in streams.values()), permanently_lost=lost_for_good,
            repairs_dropped=self._in.repairs_dropped, history_dropped=self._in.history_dropped,
            history={} if history is None else history.stats(),
            history_types={} if history is None else history.type_stats(),
        )

    # -- internals -------------------------------------------------------------------

    def _send_lane(self, type_name: str, mtype: MessageType, packer: Packer,
                   max_payload: int, kept: list[Any] | None = None
                   ) -> SendLane | None:
        """The compiled lanes of a route for ``mtype`` (a ``SendLane``, which resolves
        the group, the socket and the packer's slots once); None where they are not
        used (not built, or no plan for the type). On a keyed network the lane builds a
        lone datagram in clear and has the packer's sealer sign or encrypt it; batched
        datagrams are built (and sealed) by the packer, as without a key. ``kept``: the
        type's keep buffer in the history, which the lane appends each message to."""
        if speedups is None or mtype.plan is None:
            return None
        assert self._out is not None and self._sender is not None  # routes: only while started
        lane: SendLane = speedups.SendLane(
            self._pub.next_seq, type_name, self._sender, self._out, packer,
            self._groups[type_name], self.port, mtype.plan, max_payload, self._out.yields_cpu,
            kept)
        return lane

    def _subscriptions_changed(self, type_name: str, subscribed: bool) -> None:
        """A type got its first local subscriber or lost its last: with the last, the
        requester stops asking for its numbers (their gaps are recorded as lost)."""
        if not subscribed and self.requester is not None:
            self.requester.forget(type_name)
        if self._on_subscriptions is not None:
            self._on_subscriptions(type_name, subscribed)

    def _release(self, type_name: str) -> None:
        """Send the messages that waited for ``type_name``'s group (if it still has one)."""
        if type_name in self._groups:
            self._pub.release(type_name)

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
