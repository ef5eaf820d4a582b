"""Batching: pack messages of one type into datagrams up to the size budget.

Theory of operation: a :class:`Packer` belongs to one (sender, type). It keeps
the constant part of the header encoded once, and appends each message
(timestamp delta, length, payload) to a buffer as long as the whole datagram,
MAC included, stays within ``max_datagram``. :meth:`Packer.add` answers whether
the message went in; when it did not, the caller :meth:`~Packer.build`\\ s the
datagram, sends it, and adds the message again to the now empty packer.

A message that cannot fit even alone is refused with :class:`MessageTooLarge`
(never truncated); :meth:`Packer.check_fits` lets ``publish`` refuse it before
it is queued. Sequence numbers are consecutive: after ``build()`` the packer
continues at ``first_seq + count``.

With a *sealer* (:meth:`KeyRing.sealer <ganglion.wire.keys.KeyRing.sealer>`) the
packer builds encrypted datagrams instead: the same header and batch header, then
the sealer's key id and session, then the messages encrypted under the nonce (boot,
first seq) and the tag. Each datagram's first seq is new (the numbering only moves
forward), so no nonce repeats within a boot.

The compiled send lane (``ganglion._speedups``) builds a lone datagram itself, in
clear with this packer's header, and hands it to the packer's ``_seal`` (None
without a key): :func:`~ganglion.wire._mac.sign` under the key, or the sealer's
:meth:`~ganglion.wire._aead.Sealer.seal_datagram`, which give the bytes
:meth:`Packer.build_one` gives.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from ganglion.defaults import MAX_DATAGRAM
from ganglion.errors import ConfigError, EncodeError, MessageTooLarge
from ganglion.wire._envelope import (
    _BATCH,
    MAX_BATCH,
    MAX_TS_DELTA,
    MAX_UDP_PAYLOAD,
    encode_prefix,
    overhead,
)
from ganglion.wire._mac import check_key, compute_mac, sign
from ganglion.wire._varint import U64, encode_varint, varint_size

if TYPE_CHECKING:
    from ganglion.wire._aead import Sealer

#: What :meth:`Packer.add` answers: the message did not fit (build, then add it
#: again); it was added; it was added and the next message as large would not fit
#: (a sender may build now rather than try). Only NOT_ADDED is false.
NOT_ADDED, ADDED, FULL = 0, 1, 2
#: Most bytes a message takes in a datagram besides its payload when it follows
#: another within microseconds: time delta and length varints, two bytes each.
HEAD_MAX = 4
#: The batch header of a lone message (count 1) with its delta 0 and a one- or
#: two-byte length varint: the whole head of a message alone in its datagram.
_LONE1 = struct.Struct(">QQHBB").pack
_LONE2 = struct.Struct(">QQHBBB").pack


def datagram_size(type_name: str, payload_size: int, *, signed: bool,
                  encrypted: bool = False) -> int:
    """Return the size of a datagram carrying one message of ``payload_size`` bytes.

    Args:
        type_name: the type name (its length counts).
        payload_size: the encoded payload's size.
        signed: whether the datagram carries a MAC.
        encrypted: whether it is encrypted (key id, session and tag instead of a MAC).

    Returns:
        The full datagram size in bytes.
    """
    return (overhead(type_name, signed=signed, encrypted=encrypted) + 1
            + varint_size(payload_size) + payload_size)


class Packer:
    """Builds datagrams of one (sender, type), several messages each when they fit.

    Args:
        node_id: the sender's 8-byte node id.
        type_name: the type of every message added.
        fingerprint: that type's 8-byte schema fingerprint.
        first_seq: sequence number of the first message added.
        boot: the sender's boot counter (u32).
        key: the network key (32 bytes) if datagrams must carry a MAC.
        max_datagram: the size budget in bytes, MAC (or tag) included.
        replayed: flag every datagram as replayed from a log.
        sealer: encrypt every datagram with it instead (not together with ``key``).

    Attributes:
        count: messages in the datagram being built (read only).
        next_seq: the sequence number the next added message gets (read only; an
            attribute, not a property: a sender compares it per message).

    Raises:
        EncodeError: a header field is malformed.
        ConfigError: the key is not 32 bytes, or ``max_datagram`` is too small
            for any message of this type or larger than a UDP datagram can be.
        EncodeError: both ``key`` and ``sealer`` are given.
    """

    __slots__ = (
        "_base",
        "_body",
        "_boot",
        "_fingerprint",
        "_key",
        "_limit",
        "_node_id",
        "_prefix",
        "_prev",
        "_replayed",
        "_seal",
        "_sealer",
        "_seq",
        "_size",
        "_synced",
        "count",
        "max_datagram",
        "next_seq",
        "type_name",
    )

    def __init__(
        self,
        *,
        node_id: bytes,
        type_name: str,
        fingerprint: bytes,
        first_seq: int = 0,
        boot: int = 0,
        key: bytes | None = None,
        max_datagram: int = MAX_DATAGRAM,
        replayed: bool = False,
        sealer: Sealer | None = None,
    ) -> None:
        self._node_id, self._fingerprint, self._boot = node_id, fingerprint, boot
        self._replayed, self._synced = replayed, True
        self.type_name = type_name
        self.max_datagram = max_datagram
        self._set_keys(key, sealer)
        if not 0 <= first_seq < U64:
            raise EncodeError(f"first_seq must be a u64, got {first_seq}")
        self._seq = first_seq
        self.next_seq = first_seq
        self._body = bytearray()
        self.count = 0
        self._size = 0
        self._base = 0
        self._prev = 0

    def _set_keys(self, key: bytes | None, sealer: Sealer | None) -> None:
        """Sign with ``key``, encrypt with ``sealer``, or neither; the header and room follow."""
        if key is not None and sealer is not None:
            raise EncodeError("a datagram is either signed (key) or encrypted (sealer), not both")
        self._key = None if key is None else check_key(key)
        self._sealer = sealer
        # What the compiled send lane (ganglion._speedups) hands a datagram it built in
        # clear, with this packer's header and flags, to make it what build() returns.
        self._seal: Callable[[bytes], bytes] | None = None
        if sealer is not None:
            self._seal = sealer.seal_datagram
        elif self._key is not None:
            self._seal = functools.partial(sign, self._key)
        self._prefix = encode_prefix(self._node_id, self.type_name, self._fingerprint,
                                     self._boot, key is not None, self._synced, self._replayed,
                                     encrypted=sealer is not None)
        signed, encrypted = key is not None, sealer is not None
        smallest = datagram_size(self.type_name, 1, signed=signed, encrypted=encrypted)
        if not smallest <= self.max_datagram <= MAX_UDP_PAYLOAD:
            raise ConfigError(
                f"max_datagram must be in {smallest}..{MAX_UDP_PAYLOAD} for type "
                f"{self.type_name!r}, got {self.max_datagram}"
            )
        # Room for messages: the budget minus everything that is not a message.
        self._limit = self.max_datagram - overhead(self.type_name, signed=signed,
                                                   encrypted=encrypted)

    def rekey(self, key: bytes | None = None, sealer: Sealer | None = None) -> None:
        """Sign or encrypt the datagrams built from now on differently (a key rotation).

        Args:
            key: sign with this network key (MAC-only), or
            sealer: encrypt with this sealer; neither: send in clear.

        Raises:
            EncodeError: messages are waiting (build them first), or both are given.
            ConfigError: the budget leaves no room for a message with the new overhead.
        """
        if self.count:
            raise EncodeError("build the datagram before changing keys")
        self._set_keys(key, sealer)

    @property
    def encrypted(self) -> bool:
        """Whether the datagrams are encrypted."""
        return self._sealer is not None

    def skip_to(self, seq: int) -> None:
        """Number the next message ``seq``, leaving a gap (messages dropped before sending).

        Raises:
            EncodeError: messages are waiting to be built, or ``seq`` would go back.
        """
        if self.count:
            raise EncodeError("build the datagram before skipping sequence numbers")
        if not self._seq <= seq < U64:
            raise EncodeError(f"cannot skip from sequence number {self._seq} to {seq}")
        self._seq = seq
        self.next_seq = seq

    def set_clock_synced(self, synced: bool) -> None:
        """Set or clear the clock-unsynchronised flag of the datagrams built from now on."""
        self._synced = synced
        self._prefix = encode_prefix(self._node_id, self.type_name, self._fingerprint,
                                     self._boot, self._key is not None, synced, self._replayed,
                                     encrypted=self._sealer is not None)

    @property
    def size(self) -> int:
        """Size of the datagram :meth:`build` would return now, MAC included."""
        return self.max_datagram - self._limit + self._size

    def __len__(self) -> int:
        return self.count

    @property
    def limit(self) -> int:
        """Room for messages in one datagram: the budget minus the envelope (and MAC)."""
        return self._limit

    def fits(self, payload_size: int) -> bool:
        """Whether a message of ``payload_size`` bytes fits in a datagram alone."""
        return 1 + varint_size(payload_size) + payload_size <= self._limit

    def check_fits(self, payload_size: int) -> None:
        """Refuse a message that could never fit in a datagram, even alone.

        Args:
            payload_size: the encoded payload's size in bytes.

        Raises:
            MessageTooLarge: with the size the datagram would need and the limit.
        """
        need = 1 + varint_size(payload_size) + payload_size
        if need > self._limit:
            raise MessageTooLarge(self.type_name, self.max_datagram - self._limit + need,
                                  self.max_datagram)

    def add(self, payload: bytes, ts_ns: int) -> int:
        """Append one message if it fits in the current datagram.

        The one way a message joins a batch (:meth:`Outgoing.add
        <ganglion.runtime._outgoing.Outgoing.add>` decides when; the compiled
        ``batch_add`` in ``ganglion/_c/send.c`` does this method's common case, a
        delta and a length of at most two bytes each, and must stay its mirror).

        Args:
            payload: the encoded payload (non-empty).
            ts_ns: the sender's timestamp of the message, ns since the epoch.

        Returns:
            :data:`ADDED` if the message was added, :data:`FULL` if it was added
            and another as large would not fit any more, :data:`NOT_ADDED` (the
            only false answer) if the datagram is full: build it, then add the
            message again.

        Raises:
            MessageTooLarge: the message cannot fit even in an empty datagram.
            EncodeError: empty payload, timestamp out of range, or the sequence
                numbers would pass 2**64.
        """
        n = len(payload)
        count = self.count
        if count:
            delta = ts_ns - self._prev
            # The common case passes one chained comparison: a message microseconds
            # after the previous one, of a plausible size.
            if not (0 <= delta < 0x2000 and 0 < n < 0x4000 and ts_ns < U64) and (
                    not n or not 0 <= ts_ns < U64 or not -MAX_TS_DELTA <= delta < MAX_TS_DELTA):
                raise EncodeError(f"bad message: {n}-byte payload at timestamp {ts_ns}")
            dz = (delta << 1) if delta >= 0 else ((-delta) << 1) - 1  # zigzag, inlined
        else:
            # The first message of a datagram is at the base time: delta 0.
            if not n:
                raise EncodeError("a payload must not be empty")
            if not 0 <= ts_ns < U64:
                raise EncodeError(f"timestamp must be in 0..2**64-1, got {ts_ns}")
            if self._seq >= U64:
                raise EncodeError("sequence numbers exhausted (2**64)")
            dz = 0
        size = (self._size + (1 if dz < 0x80 else 2 if dz < 0x4000 else varint_size(dz))
                + (1 if n < 0x80 else 2 if n < 0x4000 else varint_size(n)) + n)
        if size > self._limit or count >= MAX_BATCH or self._seq + count >= U64:
            if 1 + varint_size(n) + n > self._limit:
                self.check_fits(n)  # raises, with both sizes
            return NOT_ADDED  # full, and the message fits an empty datagram
        body = self._body
        if dz < 0x80:
            body.append(dz)
        elif dz < 0x4000:  # messages microseconds apart: a two-byte varint, inlined
            body.append(dz & 0x7F | 0x80)
            body.append(dz >> 7)
        else:
            body += encode_varint(dz)
        if n < 0x80:
            body.append(n)
        elif n < 0x4000:
            body.append(n & 0x7F | 0x80)
            body.append(n >> 7)
        else:
            body += encode_varint(n)
        body += payload
        if not count:
            self._base = ts_ns
        self._size = size
        self.count = count + 1
        self.next_seq += 1
        self._prev = ts_ns
        return FULL if self._limit - size < n + HEAD_MAX else ADDED

    def build_one(self, payload: bytes, ts_ns: int) -> bytes:
        """Return the datagram of one message alone (nothing may be waiting), numbering it.

        The same bytes as :meth:`add` then :meth:`build`, in one step: the
        light-traffic path, where every message leaves at once.

        Raises:
            EncodeError: messages are waiting, or as :meth:`add`.
            MessageTooLarge: as :meth:`add`.
        """
        if self.count:
            raise EncodeError("messages are waiting: add this one and build them together")
        n = len(payload)
        if 0 < n < 0x4000 and 0 <= ts_ns < U64 and self._seq < U64 \
                and n + (2 if n < 0x80 else 3) <= self._limit:
            # The batch header, the delta (0) and the length varint in one pack.
            head = _LONE1(self._seq, ts_ns, 1, 0, n) if n < 0x80 else \
                _LONE2(self._seq, ts_ns, 1, 0, n & 0x7F | 0x80, n >> 7)
            sealer = self._sealer
            if sealer is not None:
                # Clear through the count (18 bytes of ``head``), then the message sealed.
                out = sealer.seal(b"".join((self._prefix, head[:18], sealer.head)),
                                  head[18:] + payload, self._boot, self._seq)
            else:
                out = b"".join((self._prefix, head, payload))
                if self._key is not None:
                    out += compute_mac(self._key, out)
            self._seq += 1
            self.next_seq += 1
            return out
        self.add(payload, ts_ns)  # raises for what the short path does not take, else adds
        return self.build()

    def build(self) -> bytes:
        """Return the datagram of the messages added so far, and start a new one.

        Returns:
            The datagram (MAC included when there is a key).

        Raises:
            EncodeError: no message was added.
        """
        if not self.count:
            raise EncodeError("nothing to build: add a message first")
        sealer = self._sealer
        if sealer is not None:
            out = sealer.seal(b"".join((self._prefix, _BATCH.pack(self._seq, self._base,
                                                                   self.count), sealer.head)),
                              self._body, self._boot, self._seq)
        else:
            out = b"".join((self._prefix, _BATCH.pack(self._seq, self._base, self.count),
                            self._body))
            if self._key is not None:
                out += compute_mac(self._key, out)
        self._seq += self.count
        self.count = 0
        self._size = 0
        self._body = bytearray()
        return out


