"""The receive side of an endpoint: datagram to typed messages for local subscribers.

Theory of operation: a datagram is decoded once (magic, version, size, MAC), its
messages go through the per-(sender, type) sequence tracker (gaps, duplicates,
reordering, replays), are decoded into their class (or a Record) and handed to
every local subscriber of the type. Nothing a peer sends raises out of here: bad
datagrams are counted and dropped, and the first few of each kind are logged.

Most datagrams belong to a *stream* already seen: the same sender, boot, flags,
fingerprint and type name, which are exactly the datagram's first bytes up to the
end of the name. So the first datagram of a stream goes through the full decoder
(:func:`~ganglion.wire.decode_fields`) and leaves a :class:`_Stream` behind, keyed
by those bytes; it holds everything that is the same for every datagram of the
stream: the decoded header fields, the sequence tracker, the payload decoders, the
flags read as booleans. A later datagram is matched with one slice and one dict
lookup, its MAC checked when the flags say so, and only its batch is decoded
(:func:`~ganglion.wire.decode_batch`), which accepts and refuses exactly what the
full decoder would. A batch of one message at the base time (every message at
light traffic, and every large one) is read with a single ``struct`` unpack when it
is exactly well formed, and handed on by :meth:`Incoming._deliver_one`; any other
shape takes ``decode_batch``. Anything the short path refuses is decoded again by
the full one, which counts the precise error. The cache is bounded and forgotten whole
when full, and whenever the sequence table evicts a tracker (a stream must never
update a tracker the table no longer holds).

A stream's decoders are made again when the type is (re)registered here
meanwhile: the registered type is looked up per datagram and compared by
identity. Datagrams this endpoint sent itself come back through multicast loop
and are ignored: local subscribers already have them. With a network key, a known
stream's datagram is checked before anything past its header is read: its MAC
against each accepted key (at most two, during a rotation), or, for an encrypted
stream (flag bit 3), its tag by decrypting it (:class:`ganglion.wire._aead.Opener`,
one cipher per verified sender, session and type, cached and bounded); the clear
datagram that comes out then takes the same path as an unsigned one
(:meth:`Incoming._on_known`), and one that does not verify goes to the full decoder
(:meth:`Incoming._on_new`), which counts it. A replayed stream's datagrams (flag bit
2) are never given to the compiled lane: each of its messages carries its origin
after its fields, which :meth:`Incoming._deliver_replayed` splits off and hands to
subscribers as the message's provenance. A datagram that simply
continues its stream is accounted in one step
(:meth:`~ganglion.sequence.SequenceTracker.observe_run`), and payloads under the
local fingerprint go through the class's generated decoder
(:mod:`ganglion.types._decodegen`), which hands anything unusual to the full one.

Where ``ganglion._speedups`` is built, the receiver's compiled drain reads the
common case itself through :meth:`Incoming.lane`: a datagram of a known stream
(``_lanes``, kept by :meth:`Incoming._set_lane`), a lone message or a batch, whose
payloads the type's *plan* reads (the generated decoder's common case) and that
simply continues its stream; coalesced runs too, datagram by datagram. A keyed
stream's entry holds its *opener* (:meth:`Incoming._open_signed`, or the key ring's
:meth:`Opener.open <ganglion.wire._aead.Opener.open>`), which the lane calls once per
datagram, before it reads anything past the header, exactly where
:meth:`Incoming.on_datagram` verifies: the clear datagram it returns is read as an
unsigned one; None (a bad MAC or tag, an unknown key id) sends the datagram to
:meth:`Incoming._on_new`, and a clear batch the lane does not read itself goes to
:meth:`Incoming._on_known`, so nothing is verified twice and nothing is accepted that
the Python path refuses. The crypto is per datagram, the rest per message as without
a key, so a keyed stream costs the cipher and little else. It also
does the steps of :meth:`SequenceTracker.observe_run
<ganglion.sequence.SequenceTracker.observe_run>`, of a plain dataclass's generated
``__init__`` (:func:`ganglion.types._decodegen.construction`) and of
:meth:`Subscription.deliver <ganglion.runtime.subscription.Subscription.deliver>` for a
callback, so no Python frame runs before the subscriber's callback; anything else
(a hand-written ``__init__``, a queue, another class) is called as usual. Every other
case goes to :meth:`Incoming._deliver` or :meth:`Incoming.on_datagram` on the same
bytes, so both paths deliver and count the same (``tests/runtime/test_speedups.py``,
``test_speedups_delivery.py``). On a wake-up with cold CPU caches that saves 20-30 us
of Python before the callback.

A coalesced run of datagrams (UDP_GRO: one sender's segmented send, read whole) is
handled by :meth:`Incoming.on_run`: consecutive lone messages of one known unsigned
stream, numbered one after the other, become one batch for :meth:`Incoming._deliver`
(one sequence step, one receive time, payloads sliced straight out of the run), which
measured 1.9-2.0 us per 1 KiB datagram against 2.3 us one by one. Everything else in
the run goes through :meth:`Incoming.on_datagram`, in order, so a run is delivered
and counted exactly as its datagrams would be alone (tests compare the two).
"""

