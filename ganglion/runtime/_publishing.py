"""The publish side of an endpoint, sans I/O: from a published object to its packer.

Theory of operation: :meth:`Publisher.publish` takes one message through the same
steps every time, each in one place:

1. **classify**: its type name, schema fingerprint and, for a Record, its payload
   (:func:`classify`);
2. **decide**: whether some other node wants the type (*interest*, asked once per
   type, :meth:`Publisher.wants`) and whether it must wait for its group
   (:class:`HoldQueue`); the message is encoded only when it will be sent or held,
   otherwise its size is checked against the class's size bound (an upper bound of
   the encoded size computed without encoding);
3. **number**: the type's next sequence number (``next_seq``; every publish takes
   one, sent or not, so local subscribers and the network agree on the numbers);
4. **hand over**: to the send side (:meth:`Outgoing.add
   <ganglion.runtime._outgoing.Outgoing.add>`, which batches), to the hold queue,
   or to nobody (not wanted elsewhere);
5. **keep** it as the type's last value (:class:`~ganglion.runtime.lastvalues.LastValues`;
   a held message only once it is released) and, when the type's history is on,
   in the node's :class:`~ganglion.repair.History` (what repairs and history answers
   are made from), and **deliver** it to local subscribers with a
   :class:`~ganglion.runtime.subscription.MessageInfo` (:meth:`Publisher._deliver`).

**History**: with a history (``Publisher(history=...)``), every message of a type
whose history is on is encoded, sent or not (a late subscriber's history request
gets what nobody wanted yet), and its payload and a ``(seq, sent_ns, end)`` entry are
appended to the type's keep buffer (:meth:`History.keep <ganglion.repair.History.keep>`,
asked once per route; a list append and a bytearray append, no copy). The
history takes the buffers in :data:`FOLD_SECONDS` after the first append since the
last fold (:meth:`Publisher.fold`, scheduled with ``fold_later``), at the
:data:`FOLD_COUNT`-th append, and whenever it is asked anything, so its bookkeeping
is per batch, not per message (folding once per loop iteration made a 64-byte
publish ~25 % dearer; per 1024 messages it is ~18 %, what the appends, the joins at
sealing and the frees cost). Between two folds the keep buffers hold up to
FOLD_COUNT messages on top of the history's bounds. A held message is
kept at publish (with its number): if the hold queue drops it, a receiver that sees
the gap can still have it repaired.

Once a registered class has been published, a :class:`Route` is kept for it: the
steps 1-2 resolved (name, fingerprint, encoder, packer, largest payload, whether it
is sent), so the next publishes of the class skip every lookup and check that cannot
have changed. Any change of interest, group, keys or waiting messages drops the
routes (:meth:`Publisher.forget_routes`), and the next publish makes a new one.

Where ``ganglion._speedups`` is built, a route that sends also holds the type's
compiled lane (a ``SendLane``, made by the endpoint, which knows the socket and the
group): a message published while idle is then numbered, encoded, framed and sent in
C before any other Python runs, one published under load is encoded into the
datagram being filled, and anything that is not that plain case is left to the Python
steps above, which do the same thing slower (the reference the tests compare it with:
``tests/runtime/test_speedups*.py``).

Sans I/O: no sockets, no event loop; the endpoint gives the send side
(:class:`~ganglion.runtime._outgoing.Outgoing`), the group lookup and the lane
maker. The clock is read once per message (``time.time_ns``), for its timestamp.
"""

from __future__ import annotations

import collections
import logging
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ganglion.errors import DecodeError, EncodeError, LocalError
from ganglion.repair.history import ENTRY
from ganglion.runtime.lastvalues import DEFAULT_MAX_KEYS, LastValues
from ganglion.runtime.replayed import ReplayedRecord
from ganglion.runtime.subscription import MessageInfo, Subscription
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
from ganglion.wire import Packer, encode_origin

if TYPE_CHECKING:
    from ganglion._speedups import SendLane
    from ganglion.repair import History
    from ganglion.repair.history import Keep
    from ganglion.runtime._outgoing import Outgoing

__all__ = ["DEFAULT_PENDING_LIMIT", "Held", "HoldQueue", "Publisher", "Route", "classify"]

_log = logging.getLogger(__name__)

