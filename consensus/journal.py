"""Durable records: what a node must write to stable storage, and how it restarts.

Theory of operation: a node's durable state is an append-only journal of small
records. ``Ready.to_persist`` hands the caller the records produced since the last
``Ready``; the caller appends them (and syncs) *before* sending that ``Ready``'s
messages. A restarted node replays the journal with :func:`replay` and gets back
everything it ever promised, accepted, learned, the highest ballot round it used, and
the moves it still owes the network. Nothing else survives a restart.

A record whose ballot round is above :data:`~consensus.limits.MAX_ROUND` cannot come
from an honest node: an older version adopted and journaled it from a forged
``Prepare``. :func:`replay` leaves such records out (and counts them in
``DurableState.dropped``), exactly as the node now refuses the message at the boundary:
keeping the promise would wedge its slot (no honest ballot can exceed it), and keeping
the round would leave the node unable to allocate a new one. Leaving them out is safe
for ballot uniqueness: the node never again uses a round above ``MAX_ROUND``, and every
round at or below it that it used is still in the journal.

* :class:`Promised` - the acceptor promised ``ballot`` in ``slot`` ("Paxos Made Simple"
  section 2.3: "an acceptor must remember this information even if it fails and then
  restarts").
* :class:`AcceptedRecord` - the acceptor accepted ``(ballot, value)`` in ``slot``.
* :class:`Learned` - ``value`` is decided in ``slot``.
* :class:`RoundUsed` - a proposer used this round, so it never reuses a ballot.
* :class:`MoveIntent` - after a merge this node saw a type move and must get the move
  decided, even if it crashes first.

Records round-trip through primitive trees (``to_wire`` / :func:`record_from_wire`) so
the caller can store them with CBOR.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from consensus._repr import short
from consensus.commands import Move, check_type_name
from consensus.errors import InvalidCommand, MalformedMessage
from consensus.limits import MAX_ROUND
from consensus.messages import MAX_VALUE_BYTES, Ballot, _check_bytes, _check_uint

__all__ = [
    "AcceptedRecord",
    "DurableState",
    "JournalRecord",
    "Learned",
    "MoveIntent",
    "Promised",
    "RoundUsed",
    "record_from_wire",
    "replay",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Promised:
    """The acceptor promised ``ballot`` in ``slot``."""

    slot: int
    ballot: Ballot

    def __post_init__(self) -> None:
        _check_uint("slot", self.slot)

    def to_wire(self) -> list[Any]:
        """Return ``["promised", slot, ballot]``."""
        return ["promised", self.slot, self.ballot.to_wire()]


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptedRecord:
    """The acceptor accepted ``value`` at ``ballot`` in ``slot``."""

    slot: int
    ballot: Ballot
    value: bytes

    def __post_init__(self) -> None:
        _check_uint("slot", self.slot)
        _check_bytes("value", self.value, MAX_VALUE_BYTES)

    def to_wire(self) -> list[Any]:
        """Return ``["accepted", slot, ballot, value]``."""
        return ["accepted", self.slot, self.ballot.to_wire(), self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Learned:
    """``value`` is decided in ``slot``."""

    slot: int
    value: bytes

    def __post_init__(self) -> None:
        _check_uint("slot", self.slot)
        _check_bytes("value", self.value, MAX_VALUE_BYTES)

    def to_wire(self) -> list[Any]:
        """Return ``["learned", slot, value]``."""
        return ["learned", self.slot, self.value]


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundUsed:
    """A proposer of this node used ballot round ``round``."""

    round: int

    def __post_init__(self) -> None:
        _check_uint("round", self.round)

    def to_wire(self) -> list[Any]:
        """Return ``["round", round]``."""
        return ["round", self.round]


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveIntent:
    """This node must get ``Move(type_name, old, new)`` decided."""

    move: Move

    def to_wire(self) -> list[Any]:
        """Return ``["move", type, old, new]``."""
        return ["move", self.move.type_name, str(self.move.old), str(self.move.new)]


JournalRecord = Promised | AcceptedRecord | Learned | RoundUsed | MoveIntent


@dataclass(slots=True)
class DurableState:
    """Everything a node keeps across a restart, rebuilt by :func:`replay`."""

    promised: dict[int, Ballot] = field(default_factory=dict)
    accepted: dict[int, tuple[Ballot, bytes]] = field(default_factory=dict)
    learned: list[tuple[int, bytes]] = field(default_factory=list)
    max_round: int = 0
    moves: list[Move] = field(default_factory=list)
    dropped: int = 0  # records left out for an implausible round (see the module docstring)


def replay(records: Iterable[JournalRecord]) -> DurableState:
    """Rebuild durable state from a journal, in order.

    Args:
        records: the records a node persisted, oldest first.

    Returns:
        The promises, acceptances, decided entries, highest round and owed moves; records
        with a round above ``MAX_ROUND`` are left out and counted in ``dropped``.
    """
    state = DurableState()
    for rec in records:
        if _implausible(rec):
            state.dropped += 1
        elif isinstance(rec, Promised):
            state.promised[rec.slot] = max(rec.ballot, state.promised.get(rec.slot, rec.ballot))
            state.max_round = max(state.max_round, rec.ballot.round)
        elif isinstance(rec, AcceptedRecord):
            state.accepted[rec.slot] = (rec.ballot, rec.value)
            state.promised[rec.slot] = max(rec.ballot, state.promised.get(rec.slot, rec.ballot))
            state.max_round = max(state.max_round, rec.ballot.round)
        elif isinstance(rec, Learned):
            state.learned.append((rec.slot, rec.value))
        elif isinstance(rec, RoundUsed):
            state.max_round = max(state.max_round, rec.round)
        else:
            state.moves.append(rec.move)
    return state


def _implausible(rec: JournalRecord) -> bool:
    if isinstance(rec, (Promised, AcceptedRecord)):
        return rec.ballot.round > MAX_ROUND
    return isinstance(rec, RoundUsed) and rec.round > MAX_ROUND


def record_from_wire(tree: object) -> JournalRecord:
    """Rebuild a record from its primitive tree.

    Args:
        tree: what ``to_wire()`` returned, after a trip through storage.

    Returns:
        The record.

    Raises:
        MalformedMessage: for anything that is not a valid record; never another error.
    """
    try:
        return _record_from_wire(tree)
    except MalformedMessage:
        raise
    except (TypeError, ValueError, IndexError) as exc:
        raise MalformedMessage(f"malformed journal record: {exc}") from exc


def _record_from_wire(tree: object) -> JournalRecord:
    if not isinstance(tree, list) or not tree:
        raise MalformedMessage(f"record must be a non-empty list, got {short(tree, 60)}")
    kind, *f = tree
    if kind == "promised" and len(f) == 2:
        return Promised(slot=f[0], ballot=Ballot.from_wire(f[1]))
    if kind == "accepted" and len(f) == 3:
        return AcceptedRecord(slot=f[0], ballot=Ballot.from_wire(f[1]), value=f[2])
    if kind == "learned" and len(f) == 2:
        return Learned(slot=f[0], value=f[1])
    if kind == "round" and len(f) == 1:
        return RoundUsed(round=f[0])
    if kind == "move" and len(f) == 3 and all(type(x) is str for x in f):
        try:
            move = Move(type_name=check_type_name(f[0]), old=IPv4Address(f[1]), new=IPv4Address(f[2]))
        except InvalidCommand as exc:
            raise MalformedMessage(str(exc)) from exc
        return MoveIntent(move=move)
    raise MalformedMessage(f"unknown journal record {short(tree, 60)}")
