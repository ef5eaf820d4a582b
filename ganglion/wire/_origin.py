"""The origin of a replayed message: who first sent it, under which number, and when.

Theory of operation: ``ganglion replay`` sends a log's readings again under its
*own* node id, boot and sequence numbers, so the transport stays sound (receivers
track the replayer's stream like any other, and with a key its nonces are its own:
sending under the original sender's id, boot and numbers would reuse that sender's
nonces). What the original reading was travels inside each message instead: when
flag bit 2 (replayed) is set, a message's payload is the CBOR map of its fields
followed by one more CBOR item, the *origin*::

    [ node id (bstr, 8), boot (uint), seq (uint), sent_ns (uint), flags (uint) ]

``flags`` bit 0: the original was a last value fetched by a late joiner; bit 1: the
original sender's clock was not synchronised (the header's bit 1). docs/protocol.md
(section 4.4) has the byte layout.

Why inside the payload: receivers ignore bytes after a payload's first CBOR item
(docs/protocol.md, section 4.3, as every ganglion so far does), so an older node
gets the readings exactly as before (from the replayer); a trailer after the last
message, or a new flag bit, would make it refuse the whole datagram.

:func:`split_origin` never raises: a payload without an origin, or with anything
but a well-formed one after its map, comes back whole with no origin, and the
message is then taken as the replayer's own (what older replayers send).
"""

from __future__ import annotations

import io
from typing import NamedTuple

import cbor2

from ganglion.errors import EncodeError
from ganglion.types._payload import _REFUSED_TAGS, MAX_DEPTH
from ganglion.wire._varint import U64

__all__ = ["ORIGIN_LAST_VALUE", "ORIGIN_MAX_SIZE", "ORIGIN_UNSYNCED", "Origin", "encode_origin",
           "split_origin"]

#: Origin flag bit 0: the original reading was a last value fetched by a late joiner.
ORIGIN_LAST_VALUE = 0x01
#: Origin flag bit 1: the original sender's clock was not synchronised.
ORIGIN_UNSYNCED = 0x02
#: Most bytes an origin adds to a payload: array head 1, node id 9, boot 5, seq 9,
#: sent_ns 9, flags 1 (each integer in its shortest CBOR form, so usually fewer).
ORIGIN_MAX_SIZE = 34
_NODE_ID_SIZE = 8


class Origin(NamedTuple):
    """Where a replayed message first came from, as the log recorded it.

    Attributes:
        node_id: the original sender's 8-byte node id.
        boot: its boot counter (u32).
        seq: its sequence number for (sender, type) (u64).
        sent_ns: its timestamp, ns since the epoch (u64).
        last_value: the original was a last value fetched by a late joiner.
        clock_synced: False when the original sender flagged its clock as not synchronised.
    """

    node_id: bytes
    boot: int
    seq: int
    sent_ns: int
    last_value: bool = False
    clock_synced: bool = True


def encode_origin(origin: Origin) -> bytes:
    """The CBOR item that follows a replayed message's fields.

    Args:
        origin: the original provenance.

    Returns:
        At most :data:`ORIGIN_MAX_SIZE` bytes.

    Raises:
        EncodeError: a value is out of range.
    """
    if not isinstance(origin.node_id, bytes) or len(origin.node_id) != _NODE_ID_SIZE:
        raise EncodeError(f"origin node id must be {_NODE_ID_SIZE} bytes")
    if not 0 <= origin.boot < 1 << 32:
        raise EncodeError(f"origin boot must be a u32, got {origin.boot}")
    if not (0 <= origin.seq < U64 and 0 <= origin.sent_ns < U64):
        raise EncodeError("origin seq and sent_ns must be u64")
    flags = (ORIGIN_LAST_VALUE if origin.last_value else 0) | \
        (0 if origin.clock_synced else ORIGIN_UNSYNCED)
    return cbor2.dumps([origin.node_id, origin.boot, origin.seq, origin.sent_ns, flags])


def split_origin(payload: bytes) -> tuple[bytes, Origin | None]:
    """Split a replayed message's payload into its fields' map and its origin.

    Args:
        payload: the message's payload as received.

    Returns:
        ``(map bytes, origin)``; ``(payload, None)`` when no well-formed origin
        follows the map (an older replayer's message, or a malformed one: the
        payload decoder then says what is wrong with it, if anything).
    """
    stream = io.BytesIO(payload)
    try:
        cbor2.CBORDecoder(stream, max_depth=MAX_DEPTH, semantic_decoders=_REFUSED_TAGS).decode()
        end = stream.tell()
        if end >= len(payload):
            return payload, None
        rest = io.BytesIO(payload[end:])
        item = cbor2.CBORDecoder(rest, max_depth=2, semantic_decoders=_REFUSED_TAGS).decode()
    except Exception:  # cbor2 raises CBORDecodeError but also ValueError & co.
        return payload, None
    if rest.tell() != len(payload) - end:
        return payload, None  # more after the origin: not ours to guess
    origin = _origin_of(item)
    return (payload[:end], origin) if origin is not None else (payload, None)


def _origin_of(item: object) -> Origin | None:
    """The origin a decoded item describes, or None when it is not one.

    Items after the fifth are ignored (room for later versions); unknown flag bits too.
    """
    if type(item) is not list or len(item) < 5:
        return None
    node_id, boot, seq, sent_ns, flags = item[:5]
    if type(node_id) is not bytes or len(node_id) != _NODE_ID_SIZE:
        return None
    for value, limit in ((boot, 1 << 32), (seq, U64), (sent_ns, U64), (flags, U64)):
        if type(value) is not int or not 0 <= value < limit:
            return None
    return Origin(node_id, boot, seq, sent_ns, bool(flags & ORIGIN_LAST_VALUE),
                  not flags & ORIGIN_UNSYNCED)