from __future__ import annotations

import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from ganglion.errors import AuthError, DecodeError
from ganglion.runtime._accel import speedups
from ganglion.runtime.subscription import MessageInfo, Subscription
from ganglion.sequence import SequenceTable, SequenceTracker, Verdict
from ganglion.types import MessageType, decode_payload, default_registry, payload_decoder
from ganglion.types._decodegen import FALLBACK as _FALLBACK
from ganglion.types._decodegen import Plan
from ganglion.wire import (
    FLAG_AEAD,
    FLAG_CLOCK_UNSYNCED,
    FLAG_MAC,
    FLAG_REPLAYED,
    HEADER_SIZE,
    MAC_SIZE,
    KeyRing,
    as_keyring,
    decode_batch,
    decode_fields,
    mac_ok,
    split_origin,
)

_log = logging.getLogger(__name__)

#: The sequence verdicts whose message is dropped, compared by identity (an Enum's
#: ``__hash__`` is Python code, a set lookup costs a call).
_DUPLICATE, _STALE = Verdict.DUPLICATE, Verdict.STALE
#: The default registry's lookup (asked per datagram): its dict's own ``get``, which
#: runs no Python frame. The registry never replaces that dict.
_lookup = default_registry._by_name.get
#: Builds a MessageInfo from a full tuple of its fields, skipping the keyword parsing.
_new_info = tuple.__new__
#: Where the type name's length byte is, and where the name starts (wire format v1).
_NAME_LEN_AT = 24
_NAME_AT = 25
#: A batch header of one message, then that message's time delta and the first byte
#: of its length (wire format v1): first seq, base ts, count, delta, length.
_LONE = struct.Struct(">QQHBB").unpack_from
_LONE_SIZE = 20


