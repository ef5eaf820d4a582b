"""Wire format v1: one envelope per datagram, one or more payloads of one type.

Theory of operation: a datagram is a fixed header, the type name, a batch
header, ``count`` messages and, with a network key, a MAC (docs/protocol.md has
the byte table)::

    magic "GN" | version 1 | flags | node id (8) | boot (u32) | fingerprint (8)
    | name length (u8) | type name | first seq (u64) | base ts ns (u64) | count (u16)
    | count x [ ts delta (zigzag varint) | payload length (varint) | payload ]
    | MAC (16, if flag bit 0)

An *encrypted* datagram (flag bit 3, never with bit 0) has the same header through
``count``, then a key id (4) and a session (8), the messages encrypted with
ChaCha20-Poly1305, and the 16-byte tag instead of the MAC (:mod:`ganglion.wire._aead`).

All integers are big-endian. Message ``i`` has sequence number
``first_seq + i`` and timestamp ``ts[i] = ts[i-1] + delta[i]`` with
``ts[-1] = base``; an encoder sets ``base`` to the first timestamp, so a lone
message costs one byte of delta.

:func:`decode_datagram` checks the MAC *before* it parses anything past the
flags, and raises only :class:`DecodeError` (:class:`AuthError` for MAC
problems) whatever the input: every length is bounds-checked against the
datagram and every field against its range.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ganglion.defaults import MAX_DATAGRAM
from ganglion.errors import AuthError, DecodeError, EncodeError, MessageTooLarge
from ganglion.types import FINGERPRINT_SIZE, MAX_TYPE_NAME, is_valid_type_name
from ganglion.wire._mac import MAC_SIZE, check_key, compute_mac, mac_ok
from ganglion.wire._varint import U64, encode_varint, read_varint, zigzag
from ganglion.wire.keys import KeyRing

if TYPE_CHECKING:
    from ganglion.wire._aead import Sealer

MAGIC = b"GN"
VERSION = 1
#: Flag bit 0: a MAC follows the last message.
FLAG_MAC = 0x01
#: Flag bit 1: the sender's clock was not synchronised (no NTP yet, e.g. a Pi without
#: an RTC just after boot), so its timestamps may be far off.
FLAG_CLOCK_UNSYNCED = 0x02
#: Flag bit 2: the messages are replayed from a log (``ganglion replay``), not live.
FLAG_REPLAYED = 0x04
#: Flag bit 3: the messages are encrypted (ChaCha20-Poly1305); a key id and session
#: follow the batch header and a 16-byte tag ends the datagram. Never with bit 0.
FLAG_AEAD = 0x08
#: Flags this version understands; a datagram with any other bit set is refused.
KNOWN_FLAGS = FLAG_MAC | FLAG_CLOCK_UNSYNCED | FLAG_REPLAYED | FLAG_AEAD
#: Bytes an encrypted datagram adds to the header: key id (4) and session (8).
AEAD_HEAD_SIZE = 12
#: Node ids are 8 random bytes, persisted by each node.
NODE_ID_SIZE = 8
#: Most messages one datagram may carry (the count is a u16).
MAX_BATCH = 0xFFFF
#: Largest UDP payload over IPv4.
MAX_UDP_PAYLOAD = 65507

_FIXED = struct.Struct(">2sBB8sI8sB")  # magic .. name length: 25 bytes
_BATCH = struct.Struct(">QQH")  # first seq, base ts, count: 18 bytes
#: Bytes of envelope around the type name and the messages (no MAC).
HEADER_SIZE = _FIXED.size + _BATCH.size
#: Shortest valid datagram: a 1-byte name and one 1-byte payload, no MAC.
MIN_DATAGRAM = HEADER_SIZE + 1 + 3
#: Timestamps within one datagram differ by less than this (the delta is an i64).
MAX_TS_DELTA = 1 << 63


@dataclasses.dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded datagram: who sent which messages of which type, and when.

    Attributes:
        node_id: the sender's 8-byte node id.
        boot: the sender's boot counter (u32); it grows each time the sender
            restarts, and sequence numbers start again from 0.
        type_name: the dotted type name of every payload.
        fingerprint: the sender's 8-byte schema fingerprint of that type.
        first_seq: sequence number of the first payload; the others follow.
        timestamps: the sender's timestamp of each payload, ns since the epoch.
        payloads: the CBOR payloads, in sequence order.
        flags: the flags byte (bit 0: the datagram carried a verified MAC; bit 3: it
            was encrypted, and verified and decrypted).
        version: the wire format version (1).
    """

    node_id: bytes
    type_name: str
    fingerprint: bytes
    first_seq: int
    timestamps: tuple[int, ...]
    payloads: tuple[bytes, ...]
    boot: int = 0
    flags: int = 0
    version: int = VERSION

    @property
    def signed(self) -> bool:
        """True if the datagram carried a MAC (which decoding verified)."""
        return bool(self.flags & FLAG_MAC)

    @property
    def encrypted(self) -> bool:
        """True if the messages were encrypted (and decoding verified and decrypted them)."""
        return bool(self.flags & FLAG_AEAD)

    @property
    def clock_synced(self) -> bool:
        """False if the sender flagged its clock as not synchronised."""
        return not self.flags & FLAG_CLOCK_UNSYNCED

    @property
    def replayed(self) -> bool:
        """True if the sender marked the messages as replayed from a log."""
        return bool(self.flags & FLAG_REPLAYED)

    @property
    def count(self) -> int:
        """How many messages the datagram carries."""
        return len(self.payloads)

    def messages(self) -> Iterator[tuple[int, int, bytes]]:
        """Yield ``(seq, timestamp_ns, payload)`` for each message."""
        for i, (ts, payload) in enumerate(zip(self.timestamps, self.payloads, strict=True)):
            yield self.first_seq + i, ts, payload


