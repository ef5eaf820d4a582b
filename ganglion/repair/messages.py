"""The repair messages of the control channel (docs/protocol.md, section 7.7).

They travel like every control message: in ordinary ganglion datagrams on the
control group, so the network key's MAC, the size checks and the sequence
tracking protect them as they protect data. A node of an older version has no
subscriber of these types and drops them like any unknown control type.

Pure: message classes only, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ganglion.types import message

__all__ = ["MAX_RANGES", "MAX_REQUESTED", "HistoryRequest", "Repair", "RepairRequest",
           "Tail", "count_numbers", "valid_ranges"]

#: Most ``[first, last]`` ranges in one :class:`RepairRequest`.
MAX_RANGES = 32
#: Most sequence numbers one :class:`RepairRequest` asks for (all ranges together).
MAX_REQUESTED = 512
#: Largest sequence number on the wire (u64).
_U64 = (1 << 64) - 1


@message("ganglion.control.RepairRequest")
@dataclass
class RepairRequest:
    """Please send again these numbers of your stream (a negative acknowledgement).

    Sent to the control group, so every other receiver of the stream overhears it
    and holds back its own request for the same numbers (suppression).

    Attributes:
        to: the publisher's node id as an unsigned integer (like ``LastValue.to``).
        type_name: the stream's type.
        boot: the publisher's boot the numbers belong to.
        ranges: ``[first, last]`` inclusive, sorted, non-overlapping, at most
            :data:`MAX_RANGES` ranges and :data:`MAX_REQUESTED` numbers in all.
    """

    to: int
    type_name: str
    boot: int
    ranges: list[list[int]] = field(default_factory=list)


@message("ganglion.control.Repair")
@dataclass
class Repair:
    """Messages sent again exactly as published, and numbers that are gone for good.

    ``seqs``, ``sent_ns`` and ``payloads`` have one entry per message (same length):
    the original sequence number, the original timestamp and the original CBOR
    payload. ``gone`` lists ``[first, last]`` ranges the publisher no longer holds
    (nor ever will: the requester records them as permanently lost).

    Attributes:
        type_name: the stream's type.
        fingerprint: the type's schema fingerprint (as in the data envelope).
        boot: the publisher's boot the numbers belong to.
        clock_synced: whether the publisher's clock was synchronised.
        seqs: sequence numbers, ascending.
        sent_ns: each message's original timestamp (ns since the epoch).
        payloads: each message's original payload.
        gone: ranges of numbers that will never be sent again.
        to: None for a repair to the group; the requester's id (unsigned) for an
            answer to a :class:`HistoryRequest`.
        nonce: the :class:`HistoryRequest`'s nonce for a history answer, else None.
    """

    type_name: str
    fingerprint: bytes
    boot: int
    clock_synced: bool = True
    seqs: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)
    gone: list[list[int]] = field(default_factory=list)
    to: int | None = None
    nonce: bytes | None = None


@message("ganglion.control.HistoryRequest")
@dataclass
class HistoryRequest:
    """Who publishes this type: send me what you still hold since ``since_ns``.

    Publishers of the type answer with :class:`Repair` messages whose ``to`` is
    the requester and whose ``nonce`` is this request's; the requester accepts
    answers only for a nonce it issued a few seconds ago.

    Attributes:
        type_name: the type wanted.
        since_ns: the oldest original timestamp wanted (ns since the epoch).
        nonce: 8 random bytes, fresh per request.
    """

    type_name: str
    since_ns: int
    nonce: bytes


@dataclass
class Tail:
    """One entry of a heartbeat's ``tails``: the last number of a quiet stream.

    Attributes:
        type_name: a type this node published in the last history age.
        last_seq: the last sequence number it gave that type (current boot).
    """

    type_name: str
    last_seq: int


def count_numbers(ranges: list[list[int]]) -> int:
    """How many sequence numbers ``ranges`` cover (they are assumed valid)."""
    return sum(last - first + 1 for first, last in ranges)


def valid_ranges(ranges: object, *, max_ranges: int = MAX_RANGES,
                 max_numbers: int | None = MAX_REQUESTED) -> bool:
    """Whether ``ranges`` is a list of sorted, disjoint ``[first, last]`` u64 pairs.

    Args:
        ranges: what arrived.
        max_ranges: most ranges allowed.
        max_numbers: most numbers covered in all, None for no bound.

    Returns:
        True when every rule of docs/protocol.md 7.7 holds.
    """
    if not isinstance(ranges, list) or len(ranges) > max_ranges:
        return False
    previous = -1
    total = 0
    for pair in ranges:
        if not (isinstance(pair, list) and len(pair) == 2):
            return False
        first, last = pair
        if type(first) is not int or type(last) is not int:
            return False
        if not (previous < first <= last <= _U64):
            return False
        total += last - first + 1
        previous = last
    return max_numbers is None or total <= max_numbers