def _read_lone(data: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """A batch at ``pos`` that is one message at the base time with a one- or two-byte
    length, exactly well formed up to ``end``: its (seq, timestamp, payload start).

    None for any other batch (``decode_batch`` reads those, and says what is wrong).
    """
    if end - pos <= _LONE_SIZE:
        return None
    seq, ts, count, delta, size = _LONE(data, pos)
    start = pos + _LONE_SIZE
    if size >= 0x80:
        high = data[start]
        size = size & 0x7F | high << 7 if 0 < high < 0x80 else 0
        start += 1
    if count == 1 and not delta and size and start + size == end:
        return seq, ts, start
    return None
#: Streams remembered before the cache starts over.
STREAMS_CAP = 1024

#: Counts a dropped datagram: (counter name, detail, source address).
CountBad = Callable[[str, str, tuple[str, int]], None]

#: (sender node id, type name, boot): one stream of sequence numbers, as the repair
#: requester names it (``ganglion.repair.StreamKey``).
StreamKey = tuple[bytes, str, int]

#: The (sender, boot, seq) of messages a history answer delivered from below their
#: stream's baseline, remembered (oldest forgotten first) so each is delivered once.
HISTORY_SEEN_CAP = 65536


class GapHooks(Protocol):
    """What the receive path tells the repair requester (``ganglion.repair.Requester``).

    Called on the loop, from the sequence tracking: only where a message does not
    simply continue its stream (the compiled lane hands every such datagram to the
    Python path, so it never needs to call these itself).
    """

    def on_gap(self, key: StreamKey, first: int, last: int, now: float) -> None:
        """Numbers ``first .. last`` of the stream were skipped (counted as lost)."""

    def on_filled(self, key: StreamKey, seq: int, now: float) -> None:
        """A missing number arrived after all (late, or repaired)."""

    def on_restart(self, sender: bytes, type_name: str, boot: int, now: float) -> None:
        """The sender started a new boot: the older boots' gaps can never be filled."""


def _all_raw(subs: list[Any] | None) -> bool:
    """Whether every local subscriber of a type takes payload bytes (``Subscription.raw``).

    Then a message of a type with no class registered here (no compiled lane, no
    schema to check) is handed over undecoded; the subscriber checks what it needs
    (the plugin bus checks the CBOR map before passing it to plugins).
    """
    return subs is not None and bool(subs) and all(sub.raw for sub in subs)


class _Stream:
    """What every datagram of one (sender, boot, flags, fingerprint, type) shares."""

    __slots__ = ("boot", "clock_synced", "decode", "fast", "fingerprint", "key", "known",
                 "mismatch", "name", "node_id", "own", "plan", "pos", "replayed", "sealed",
                 "signed", "tracker", "type_name")

    def __init__(self, node_id: bytes, type_name: str, fingerprint: bytes, boot: int,
                 flags: int, pos: int, own: bool) -> None:
        self.node_id = node_id
        self.type_name = type_name
        self.fingerprint = fingerprint
        self.boot = boot
        self.pos = pos  # where the batch header starts
        # Authenticated: a MAC (signed only) or a tag (sealed too: encrypted).
        self.signed = bool(flags & (FLAG_MAC | FLAG_AEAD))
        self.sealed = bool(flags & FLAG_AEAD)
        self.name = type_name.encode("ascii")
        self.clock_synced = not flags & FLAG_CLOCK_UNSYNCED
        self.replayed = bool(flags & FLAG_REPLAYED)
        self.own = own
        self.key: bytes | None = None  # its header bytes, the key of Incoming's dicts
        self.tracker: SequenceTracker | None = None  # made on the first delivery
        # Payload decoders, made for ``known`` (the type registered here then).
        self.known: MessageType | None = None
        self.decode: Callable[[bytes], object] | None = None
        self.fast: Callable[[bytes], Any] | None = None
        # What the compiled path reads of ``fast``'s common case (ganglion._speedups).
        self.plan: Plan | None = None
        self.mismatch = False


class Incoming:
    """Turns received datagrams into deliveries to an endpoint's subscribers.

    Args:
        node_id: the endpoint's own node id (its looped-back datagrams are ignored).
        key: the network key or key ring (every key accepted), or None.
        subs: the endpoint's subscribers per type name (read, never changed here).
        sequences: the endpoint's sequence table.
        count_bad: counts and logs a dropped datagram.
        gaps: told of every gap, late arrival and sender restart (the repair
            requester); None when repair is off.
        clock: the monotonic clock the requester runs on (the loop's time).
    """

    def __init__(self, *, node_id: bytes, key: bytes | KeyRing | None,
                 subs: dict[str, list[Subscription]], sequences: SequenceTable,
                 count_bad: CountBad, gaps: GapHooks | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._node_id = node_id
        self._key = as_keyring(key)
        self._macs: tuple[bytes, ...] = () if self._key is None else self._key.keys
        self._subs = subs
        self._sequences = sequences
        self._count_bad = count_bad
        self._streams: dict[bytes, _Stream] = {}
        # The streams the compiled lane delivers itself, by header bytes: a tuple of what
        # it reads (see _set_lane). Always a subset of _streams, cleared with it.
        self._lanes: dict[bytes, tuple[Any, ...]] = {}
        self._evicted = sequences.evicted
        #: Messages handed to subscribers (the endpoint's ``received``).
        self.received = 0
        #: The repair requester told of gaps (see :class:`GapHooks`), or None.
        self.gaps = gaps
        self._clock = clock
        # Below-baseline messages a history answer delivered: (sender, type, boot, seq).
        self._history_seen: OrderedDict[tuple[bytes, str, int, int], None] = OrderedDict()
        #: Repairs and history answers: delivered, and dropped as already seen (or too
        #: old to tell) or unwanted (no subscriber, no such stream, undecodable).
        self.repairs_delivered = 0
        self.repairs_dropped = 0
        self.history_delivered = 0
        self.history_dropped = 0

    def set_clock(self, clock: Callable[[], float]) -> None:
        """Use ``clock`` (the loop's time) for what the requester is told from now on."""
        self._clock = clock

    def set_keys(self, key: bytes | KeyRing | None) -> None:
        """Accept datagrams under another key ring from now on (a key rotation).

        Streams remembered under the old keys are forgotten, so each is verified
        afresh; trackers are kept (the senders' sequences go on).
        """
        self._key = as_keyring(key)
        self._macs = () if self._key is None else self._key.keys
        self._streams.clear()
        self._lanes.clear()

    @property
    def aead_evictions(self) -> int:
        """Per-sender ciphers evicted from the decryption cache so far."""
        return 0 if self._key is None else self._key.evictions

    def _mac_ok(self, data: bytes, end: int) -> bool:
        """The MAC before ``end`` verifies under one of the accepted keys."""
        macs = self._macs
        if len(macs) == 1:
            return mac_ok(macs[0], data[:end], data[end:])
        return any(mac_ok(k, data[:end], data[end:]) for k in macs)

    def on_datagram(self, data: bytes, source: tuple[str, int], now: float) -> None:
        """Handle one datagram (the receiver's callback; never raises for its content)."""
        raw = data  # as received: what the full decoder reads when the short path refuses
        try:
            stream = self._streams.get(data[:_NAME_AT + data[_NAME_LEN_AT]])
        except (IndexError, TypeError):  # too short for a header, or not bytes
            stream = None
        if stream is not None:
            end = len(data)
            if stream.sealed:
                if stream.own:
                    return  # our own, looped back: not worth decrypting
                opened = None if self._key is None else \
                    self._key.opener().open(data, stream.pos, stream.node_id, stream.name)
                if opened is None:
                    stream = None  # the full decoder says why, and counts it
                else:
                    data = opened
                    end = len(data)
            elif stream.signed:
                end -= MAC_SIZE
                if end < HEADER_SIZE or not self._mac_ok(data, end):
                    stream = None
            if stream is not None:
                self._on_known(stream, data, end, raw, source)
                return
        self._on_new(raw, source)

    def _on_known(self, stream: _Stream, data: bytes, end: int, raw: bytes,
                  source: tuple[str, int]) -> None:
        """:meth:`on_datagram` for a datagram of a known stream, verified (and decrypted):
        its messages are ``data[stream.pos:end]``; ``raw`` is the datagram as received,
        for the full decoder when the batch is refused. The compiled lane calls it too,
        for a keyed datagram it opened but whose batch it does not read itself."""
        # Every light-traffic and every large message: read in one unpack.
        lone = _read_lone(data, stream.pos, end)
        if lone is not None:
            if not stream.own and self._subs.get(stream.type_name):
                seq, ts, start = lone
                self._deliver_one(stream, seq, ts, data[start:end], source)
            return
        try:
            first_seq, timestamps, payloads = decode_batch(data, stream.pos, end)
        except DecodeError:
            self._on_new(raw, source)
            return
        if stream.own:
            return  # our own datagram looped back; local subscribers already have it
        if self._subs.get(stream.type_name):
            self._deliver(stream, first_seq, timestamps, payloads, source)

    def _on_new(self, raw: bytes, source: tuple[str, int]) -> None:
        """:meth:`on_datagram` for a datagram no known stream takes as it is: the full
        decoder reads it (and counts why it is refused). The compiled lane calls it too,
        for a keyed datagram whose MAC or tag it found wrong."""
        found = self._decode_new(raw, source)
        if found is None:
            return
        stream, first_seq, timestamps, payloads = found
        if stream.own:
            return  # our own datagram looped back; local subscribers already have it
        if self._subs.get(stream.type_name):
            self._deliver(stream, first_seq, timestamps, payloads, source)

    def _open_signed(self, data: bytes, pos: int, node_id: bytes, name: bytes) -> bytes | None:
        """A signed datagram of a known stream without its MAC, or None when the MAC does
        not verify under any accepted key: the compiled lane's opener for signed streams
        (``Opener.open``'s signature; only ``data`` is read)."""
        end = len(data) - MAC_SIZE
        if end < HEADER_SIZE or not self._mac_ok(data, end):
            return None
        return data[:end]

    def on_run(self, data: bytes, size: int, source: tuple[str, int], now: float) -> int:
        """Handle a coalesced run: datagrams of ``size`` bytes back to back, the last
        possibly shorter (one segmented send, read whole with UDP_GRO).

        The same deliveries and counts as :meth:`on_datagram` for each datagram in
        turn, with one shortcut: consecutive lone messages of one known unsigned
        stream, numbered one after the other, are handed on together as one batch
        (one sequence step, one receive time), their payloads sliced straight out of
        the run. Anything else goes through :meth:`on_datagram` alone, in order.

        Returns:
            How many datagrams the run held.
        """
        total = len(data)
        streams = self._streams
        count = 0
        # The batch being gathered: its stream, numbers and payloads.
        batch: _Stream | None = None
        first_seq = next_seq = 0
        timestamps: list[int] = []
        payloads: list[bytes] = []
        at = 0
        while at < total:
            end = min(at + size, total)
            count += 1
            try:
                stream = streams.get(data[at:at + _NAME_AT + data[at + _NAME_LEN_AT]])
            except IndexError:
                stream = None
            lone = None if stream is None or stream.signed or stream.own else \
                _read_lone(data, at + stream.pos, end)
            if lone is not None:
                seq, ts, start = lone
                if stream is not batch or seq != next_seq:
                    if batch is not None:
                        self._deliver_batch(batch, first_seq, timestamps, payloads, source)
                    batch, first_seq, timestamps, payloads = stream, seq, [], []
                timestamps.append(ts)
                payloads.append(data[start:end])
                next_seq = seq + 1
                at = end
                continue
            if batch is not None:
                self._deliver_batch(batch, first_seq, timestamps, payloads, source)
                batch = None
            self.on_datagram(data[at:end], source, now)
            at = end
        if batch is not None:
            self._deliver_batch(batch, first_seq, timestamps, payloads, source)
        return count

    def lane(self) -> object | None:
        """What the compiled receive path needs to deliver known streams' datagrams
        itself (a ``ganglion._speedups.Lane``); None when that path is not in use.

        The lane reads this object's lanes, subscribers and the registry as they
        are at each datagram, and calls back into :meth:`_deliver` and
        :meth:`_decode_slow` for every case but the common one. It does the steps of
        :meth:`SequenceTracker.observe_run` and of :meth:`Subscription.deliver` (with
        a callback) itself, for objects of exactly those classes.
        """
        if speedups is None:
            return None
        lane: object = speedups.Lane(self, self._lanes, self._subs,
                                     default_registry._by_name, MessageInfo, _FALLBACK,
                                     Subscription, SequenceTracker)
        return lane

    def sync_evictions(self) -> None:
        """Forget every stream if the sequence table evicted a tracker since the last look.

        Call after anything else made the table create trackers (it evicts the least
        recently used one when full), so no stream keeps updating an evicted tracker.
        """
        if self._sequences.evicted != self._evicted:
            self._evicted = self._sequences.evicted
            self._streams.clear()
            self._lanes.clear()

    # -- private ---------------------------------------------------------------------

    def _decode_new(self, data: bytes, source: tuple[str, int]
                    ) -> tuple[_Stream, int, list[int], list[bytes]] | None:
        """The full decoder; remembers the datagram's stream. None when it is dropped."""
        try:
            node_id, type_name, fingerprint, first_seq, timestamps, payloads, boot, flags = (
                decode_fields(data, self._key))
        except AuthError as exc:
            self._count_bad("bad_mac", str(exc), source)
            return None
        except DecodeError as exc:
            self._count_bad("decode_errors", str(exc), source)
            return None
        if type(data) is not bytes:
            # Not a receiver's datagram (a test, a replay): decoded, not remembered.
            return (_Stream(node_id, type_name, fingerprint, boot, flags, 0,
                            node_id == self._node_id), first_seq, timestamps, payloads)
        pos = _NAME_AT + data[_NAME_LEN_AT]
        stream = _Stream(node_id, type_name, fingerprint, boot, flags, pos,
                         node_id == self._node_id)
        if len(self._streams) >= STREAMS_CAP:
            self._streams.clear()
            self._lanes.clear()
        stream.key = key = data[:pos]
        self._streams[key] = stream
        self._lanes.pop(key, None)  # a stream it replaces
        return stream, first_seq, timestamps, payloads

    def _tracker(self, stream: _Stream) -> SequenceTracker:
        """The stream's tracker, from the table; forgets every stream if one was evicted."""
        tracker = self._sequences.tracker(stream.node_id, stream.type_name)
        self.sync_evictions()
        stream.tracker = tracker
        return tracker

    def _decoders(self, stream: _Stream, known: MessageType | None) -> None:
        """(Re)make the stream's payload decoders for the type registered here now."""
        fingerprint = stream.fingerprint
        stream.known = known
        stream.decode = payload_decoder(stream.type_name, fingerprint)
        stream.fast = None if known is None or known.fingerprint != fingerprint \
            else known.decode_fast
        stream.plan = None if stream.fast is None else known.plan  # type: ignore[union-attr]
        stream.mismatch = known is not None and known.fingerprint != fingerprint

    def _ready(self, stream: _Stream) -> SequenceTracker:
        """Bring the stream's decoders up to date with the registry; its tracker."""
        known = _lookup(stream.type_name)
        changed = stream.decode is None or known is not stream.known
        if changed:
            self._decoders(stream, known)
        tracker = stream.tracker
        if tracker is None:
            tracker = self._tracker(stream)
            changed = True
        if changed and speedups is not None:
            self._set_lane(stream)
        return tracker

    def _set_lane(self, stream: _Stream) -> None:
        """Give the stream to the compiled lane (``Lane``), or take it back: the lane
        delivers a stream's datagrams only while it is remembered here, not ours, with a
        tracker and a plan for the type registered now. A keyed stream's entry carries
        what opens its datagrams (:meth:`_open_signed`, or the key ring's
        :meth:`Opener.open <ganglion.wire._aead.Opener.open>`), which the lane calls once
        per datagram before it reads anything past the header."""
        key = stream.key
        if key is None:
            return
        opener: Callable[[bytes, int, bytes, bytes], bytes | None] | None = None
        if stream.sealed:
            opener = None if self._key is None else self._key.opener().open
        elif stream.signed:
            opener = self._open_signed
        if stream.plan is None or stream.tracker is None or stream.own or stream.replayed \
                or (stream.signed and opener is None) or self._streams.get(key) is not stream:
            self._lanes.pop(key, None)
        else:
            # The order the C code reads (E_STREAM .. E_OPEN in ganglion/_c/receive.c).
            self._lanes[key] = (stream, stream.pos, stream.type_name, stream.boot,
                                stream.node_id, stream.clock_synced, stream.replayed,
                                stream.fingerprint, stream.plan, stream.tracker, stream.known,
                                stream.name, opener)

    def _deliver_one(self, stream: _Stream, seq: int, ts: int, payload: bytes,
                     source: tuple[str, int]) -> None:
        """Sequence-check, decode and hand out a datagram's lone message."""
        if stream.replayed:
            self._deliver(stream, seq, [ts], [payload], source)
            return
        received_ns = time.time_ns()
        tracker = stream.tracker
        if tracker is None or stream.known is not _lookup(stream.type_name):
            tracker = self._ready(stream)
        boot = stream.boot
        if not tracker.observe_run(seq, 1, boot, ts):
            verdict = tracker.observe(seq, boot, ts) if self.gaps is None else \
                self._observe(stream, tracker, seq, ts)
            if verdict is _DUPLICATE or verdict is _STALE:
                return
        if stream.known is None and _all_raw(self._subs.get(stream.type_name)):
            self._hand_out(stream, payload, seq, ts, received_ns, source)  # see _all_raw
            return
        fast = stream.fast
        msg: Any = _FALLBACK if fast is None else fast(payload)
        if msg is _FALLBACK:
            msg = self._decode_slow(stream, tracker, payload, source)
            if msg is _FALLBACK:
                return
        self._hand_out(stream, msg, seq, ts, received_ns, source)

    def _deliver_batch(self, stream: _Stream, first_seq: int, timestamps: list[int],
                       payloads: list[bytes], source: tuple[str, int]) -> None:
        """:meth:`_deliver` of gathered lone messages, when the type still has subscribers."""
        if self._subs.get(stream.type_name):
            self._deliver(stream, first_seq, timestamps, payloads, source)

    def _deliver(self, stream: _Stream, first_seq: int, timestamps: list[int],
                 payloads: list[bytes], source: tuple[str, int]) -> None:
        """Sequence-check, decode and hand out the messages of one datagram."""
        received_ns = time.time_ns()
        tracker = self._ready(stream)
        if stream.replayed:
            self._deliver_replayed(stream, tracker, first_seq, timestamps, payloads,
                                   received_ns, source)
            return
        fast, boot, hand_out = stream.fast, stream.boot, self._hand_out
        raw = stream.known is None and _all_raw(self._subs.get(stream.type_name))
        # The common case: the datagram continues its stream, every message is new.
        count = len(timestamps)
        in_order = tracker.observe_run(first_seq, count, boot,
                                       timestamps[0] if count == 1 else max(timestamps))
        observe = tracker.observe if self.gaps is None else \
            lambda seq, boot, ts: self._observe(stream, tracker, seq, ts)
        seq = first_seq - 1
        for ts, payload in zip(timestamps, payloads, strict=True):
            seq += 1
            if not in_order:
                verdict = observe(seq, boot, ts)
                if verdict is _DUPLICATE or verdict is _STALE:
                    continue
            if raw:  # payloads wanted as they are: no decoding (see _all_raw)
                hand_out(stream, payload, seq, ts, received_ns, source)
                continue
            # The generated decoder directly (one call less per message); what it
            # does not read goes through the full decoder, which also raises.
            msg: Any = _FALLBACK if fast is None else fast(payload)
            if msg is _FALLBACK:
                msg = self._decode_slow(stream, tracker, payload, source)
                if msg is _FALLBACK:
                    continue
            hand_out(stream, msg, seq, ts, received_ns, source)

    def _deliver_replayed(self, stream: _Stream, tracker: SequenceTracker, first_seq: int,
                          timestamps: list[int], payloads: list[bytes], received_ns: int,
                          source: tuple[str, int]) -> None:
        """:meth:`_deliver` for a replayed stream (rare: never on the compiled lane).

        The replayer's own numbers go through its tracker, as any sender's; each
        message's origin (docs/protocol.md, section 4.4) is split off its
        payload and becomes what subscribers see: the original sender, boot, seq,
        time and last-value and clock flags, with ``replayed`` set. A message without
        one (an older replayer) is the replayer's own, as before.
        """
        boot = stream.boot
        in_order = tracker.observe_run(first_seq, len(timestamps), boot, max(timestamps))
        for i, (ts, payload) in enumerate(zip(timestamps, payloads, strict=True)):
            seq = first_seq + i
            if not in_order:
                verdict = tracker.observe(seq, boot, ts)
                if verdict is _DUPLICATE or verdict is _STALE:
                    continue
            body, origin = split_origin(payload)
            msg: Any = _FALLBACK if stream.fast is None else stream.fast(body)
            if msg is _FALLBACK:
                msg = self._decode_slow(stream, tracker, body, source)
                if msg is _FALLBACK:
                    continue
            if origin is None:
                self._hand_out(stream, msg, seq, ts, received_ns, source)
                continue
            info = _new_info(MessageInfo, (stream.type_name, origin.node_id, origin.seq,
                                           origin.sent_ns, received_ns, origin.boot, False,
                                           source, origin.clock_synced, origin.last_value,
                                           True, stream.fingerprint, False))
            self.received += 1
            for sub in tuple(self._subs.get(stream.type_name, ())):
                sub.deliver(msg, info)

    def _observe(self, stream: _Stream, tracker: SequenceTracker, seq: int,
                 ts: int) -> Verdict:
        """:meth:`SequenceTracker.observe` of a message that does not simply continue its
        stream, telling the repair requester (``gaps``) what it found: the numbers a
        jump skipped, a late arrival that filled one, a new boot."""
        gaps = self.gaps
        lost = tracker.lost
        verdict = tracker.observe(seq, stream.boot, ts)
        if gaps is None or stream.replayed:
            return verdict  # a replayer's own numbers are not repaired (its origin is)
        key = (stream.node_id, stream.type_name, stream.boot)
        if verdict is Verdict.LATE:
            gaps.on_filled(key, seq, self._clock())
        elif verdict is Verdict.NEW or verdict is Verdict.RESTART:
            if verdict is Verdict.RESTART:
                gaps.on_restart(stream.node_id, stream.type_name, stream.boot, self._clock())
            if tracker.lost > lost:
                gaps.on_gap(key, seq - (tracker.lost - lost), seq - 1, self._clock())
        return verdict

    def note_tail(self, sender: bytes, type_name: str, boot: int, last_seq: int) -> int:
        """A publisher announced ``last_seq`` as its last number of ``type_name`` in
        ``boot`` (a heartbeat's tail): the numbers above the highest seen are a gap,
        as if a later message had shown it (:meth:`SequenceTracker.extend`), and the
        repair requester is told of them.

        Only for a stream this endpoint subscribes to and has a baseline for, in that
        boot: a tail says nothing to a receiver that never listened.

        Returns:
            How many numbers became the gap (0: nothing to do).
        """
        if not self._subs.get(type_name):
            return 0
        tracker = self._sequences.peek_tracker(sender, type_name)
        if tracker is None or tracker.boot != boot:
            return 0
        highest = tracker.highest
        added = tracker.extend(last_seq)
        if added and self.gaps is not None and highest is not None:
            self.gaps.on_gap((sender, type_name, boot), highest + 1, last_seq, self._clock())
        return added

    def deliver_repair(self, type_name: str, fingerprint: bytes, *, sender: bytes, boot: int,
                       seq: int, sent_ns: int, payload: bytes, clock_synced: bool = True,
                       source: tuple[str, int] | None = None, history: bool = False) -> bool:
        """Hand one message a publisher sent again (a ``Repair``) to local subscribers.

        A repair of a gap (``history=False``) goes through the stream's sequence
        tracker like a datagram's message: a number still missing (LATE, or above the
        highest after a tail) is delivered and fills its gap; one already delivered
        (DUPLICATE) or older than the window or the baseline (STALE) is dropped, so
        every message reaches subscribers once. A repair of a stream this node has no
        tracker for, or of another boot, is dropped: nothing here asked for it.

        A history answer (``history=True``: the caller checked that it answers a
        HistoryRequest this node sent a moment ago) is delivered even from before the
        stream's baseline (what a late subscriber asked for), once per (sender, boot,
        seq): below the baseline a bounded record of what history delivered decides;
        at or above it the tracker does, as for a repair (and a stream not seen yet
        takes its baseline from the first answer).

        Delivered messages are marked ``MessageInfo.repaired``; delivery order is
        arrival order (an old message may come after newer ones: ``seq`` and
        ``sent_ns`` are the original ones).

        Returns:
            True if it was delivered.
        """
        subs = self._subs.get(type_name)
        tracker = self._sequences.peek_tracker(sender, type_name) if subs else None
        verdict: Verdict | None = None
        if not subs or sender == self._node_id:
            pass
        elif history and tracker is not None and tracker.below_baseline(seq, boot):
            record = self._history_seen
            seen = (sender, type_name, boot, seq)
            if seen not in record:
                record[seen] = None
                if len(record) > HISTORY_SEEN_CAP:
                    record.popitem(last=False)
                verdict = Verdict.LATE
        elif tracker is not None and tracker.boot == boot:
            verdict = self._judge_repair(sender, type_name, boot, tracker, seq, sent_ns)
        elif history and (tracker is None or tracker.boot is None
                          or (tracker.boot < boot)):
            # Not seen yet (or a newer boot than seen): the answer starts the stream, as
            # the first live message would have.
            tracker = self._sequences.tracker(sender, type_name)
            self.sync_evictions()
            verdict = self._judge_repair(sender, type_name, boot, tracker, seq, sent_ns)
        if verdict is None or not verdict.deliver:
            if history:
                self.history_dropped += 1
            else:
                self.repairs_dropped += 1
            return False
        try:
            msg = decode_payload(type_name, payload, fingerprint)
        except DecodeError as exc:
            self._count_bad("decode_errors", str(exc), source or ("?", 0))
            return False
        if tracker is not None:
            tracker.repaired += 1
        if history:
            self.history_delivered += 1
        else:
            self.repairs_delivered += 1
        info = _new_info(MessageInfo, (type_name, sender, seq, sent_ns, time.time_ns(), boot,
                                       False, source, clock_synced, False, False, fingerprint,
                                       True))
        self.received += 1
        for sub in tuple(self._subs.get(type_name, ())):
            sub.deliver(msg, info)
        return True

    def _judge_repair(self, sender: bytes, type_name: str, boot: int,
                      tracker: SequenceTracker, seq: int, sent_ns: int) -> Verdict:
        """The tracker's verdict on a resent message (the requester told, as by
        :meth:`_observe`)."""
        highest = tracker.highest
        if highest is not None and boot == tracker.boot and seq <= highest and (
                highest - seq >= tracker.window or tracker.below_baseline(seq, boot)):
            # Outside what the window can tell. Judged here, not by observe: a lenient
            # tracker takes an old number with a timestamp newer than any seen for a
            # restart, and a resent message may well have one (after a tail).
            tracker.stale += 1
            return Verdict.STALE
        lost = tracker.lost
        verdict = tracker.observe(seq, boot, sent_ns)
        gaps = self.gaps
        if gaps is not None and highest is not None:
            key = (sender, type_name, boot)
            if verdict is Verdict.LATE:
                gaps.on_filled(key, seq, self._clock())
            elif verdict is Verdict.NEW or verdict is Verdict.RESTART:
                if verdict is Verdict.RESTART:
                    gaps.on_restart(sender, type_name, boot, self._clock())
                else:
                    gaps.on_filled(key, seq, self._clock())  # one a tail announced
                if tracker.lost > lost:
                    gaps.on_gap(key, seq - (tracker.lost - lost), seq - 1, self._clock())
        return verdict

    def _hand_out(self, stream: _Stream, msg: Any, seq: int, ts: int, received_ns: int,
                  source: tuple[str, int]) -> None:
        """Give one decoded message, with its MessageInfo, to every subscriber of its type.

        The subscribers are read per message: a callback may subscribe or unsubscribe.
        Several are iterated over a copy (list order is delivery order).
        """
        type_name = stream.type_name
        info = _new_info(MessageInfo, (type_name, stream.node_id, seq, ts, received_ns,
                                       stream.boot, False, source, stream.clock_synced, False,
                                       stream.replayed, stream.fingerprint, False))
        self.received += 1
        subs = self._subs.get(type_name)
        if subs:
            if len(subs) == 1:
                subs[0].deliver(msg, info)
            else:
                for sub in tuple(subs):
                    sub.deliver(msg, info)

    def _decode_slow(self, stream: _Stream, tracker: SequenceTracker, payload: bytes,
                     source: tuple[str, int]) -> Any:
        """The full payload decoder: the message, or FALLBACK when it is dropped (counted).

        Also where a fingerprint mismatch is noticed (the fast decoder never reads
        those) and logged once per sender and type.
        """
        try:
            msg = stream.decode(payload)  # type: ignore[misc]
        except DecodeError as exc:
            self._count_bad("decode_errors", str(exc), source)
            return _FALLBACK
        if stream.mismatch and tracker.note_schema_mismatch():
            known = stream.known
            _log.warning("%s from node %s has schema fingerprint %s, ours is %s; decoding "
                         "leniently (logged once per sender and type)", stream.type_name,
                         stream.node_id.hex(), stream.fingerprint.hex(),
                         known.fingerprint.hex() if known else "?")
        return msg

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
        followed = tracker.boot == boot and tracker.highest is not None
        lost = tracker.lost
        verdict = tracker.observe(seq, boot, sent_ns)
        if followed and self.gaps is not None and tracker.lost > lost:
            # Numbers between what was seen and this one were sent and never arrived
            # (other keys' readings, for a keyed type): the requester asks for them.
            self.gaps.on_gap((sender, type_name, boot), seq - (tracker.lost - lost), seq - 1,
                             self._clock())
        # A keyed type is answered with one message per key, in sequence order: the
        # numbers between two answers are other keys' older messages (superseded by
        # their own answers), not losses, so the next message starts a new baseline.
        tracker.rebase()
        self.sync_evictions()
        if not verdict.deliver:
            return False
        # The rebase puts this number below the stream's next baseline, where a history
        # answer is judged by the history record: note it there, so a history answer
        # (at subscribe, or a logger's follow-up) does not deliver it a second time.
        record = self._history_seen
        record[(sender, type_name, boot, seq)] = None
        if len(record) > HISTORY_SEEN_CAP:
            record.popitem(last=False)
        info = MessageInfo(type_name=type_name, sender=sender, seq=seq, sent_ns=sent_ns,
                           received_ns=time.time_ns(), boot=boot, source=source,
                           clock_synced=clock_synced, last_value=True, fingerprint=fingerprint)
        for sub in list(subs):
            sub.deliver(msg, info)
        return True