def encode_datagram(
    *,
    node_id: bytes,
    type_name: str,
    fingerprint: bytes,
    first_seq: int,
    timestamps: Sequence[int],
    payloads: Sequence[bytes],
    boot: int = 0,
    key: bytes | None = None,
    max_datagram: int | None = MAX_DATAGRAM,
    sealer: Sealer | None = None,
) -> bytes:
    """Encode one datagram carrying ``payloads`` (one or more messages of one type).

    Args:
        node_id: the sender's node id, :data:`NODE_ID_SIZE` bytes.
        type_name: a valid dotted type name.
        fingerprint: the type's 8-byte schema fingerprint.
        first_seq: sequence number of the first payload (u64).
        timestamps: one sender timestamp (ns since the epoch, u64) per payload.
        payloads: the encoded payloads, at least one and at most :data:`MAX_BATCH`.
        boot: the sender's boot counter (u32).
        key: the 32-byte network key; when given the datagram carries a MAC.
        max_datagram: the size budget; None for no budget.
        sealer: encrypt the messages instead (:meth:`KeyRing.sealer
            <ganglion.wire.keys.KeyRing.sealer>`); not together with ``key``.

    Returns:
        The datagram.

    Raises:
        EncodeError: an argument is out of range.
        MessageTooLarge: the datagram would exceed ``max_datagram``.
        ConfigError: ``key`` is not 32 bytes.
    """
    if len(timestamps) != len(payloads) or not 1 <= len(payloads) <= MAX_BATCH:
        raise EncodeError(
            f"need 1..{MAX_BATCH} payloads and one timestamp each, "
            f"got {len(payloads)} payloads and {len(timestamps)} timestamps"
        )
    if not 0 <= first_seq + len(payloads) - 1 < U64 or first_seq < 0:
        raise EncodeError(f"sequence numbers must stay in 0..2**64-1, first_seq={first_seq}")
    if key is not None and sealer is not None:
        raise EncodeError("a datagram is either signed (key) or encrypted (sealer), not both")
    out = bytearray(encode_prefix(node_id, type_name, fingerprint, boot, key is not None,
                                  encrypted=sealer is not None))
    base = timestamps[0]
    _check_ts(base)
    out += _BATCH.pack(first_seq, base, len(payloads))
    head = len(out)
    prev = base
    for ts, payload in zip(timestamps, payloads, strict=True):
        _check_ts(ts)
        if not payload:
            raise EncodeError("a payload must not be empty")
        if not -MAX_TS_DELTA <= ts - prev < MAX_TS_DELTA:
            raise EncodeError("timestamps in one datagram differ by 2**63 ns or more")
        out += encode_varint(zigzag(ts - prev))
        out += encode_varint(len(payload))
        out += payload
        prev = ts
    if key is not None:
        out += compute_mac(check_key(key), out)
    elif sealer is not None:
        out = bytearray(sealer.seal(bytes(out[:head]) + sealer.head, out[head:], boot,
                                    first_seq))
    if max_datagram is not None and len(out) > max_datagram:
        raise MessageTooLarge(type_name, len(out), max_datagram)
    return bytes(out)