#: Messages per type waiting for a group before the oldest is dropped.
DEFAULT_PENDING_LIMIT = 1000
#: Builds a MessageInfo from a full tuple of its fields, skipping the keyword parsing
#: (a third of the cost); used by :meth:`Publisher._deliver` only.
_new_info = tuple.__new__
#: The clock of every send timestamp, bound once (read per published message).
_time_ns = time.time_ns
#: The history's clock (its ages): the loop's, time.monotonic.
_monotonic = time.monotonic
#: A keep buffer's index entry, and the end offset at the end of the last one.
_entry = ENTRY.pack
_last_end = struct.Struct("=Q").unpack_from
#: Seconds between the first message kept after a fold and the next fold.
FOLD_SECONDS = 0.05
#: Messages kept between two folds at most: the next one folds at once (a burst would
#: else grow the keep buffers by all it published in FOLD_SECONDS, and growing a
#: bytearray that far copies it over and over).
FOLD_COUNT = 1024

#: Whether some other node subscribes to a type (publisher-side matching).
RemoteInterest = Callable[[str], bool]
#: A type's group, or None while it is not known (raises ConfigError for a bad one).
GroupOf = Callable[[str], str | None]
#: Makes the compiled lane of a route: (name, type, packer, largest payload, the type's
#: keep buffer in the history or None) -> lane.
LaneMaker = Callable[[str, MessageType, Packer, int, "Keep | None"], "SendLane | None"]


class Route:
    """What publishing instances of one registered class needs, resolved once.

    Valid while nothing it was made from changes: the type's interest, its group,
    the keys, an empty hold queue; the :class:`Publisher` drops every route when one
    of those changes.

    Attributes:
        name: the type name.
        mtype: the registered type.
        encode: its generated encoder (``mtype.encode``), bound once.
        fingerprint: its schema fingerprint.
        packer: its packer (numbering and batching on the send side).
        max_payload: the largest payload that fits in a datagram alone.
        sends: whether its messages are sent (some other node wants the type); a
            route that does not send only checks, numbers, keeps and delivers.
        lane: the compiled lane (``ganglion._speedups.SendLane``) of a route that
            sends, or None (not built, no plan for the type, or not sent).
        kept: the type's keep buffer in the history (each message published is
            appended), or None when its history is off.
    """

    __slots__ = ("encode", "fingerprint", "kept", "lane", "max_payload", "mtype", "name",
                 "packer", "sends")

    def __init__(self, mtype: MessageType, packer: Packer, *, sends: bool,
                 lane: SendLane | None = None, kept: Keep | None = None) -> None:
        self.name = mtype.name
        self.mtype = mtype
        self.encode: Callable[[Any], bytes] = mtype.encode
        self.fingerprint = mtype.fingerprint
        self.packer = packer
        self.max_payload = max_payload(packer)
        self.sends = sends
        self.lane = lane
        self.kept = kept

    def __repr__(self) -> str:
        return (f"Route({self.name!r}, sends={self.sends}, max_payload={self.max_payload}, "
                f"lane={'yes' if self.lane is not None else 'no'}, "
                f"kept={'yes' if self.kept is not None else 'no'})")


class Held(NamedTuple):
    """A message waiting for its type's group, numbered and encoded at publish."""

    seq: int
    payload: bytes
    ts_ns: int
    fingerprint: bytes


class HoldQueue:
    """Messages per type waiting for the type's group, at most ``limit`` each.

    Numbers are given at publish time, so local subscribers and the network agree on
    them; a message dropped from a full queue (the oldest first) keeps its number,
    and receivers see the drop as a gap.
    """

    def __init__(self, limit: int = DEFAULT_PENDING_LIMIT) -> None:
        self.limit = limit
        #: Messages dropped from a full queue, in all.
        self.dropped = 0
        self._queues: dict[str, collections.deque[Held]] = {}

    def hold(self, name: str, held: Held) -> None:
        """Queue ``held`` behind the type's other waiting messages."""
        queue = self._queues.setdefault(name, collections.deque())
        if len(queue) >= self.limit:
            queue.popleft()
            self.dropped += 1
        queue.append(held)

    def waiting(self, name: str) -> bool:
        """Whether messages of ``name`` wait (then new ones wait behind them)."""
        return bool(self._queues.get(name))

    def take(self, name: str) -> collections.deque[Held]:
        """Remove and return the type's waiting messages, oldest first (maybe none)."""
        return self._queues.pop(name, None) or collections.deque()

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())


def max_payload(packer: Packer) -> int:
    """The largest payload that fits in one of ``packer``'s datagrams alone."""
    size = packer.limit
    while size > 0 and not packer.fits(size):
        size -= 1
    return size