def decode_datagram(data: bytes | bytearray | memoryview, *,
                    key: bytes | KeyRing | None) -> Envelope:
    """Decode and check one datagram.

    Args:
        data: the datagram as received.
        key: the 32-byte network key or the node's :class:`~ganglion.wire.keys.KeyRing`
            (every key it accepts), or None when the network has none.

    Returns:
        The :class:`Envelope` (an encrypted datagram's payloads decrypted).

    Raises:
        AuthError: with a key, the datagram has no MAC or tag, or a wrong one, or
            names a key this node does not hold; without a key, the datagram is
            signed or encrypted (this node lacks the network key).
        DecodeError: anything else is wrong with the bytes; the message says what.
        ConfigError: ``key`` is given but is not 32 bytes (a local mistake).
    """
    node_id, type_name, fingerprint, first_seq, timestamps, payloads, boot, flags = (
        decode_fields(data, key)
    )
    return Envelope(node_id, type_name, fingerprint, first_seq, tuple(timestamps),
                    tuple(payloads), boot, flags, VERSION)


#: What :func:`decode_fields` returns: node id, type name, fingerprint, first seq,
#: timestamps, payloads, boot, flags (the :class:`Envelope` fields, as a tuple).
DecodedFields = tuple[bytes, str, bytes, int, list[int], list[bytes], int, int]


def decode_fields(data: bytes | bytearray | memoryview,
                  key: bytes | KeyRing | None) -> DecodedFields:
    """Decode and check one datagram into a plain tuple (the receive hot path).

    Every check of :func:`decode_datagram` happens here (that function only
    wraps the result in an :class:`Envelope`), so both accept and refuse
    exactly the same bytes with the same errors; skipping the frozen dataclass
    saves about a microsecond per datagram.

    Args:
        data: the datagram as received.
        key: the network key or key ring (see :func:`decode_datagram`), or None.

    Returns:
        ``(node_id, type_name, fingerprint, first_seq, timestamps, payloads, boot, flags)``;
        the lists are fresh and the caller may keep them.

    Raises:
        AuthError: as :func:`decode_datagram`.
        DecodeError: as :func:`decode_datagram`.
        ConfigError: ``key`` is given but is not 32 bytes.
    """
    if type(data) is not bytes:
        data = bytes(data)  # payloads are slices: never of a buffer the caller reuses
    end = len(data)
    if data[:2] != MAGIC:
        raise DecodeError("not a ganglion datagram (bad magic)")
    if end < MIN_DATAGRAM:
        raise DecodeError(f"datagram of {end} bytes is shorter than any valid one")
    _, version, flags, node_id, boot, fingerprint, name_len = _FIXED.unpack_from(data, 0)
    if version != VERSION:
        raise DecodeError(f"unsupported wire format version {version} (this node speaks 1)")
    if flags & ~KNOWN_FLAGS:
        raise DecodeError(f"unknown flag bits 0x{flags & ~KNOWN_FLAGS:02x}")
    if flags & FLAG_AEAD:
        data, end = _open(data, flags, name_len, node_id, key)
    elif flags & FLAG_MAC:
        if key is None:
            raise AuthError("datagram is signed but this node has no network key")
        end -= MAC_SIZE
        if end < HEADER_SIZE or not _mac_verifies(key, data, end):
            raise AuthError("datagram MAC does not verify under the network key")
    elif key is not None:
        raise AuthError("unsigned datagram on a network with a key")
    pos = _FIXED.size
    type_name = _NAMES.get(data[pos : pos + name_len]) or _read_name(data, pos, name_len, end)
    first_seq, timestamps, payloads = decode_batch(data, pos + name_len, end)
    return node_id, type_name, fingerprint, first_seq, timestamps, payloads, boot, flags