def classify(msg: object, *, replay: bool) -> tuple[str, bytes, bytes | None, object,
                                                    MessageType | None]:
    """Step 1: a message's (name, fingerprint, payload or None, what local subscribers
    get, registered type or None).

    An instance of a registered class is encoded later, only if it is sent or held;
    a Record is encoded now (its fields are checked against its registered class, if
    any, so that what all receivers would drop is refused here).

    Raises:
        TypeRegistrationError: the message's class is not registered.
        TypeNameError: a Record's type name is not valid.
        EncodeError: a Record does not fit its registered class.
    """
    if not isinstance(msg, Record):
        mtype = type_of(msg)
        return mtype.name, mtype.fingerprint, None, msg, mtype
    name = validate_type_name(msg.type_name)
    known = lookup(name)
    if isinstance(msg, ReplayedRecord) and replay:
        # Sent under the fingerprint it was logged with (its fields are that version's),
        # its origin after the fields' map (docs/protocol.md, section 4.4).
        fingerprint = msg.fingerprint if msg.fingerprint is not None else bytes(8)
        body = encode_payload(Record(name, msg.fields))
        local = msg if known is None else _as_class(name, body, fingerprint)
        return name, fingerprint, body + encode_origin(msg.origin), local, None
    fingerprint = known.fingerprint if known is not None else bytes(8)
    payload = encode_payload(msg)
    local = msg if known is None else _as_class(name, payload, fingerprint)
    return name, fingerprint, payload, local, None


def _as_class(name: str, payload: bytes, fingerprint: bytes) -> object:
    """A Record's payload as its registered class, what receivers with the class get.

    Sent under the class's fingerprint, receivers with the class decode it strictly:
    refuse here what they would all drop.
    """
    try:
        return decode_payload(name, payload, fingerprint)
    except DecodeError as exc:
        raise EncodeError(f"Record does not fit its registered class: {exc}") from None


def _check_size(msg: object, mtype: MessageType, packer: Packer) -> None:
    """Refuse a message that could never fit, without encoding it if its bound fits."""
    try:
        bound = mtype.size_bound(msg)
    except Exception:
        bound = len(encode_message(msg, mtype))  # raises EncodeError naming the field
    if packer.fits(bound):
        return
    packer.check_fits(len(encode_message(msg, mtype)))


class Publisher:
    """Numbering, interest, routes, the hold queue and last values of one endpoint.

    Args:
        node_id: the endpoint's node id (a local message's sender).
        boot: its boot counter.
        replay: whether it replays a log (every message is marked replayed).
        subs: the endpoint's local subscribers per type name (shared, read only).
        group_of: a type's group, or None while unknown (step 2).
        remote_interest: whether some other node wants a type; None: every type is sent.
        pending_limit: messages per type held while its group is unknown.
        last_value_keys: latest messages kept per keyed type.
        history: where every published message of a type with history on is kept
            (see *History* above); None keeps nothing (a replaying endpoint never
            does: its messages carry their origin, a repair would lose it).

    Attributes:
        next_seq: the next sequence number per type name (shared with the compiled
            lanes, which read and the publisher then advances).
        out: the send side while the endpoint is started, else None.
        make_lane: makes a route's compiled lane (set by the endpoint at start).
        clock_synced: whether local messages are flagged as from a synchronised clock.
        last: the latest message per (type, key), what late joiners are answered with.
        held: messages waiting for their type's group.
        history: the history messages are kept in, or None.
        fold_later: schedules :meth:`fold` to run :data:`FOLD_SECONDS` later (the
            endpoint gives its loop's ``call_later``); None leaves the folding to the
            history's questions (sans-IO use, tests).
    """

    def __init__(self, *, node_id: bytes, boot: int, replay: bool,
                 subs: dict[str, list[Subscription]], group_of: GroupOf,
                 remote_interest: RemoteInterest | None = None,
                 pending_limit: int = DEFAULT_PENDING_LIMIT,
                 last_value_keys: int = DEFAULT_MAX_KEYS,
                 history: History | None = None) -> None:
        self.node_id = node_id
        self.boot = boot
        self.replay = replay
        self.next_seq: collections.defaultdict[str, int] = collections.defaultdict(int)
        self.out: Outgoing | None = None
        self.make_lane: LaneMaker | None = None
        self.clock_synced = True
        self.last = LastValues(max_keys=last_value_keys)
        # the publish paths store an unkeyed type's last value themselves (the common
        # case, one dict store); a keyed or new type goes through keep()
        self._last_plain = self.last.plain
        self._last_keyed = self.last.keyed
        self._keep_last = self.last.keep
        self.held = HoldQueue(pending_limit)
        self._subs = subs
        self._group_of = group_of
        self._remote_interest = remote_interest
        self._interest: dict[str, bool] = {}
        self._routes: dict[type, Route] = {}
        self.history = None if replay else history
        self.fold_later: Callable[[float, Callable[[], object]], object] | None = None
        # Messages still allowed before a fold; 0: none kept since the last fold (no
        # timer set). One integer, so the publish path asks one question per message.
        self._fold_left = 0

    # -- publishing ------------------------------------------------------------------

    def publish(self, msg: object) -> str:
        """Number ``msg``, hand it to the send side or hold it, keep it, deliver it.

        Returns:
            The message's type name.

        Raises:
            As :meth:`Endpoint.publish <ganglion.runtime.endpoint.Endpoint.publish>`.
        """
        route = self._routes.get(type(msg))
        if route is None:
            return self._publish_new(msg)
        name = route.name
        next_seq = self.next_seq
        if route.sends:
            # Steps 3-4 in the compiled lane when it takes the message (else None).
            lane = route.lane
            done = lane.publish(msg) if lane is not None else None
            out = self.out
            assert out is not None  # routes exist only while started
            if done is not None:
                payload, seq, now_ns, sent, full = done
                next_seq[name] = seq + 1
                out.lane_done(route.packer, sent, full)
                # The lane appended it to the keep buffer itself; the fold is ours.
                if route.kept is not None:
                    left = self._fold_left
                    if left > 1:
                        self._fold_left = left - 1
                    else:
                        self._kept_one(left)
            else:
                try:
                    payload = route.encode(msg)
                except Exception:
                    payload = b""
                if not 0 < len(payload) <= route.max_payload:
                    return self._publish_new(msg)  # which raises the readable error
                seq = next_seq[name]
                next_seq[name] = seq + 1
                now_ns = _time_ns()
                out.add(route.packer, payload, now_ns, seq)
                if route.kept is not None:
                    self._keep(route.kept, seq, now_ns, payload)
        elif route.kept is not None:
            # Not sent, but kept in the history: encoded all the same.
            try:
                payload = route.encode(msg)
            except Exception:
                payload = b""
            if not 0 < len(payload) <= route.max_payload:
                return self._publish_new(msg)  # which raises the readable error
            seq = next_seq[name]
            next_seq[name] = seq + 1
            now_ns = _time_ns()
            self._keep(route.kept, seq, now_ns, payload)
        else:
            try:
                bound = route.mtype.size_bound(msg)
            except Exception:
                bound = route.max_payload + 1
            if bound > route.max_payload:
                return self._publish_new(msg)  # which measures it exactly, or raises
            payload = None
            seq = next_seq[name]
            next_seq[name] = seq + 1
            now_ns = _time_ns()
        # Step 5: an unkeyed type's last value is one dict store (the common case).
        if self._last_keyed.get(name, True):
            self._keep_last(name, msg, payload, route.fingerprint, seq, now_ns)
        else:
            self._last_plain[name] = (msg, payload, route.fingerprint, seq, now_ns)
        subs = self._subs.get(name)
        if subs:
            self._deliver(subs, msg, name, seq, now_ns, route.fingerprint)
        return name

    def _publish_new(self, msg: object) -> str:
        """:meth:`publish` without a route: every step looked up, and a route made."""
        out = self.out
        if out is None:
            raise LocalError("the endpoint is not started; use `async with Endpoint(...)`")
        name, fingerprint, payload, local, mtype = classify(msg, replay=self.replay)
        interest = self.wants(name)
        packer = out.packer(name, fingerprint)
        group = self._group_of(name)  # resolved early: a bad group is the publisher's error
        # While the group is being agreed, messages wait whatever the interest: a
        # subscriber that appears meanwhile still gets a new type's first readings.
        hold = group is None or self.held.waiting(name)
        kept = self._keep_list(name)
        if interest or hold or payload is not None or kept is not None:
            if payload is None:
                assert mtype is not None  # only a class instance is encoded late
                payload = encode_message(msg, mtype)
            packer.check_fits(len(payload))
        else:
            assert mtype is not None  # a Record has its payload
            _check_size(msg, mtype, packer)
        seq, now_ns = self._hand_over(out, packer, name, fingerprint, payload, local,
                                      interest=interest, hold=hold)
        if kept is not None:
            assert payload is not None  # encoded above: its history is on
            self._keep(kept, seq, now_ns, payload)
        if not hold and mtype is not None and type(msg) is mtype.cls \
                and type(msg) not in self._routes:
            self._routes[type(msg)] = self._route(mtype, packer, interest)
        subs = self._subs.get(name)
        if subs:
            self._deliver(subs, local, name, seq, now_ns, fingerprint)
        return name

    def publish_payload(self, name: str, payload: bytes, *,
                        exclude: Subscription | None = None) -> bool:
        """:meth:`_publish_new` for a payload already encoded, of a type not registered
        here (the plugin bus's bytes-in publish): sent as it is, under 8 zero bytes of
        fingerprint, decoded only for local subscribers other than ``exclude``.

        Returns:
            False, having done nothing, when the type is registered here.

        Raises:
            As :meth:`Endpoint.publish_payload
            <ganglion.runtime.endpoint.Endpoint.publish_payload>`.
        """
        out = self.out
        if out is None:
            raise LocalError("the endpoint is not started; use `async with Endpoint(...)`")
        if lookup(name) is not None:
            return False
        fingerprint = bytes(8)
        interest = self.wants(name)
        packer = out.packer(name, fingerprint)
        hold = self._group_of(name) is None or self.held.waiting(name)
        packer.check_fits(len(payload))
        subs = [sub for sub in self._subs.get(name, ()) if sub is not exclude]
        local = decode_payload(name, payload) if subs else None
        seq, now_ns = self._hand_over(out, packer, name, fingerprint, payload, local,
                                      interest=interest, hold=hold)
        kept = self._keep_list(name)
        if kept is not None:
            self._keep(kept, seq, now_ns, payload)
        if subs:
            self._deliver(subs, local, name, seq, now_ns, fingerprint)
        return True

    def _hand_over(self, out: Outgoing, packer: Packer, name: str, fingerprint: bytes,
                   payload: bytes | None, local: object, *, interest: bool,
                   hold: bool) -> tuple[int, int]:
        """Steps 3-5 but delivery, without a route: number the message, then hold it,
        hand it to the send side or neither, and keep it. Returns (seq, timestamp)."""
        seq = self.next_seq[name]
        self.next_seq[name] = seq + 1
        now_ns = _time_ns()
        if hold:
            # Queued before local delivery: a subscriber that publishes this type
            # again from its callback gets the next number, and it is sent after this.
            assert payload is not None
            self.held.hold(name, Held(seq, payload, now_ns, fingerprint))
        else:
            if interest:
                assert payload is not None
                out.add(packer, payload, now_ns, seq)
            self._keep_last(name, local, payload, fingerprint, seq, now_ns)
        return seq, now_ns

    def _route(self, mtype: MessageType, packer: Packer, sends: bool) -> Route:
        route = Route(mtype, packer, sends=sends, kept=self._keep_list(mtype.name))
        if sends and self.make_lane is not None:
            route.lane = self.make_lane(mtype.name, mtype, packer, route.max_payload,
                                        route.kept)
        return route

    # -- history -----------------------------------------------------------------------

    def _keep_list(self, name: str) -> Keep | None:
        """The type's keep buffer in the history, or None (no history, or off for it)."""
        history = self.history
        return None if history is None else history.keep(name)

    def _keep(self, kept: Keep, seq: int, now_ns: int, payload: bytes) -> None:
        """Append one published message to its type's keep buffer (a fold follows soon).

        The compiled lane (``SendLane``, given the same buffer) appends the messages it
        publishes itself, the same way (:func:`ganglion.repair.history.keep_append`).
        """
        # keep_append, inlined (one frame less on the Python path of every kept message)
        index, payloads = kept
        end = _last_end(index, len(index) - 8)[0] if index else 0
        payloads.append(payload)
        index += _entry(seq, now_ns, end + len(payload))
        left = self._fold_left
        if left > 1:
            self._fold_left = left - 1
        else:
            self._kept_one(left)

    def _kept_one(self, left: int) -> None:
        """A message was kept and ``left`` (0 or 1) more were allowed before a fold: the
        first since a fold sets the timer, the last allowed folds at once."""
        if left:
            self.fold()
            return
        fold_later = self.fold_later
        if fold_later is None:
            return  # folded when the history is next asked (sans-IO use)
        self._fold_left = FOLD_COUNT
        fold_later(FOLD_SECONDS, self.fold)

    def fold(self) -> None:
        """Take what was appended to the keep buffers into the history (FOLD_SECONDS after
        the first append since the last fold, or at the FOLD_COUNT-th)."""
        self._fold_left = 0
        if self.history is not None:
            self.history.fold(_monotonic())

    def _deliver(self, subs: list[Subscription], msg: object, name: str, seq: int,
                 now_ns: int, fingerprint: bytes) -> None:
        """Hand a message published here to the local subscribers of its type."""
        # Every field of MessageInfo, in order (tests/runtime/test_publishing.py
        # checks it against the keyword-built one).
        info = _new_info(MessageInfo, (name, self.node_id, seq, now_ns, now_ns, self.boot,
                                       True, None, self.clock_synced, False, self.replay,
                                       fingerprint, False))
        for sub in tuple(subs):
            sub.deliver(msg, info)

    def datagram_for(self, msg: object) -> bytes:
        """``msg`` alone in a datagram, numbered in its type's stream, not sent.

        Raises:
            As :meth:`Endpoint.datagram_for <ganglion.runtime.endpoint.Endpoint.datagram_for>`.
        """
        out = self.out
        if out is None:
            raise LocalError("the endpoint is not started; use `async with Endpoint(...)`")
        mtype = type_of(msg)
        name = mtype.name
        payload = encode_message(msg, mtype)
        packer = out.packer(name, mtype.fingerprint)
        packer.check_fits(len(payload))
        seq = self.next_seq[name]
        self.next_seq[name] = seq + 1
        if packer.next_seq != seq or packer.count:
            out.skip_to(packer, seq)  # what waits leaves first, so numbers stay in order
        self._routes.pop(type(msg), None)  # a compiled lane must re-read the numbering
        now_ns = _time_ns()
        kept = self._keep_list(name)
        if kept is not None:
            self._keep(kept, seq, now_ns, payload)
        return packer.build_one(payload, now_ns)

    # -- interest, routes and the hold queue -----------------------------------------

    def wants(self, name: str) -> bool:
        """Whether some other node wants ``name`` (asked once, then as set)."""
        interest = self._interest.get(name)
        if interest is None:
            interest = self._interest[name] = (self._remote_interest is None
                                               or self._remote_interest(name))
        return interest

    def set_interest(self, name: str, interested: bool) -> None:
        """Record whether some other node wants ``name`` now (ignored without
        ``remote_interest``: then every type is sent)."""
        if self._remote_interest is not None:
            self._interest[name] = interested
            self._routes.clear()

    def interest(self) -> dict[str, bool]:
        """The types decided about, and whether each is sent."""
        return dict(self._interest)

    def routes(self) -> dict[type, Route]:
        """The routes held now, per class (a copy)."""
        return dict(self._routes)

    def forget_routes(self) -> None:
        """Drop every route (something they were made from changed)."""
        self._routes.clear()

    def release(self, name: str) -> None:
        """Send the messages that waited for ``name``'s group, with their numbers.

        Called by the endpoint once the group is known; if nobody else wants them by
        now, the newest (of each key) becomes the last value and none is sent.
        """
        out = self.out
        if out is None or not self.held.waiting(name):
            return
        queue = self.held.take(name)
        self._routes.clear()
        interested = self._interest.get(name, True)
        for seq, payload, ts_ns, fingerprint in queue:
            if interested:
                out.add(out.packer(name, fingerprint), payload, ts_ns, seq)
            self._keep_last(name, None, payload, fingerprint, seq, ts_ns, newer_only=True)

    # -- what was published ----------------------------------------------------------

    def published(self) -> dict[str, int]:
        """Messages published per type name (sent or not)."""
        # Every publish takes exactly one sequence number, so the counters are the same.
        return {name: count for name, count in self.next_seq.items() if count}

    def last_values(self, name: str) -> list[tuple[bytes, bytes, int, int]]:
        """The latest message of a type per key: [(payload, fingerprint, seq, sent_ns)],
        oldest first; an object not encoded yet is encoded now (see
        :meth:`Endpoint.last_values <ganglion.runtime.endpoint.Endpoint.last_values>`)."""
        if self.replay:
            return []
        values = []
        for key, entry in self.last.entries(name):
            if entry.payload is None:
                try:
                    entry.payload = encode_payload(entry.msg)
                except EncodeError:
                    _log.warning("the last %s published cannot be encoded any more (mutated "
                                 "after publishing?); not answering for it", name)
                    continue
                self.last.store_payload(name, key, entry.seq, entry.payload)
            values.append((entry.payload, entry.fingerprint, entry.seq, entry.sent_ns))
        return values