def _mac_verifies(key: bytes | KeyRing, data: bytes, end: int) -> bool:
    """Whether the MAC at ``end`` verifies under the key, or under any key of the ring."""
    if isinstance(key, bytes):
        return mac_ok(check_key(key), data[:end], data[end:])
    return any(mac_ok(k, data[:end], data[end:]) for k in key.keys)


def _open(data: bytes, flags: int, name_len: int, node_id: bytes,
          key: bytes | KeyRing | None) -> tuple[bytes, int]:
    """Verify and decrypt an encrypted datagram: the clear datagram and its end.

    Raises:
        AuthError: no key, an unknown key id, or a tag that does not verify.
        DecodeError: the datagram also claims a MAC.
    """
    if flags & FLAG_MAC:
        raise DecodeError("a datagram is either signed or encrypted, not both")
    if key is None:
        raise AuthError("datagram is encrypted but this node has no network key")
    ring = key if isinstance(key, KeyRing) else KeyRing((key,))
    pos = _FIXED.size + name_len
    opened = ring.opener().open(data, pos, node_id, data[_FIXED.size:pos])
    if opened is None:
        raise AuthError("encrypted datagram does not verify under the network key")
    return opened, len(opened)


def decode_batch(data: bytes, pos: int, end: int) -> tuple[int, list[int], list[bytes]]:
    """Decode the batch of a datagram: its header at ``pos``, then every message up to ``end``.

    The part of :func:`decode_fields` after the type name. A receiver that already
    accepted a datagram whose bytes up to ``pos`` are identical (same sender, boot,
    flags, fingerprint and name: a stream it knows) calls this directly, after
    checking the MAC itself when the flags say there is one; it accepts and refuses
    exactly what :func:`decode_fields` would for the whole datagram.

    Args:
        data: the whole datagram.
        pos: where the batch header starts (after the type name).
        end: where the messages end (the datagram's length, minus the MAC if any).

    Returns:
        ``(first_seq, timestamps, payloads)``; the lists are fresh.

    Raises:
        DecodeError: the batch is truncated, empty, overflows, or has stray bytes.
    """
    if pos + _BATCH.size > end:
        raise DecodeError("datagram truncated in the batch header")
    first_seq, base, count = _BATCH.unpack_from(data, pos)
    pos += _BATCH.size
    if count == 1 and pos + 2 < end and not data[pos]:
        # A lone message at the base time: every light-traffic and every large
        # message. Taken here only when it is exactly well formed; anything else
        # goes through the loop below, which says what is wrong.
        size = data[pos + 1]
        start = pos + 2
        if size >= 0x80 and data[start] < 0x80:
            size = size & 0x7F | data[start] << 7
            start += 1
        if (size < 0x80 or start > pos + 2) and size and start + size == end:
            return first_seq, [base], [data[start:end]]
    if count == 0:
        raise DecodeError("datagram carries no messages")
    if first_seq + count > U64:
        raise DecodeError("sequence numbers overflow 64 bits")
    timestamps: list[int] = []
    payloads: list[bytes] = []
    ts = base
    # The hot loop: one-byte varints (the common case) are read inline.
    for _ in range(count):
        if pos >= end:
            raise DecodeError("datagram truncated before a message")
        delta = data[pos]
        if delta < 0x80:
            pos += 1
        else:
            delta, pos = read_varint(data, pos, end)
        ts += (delta >> 1) if not delta & 1 else -((delta + 1) >> 1)
        if not 0 <= ts < U64:
            raise DecodeError("message timestamp out of range")
        if pos >= end:
            raise DecodeError("datagram truncated inside a varint")
        size = data[pos]
        if size < 0x80:
            pos += 1
        else:
            size, pos = read_varint(data, pos, end)
        nxt = pos + size
        if size == 0 or nxt > end:
            raise DecodeError(f"payload length {size} does not fit the datagram")
        timestamps.append(ts)
        payloads.append(data[pos:nxt])
        pos = nxt
    if pos != end:
        raise DecodeError(f"{end - pos} stray bytes after the last message")
    return first_seq, timestamps, payloads


def encode_prefix(
    node_id: bytes, type_name: str, fingerprint: bytes, boot: int, signed: bool,
    clock_synced: bool = True,
    replayed: bool = False,
    *,
    encrypted: bool = False,
) -> bytes:
    """Encode the part of the header that is the same for every datagram of a sender and type.

    Raises:
        EncodeError: an argument is out of range or malformed.
    """
    if not isinstance(node_id, bytes) or len(node_id) != NODE_ID_SIZE:
        raise EncodeError(f"node id must be {NODE_ID_SIZE} bytes")
    if not isinstance(fingerprint, bytes) or len(fingerprint) != FINGERPRINT_SIZE:
        raise EncodeError(f"fingerprint must be {FINGERPRINT_SIZE} bytes")
    if not isinstance(type_name, str) or not type_name.isascii() or not is_valid_type_name(type_name):
        raise EncodeError(f"invalid type name {type_name!r}")
    if not 0 <= boot < 1 << 32:
        raise EncodeError(f"boot counter must be a u32, got {boot}")
    name = type_name.encode("ascii")
    if signed and encrypted:
        raise EncodeError("a datagram is either signed or encrypted, not both")
    flags = ((FLAG_MAC if signed else 0) | (0 if clock_synced else FLAG_CLOCK_UNSYNCED)
             | (FLAG_REPLAYED if replayed else 0) | (FLAG_AEAD if encrypted else 0))
    return _FIXED.pack(MAGIC, VERSION, flags, node_id, boot, fingerprint, len(name)) + name


def overhead(type_name: str, *, signed: bool, encrypted: bool = False) -> int:
    """Return the bytes a datagram of ``type_name`` spends outside its messages.

    Args:
        type_name: the type name (its length counts).
        signed: the datagram carries a MAC (16 bytes).
        encrypted: the datagram is encrypted: key id, session and tag (28 bytes).
    """
    extra = AEAD_HEAD_SIZE + MAC_SIZE if encrypted else MAC_SIZE if signed else 0
    return HEADER_SIZE + len(type_name) + extra


_NAMES: dict[bytes, str] = {}
_NAMES_CAP = 4096  # a peer sending endless new names must not grow memory


def _read_name(data: bytes, pos: int, size: int, end: int) -> str:
    """Read and validate the type name (cached: the same few names repeat)."""
    if size == 0 or size > MAX_TYPE_NAME or pos + size > end:
        raise DecodeError(f"bad type name length {size}")
    raw = data[pos : pos + size]
    if not raw.isascii():
        raise DecodeError("type name is not ASCII")
    name = raw.decode("ascii")
    if not is_valid_type_name(name):
        raise DecodeError(f"invalid type name {name!r}")
    if len(_NAMES) < _NAMES_CAP:
        _NAMES[raw] = name
    return name


def _check_ts(ts: int) -> None:
    if not 0 <= ts < U64:
        raise EncodeError(f"timestamps must be ns since the epoch in 0..2**64-1, got {ts}")
