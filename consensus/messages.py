"""Messages exchanged by consensus nodes, and their wire form.

Theory of operation: every message is a frozen, slotted, keyword-only dataclass that
validates itself when built, so a ``Message`` object in hand is always well formed. The
names are the protocol's own (Lamport, "Paxos Made Simple", section 2): ``Prepare`` and
``Promise`` are phase 1, ``Accept`` and ``Accepted`` phase 2, ``Commit`` tells learners
a value was chosen (section 2.3). ``Nack`` is the optional courtesy of section 2.2 ("the
acceptor should inform the proposer"). ``Status``, ``CatchUpRequest`` and
``CatchUpReply`` are anti-entropy: how a newcomer, a restarted node or a healed
partition learns decided entries without re-running the protocol. ``ProposeRequest``
lets an observer ask a member to propose a type, ``RetireRequest`` to retire one (an
older node does not know the ``retire`` kind: :func:`message_from_wire` raises
:class:`MalformedMessage` there, and the request is counted and dropped).

Values are opaque ``bytes`` here: the agreement core never looks inside them (see
:mod:`consensus.commands` for what the group map puts in them).

``msg.to_wire()`` gives a tree of primitives (ints, str, bytes, lists) for CBOR;
:func:`message_from_wire` is its inverse and raises only :class:`MalformedMessage`,
whatever it is given. ``describe()`` gives one line for traces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from consensus._repr import short
from consensus.errors import MalformedMessage

__all__ = [
    "MAX_ENTRIES_PER_REPLY",
    "MAX_NODE_ID",
    "MAX_VALUE_BYTES",
    "Accept",
    "Accepted",
    "Ballot",
    "CatchUpReply",
    "CatchUpRequest",
    "Commit",
    "Message",
    "Nack",
    "Prepare",
    "Promise",
    "ProposeRequest",
    "RetireRequest",
    "Status",
    "message_from_wire",
]

MAX_NODE_ID = 2**64 - 1
MAX_VALUE_BYTES = 512
MAX_ENTRIES_PER_REPLY = 16
MAX_TYPE_NAME = 200
_MAX_INT = 2**63 - 1
DIGEST_BYTES = 16


def _check_uint(name: str, value: object, limit: int = _MAX_INT) -> None:
    # bool is an int subclass; a True slot number is a bug, not a 1.
    if type(value) is not int or not 0 <= value <= limit:
        raise MalformedMessage(f"{name} must be an int in [0, {limit}], got {short(value)}")


def _check_bytes(name: str, value: object, limit: int) -> None:
    if type(value) is not bytes or len(value) > limit:
        raise MalformedMessage(f"{name} must be bytes of at most {limit}, got {short(value, 60)}")


@dataclass(frozen=True, slots=True, order=True)
class Ballot:
    """A ballot number: ``(round, node)``, ordered lexicographically.

    Distinct proposers never share a ballot because the node id is part of it ("Paxos
    Made Simple" section 2.2: "different proposers choose their numbers from disjoint
    sets").
    """

    round: int
    node: int

    def __post_init__(self) -> None:
        _check_uint("ballot round", self.round)
        _check_uint("ballot node", self.node, MAX_NODE_ID)

    def to_wire(self) -> list[int]:
        """Return ``[round, node]``."""
        return [self.round, self.node]

    @classmethod
    def from_wire(cls, tree: object) -> Ballot:
        """Build a ballot from ``[round, node]``; raise :class:`MalformedMessage` if bad."""
        if not isinstance(tree, list) or len(tree) != 2:
            raise MalformedMessage(f"ballot must be a 2-list, got {short(tree, 60)}")
        return cls(round=tree[0], node=tree[1])

    def __str__(self) -> str:
        return f"{self.round}.{self.node}"


def _show(value: bytes | str) -> str:
    # Traces are one line per message: a peer's newline or control byte is escaped.
    text = value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    return text if text.isprintable() else repr(text)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Base:
    KIND: ClassVar[str] = ""
    sender: int

    def __post_init__(self) -> None:
        _check_uint("sender", self.sender, MAX_NODE_ID)

    def to_wire(self) -> list[Any]:
        """Return the message as a list of primitives: ``[kind, sender, *fields]``."""
        return [self.KIND, self.sender, *self._fields_to_wire()]

    def _fields_to_wire(self) -> list[Any]:
        return []

    def describe(self) -> str:
        """Return a one-line human description, as used in traces."""
        return f"{self.KIND} from {self.sender}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepare(_Base):
    """Phase 1a: "prepare request with number n" for one log slot."""

    KIND: ClassVar[str] = "prepare"
    slot: int
    ballot: Ballot

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("slot", self.slot)

    def _fields_to_wire(self) -> list[Any]:
        return [self.slot, self.ballot.to_wire()]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} prepare slot={self.slot} b={self.ballot}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Promise(_Base):
    """Phase 1b: a promise not to accept ballots below ``ballot`` in ``slot``.

    Carries the highest-numbered proposal the acceptor accepted in that slot, if any.
    """

    KIND: ClassVar[str] = "promise"
    slot: int
    ballot: Ballot
    accepted_ballot: Ballot | None = None
    accepted_value: bytes | None = None

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("slot", self.slot)
        if (self.accepted_ballot is None) != (self.accepted_value is None):
            raise MalformedMessage("promise needs both accepted_ballot and accepted_value, or neither")
        if self.accepted_value is not None:
            _check_bytes("accepted_value", self.accepted_value, MAX_VALUE_BYTES)
        if self.accepted_ballot is not None and self.accepted_ballot > self.ballot:
            raise MalformedMessage("promise reports an accepted ballot above the promised one")

    def _fields_to_wire(self) -> list[Any]:
        ab = None if self.accepted_ballot is None else self.accepted_ballot.to_wire()
        return [self.slot, self.ballot.to_wire(), ab, self.accepted_value]

    def describe(self) -> str:
        """Return a one-line human description."""
        prior = "" if self.accepted_value is None else (
            f" accepted=({self.accepted_ballot}, {_show(self.accepted_value)})"
        )
        return f"{self.sender} promise slot={self.slot} b={self.ballot}{prior}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Accept(_Base):
    """Phase 2a: "accept request" for ``value`` at ``ballot`` in ``slot``."""

    KIND: ClassVar[str] = "accept"
    slot: int
    ballot: Ballot
    value: bytes

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("slot", self.slot)
        _check_bytes("value", self.value, MAX_VALUE_BYTES)

    def _fields_to_wire(self) -> list[Any]:
        return [self.slot, self.ballot.to_wire(), self.value]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} accept slot={self.slot} b={self.ballot} v={_show(self.value)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted(_Base):
    """Phase 2b: the acceptor accepted ``ballot``'s proposal in ``slot``."""

    KIND: ClassVar[str] = "accepted"
    slot: int
    ballot: Ballot

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("slot", self.slot)

    def _fields_to_wire(self) -> list[Any]:
        return [self.slot, self.ballot.to_wire()]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} accepted slot={self.slot} b={self.ballot}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack(_Base):
    """The acceptor ignored ``ballot`` because it promised ``promised`` (section 2.2)."""

    KIND: ClassVar[str] = "nack"
    slot: int
    ballot: Ballot
    promised: Ballot

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("slot", self.slot)

    def _fields_to_wire(self) -> list[Any]:
        return [self.slot, self.ballot.to_wire(), self.promised.to_wire()]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} nack slot={self.slot} b={self.ballot} promised={self.promised}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit(_Base):
    """A value was chosen for ``slot`` (learners, section 2.3)."""

    KIND: ClassVar[str] = "commit"
    slot: int
    value: bytes

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("slot", self.slot)
        _check_bytes("value", self.value, MAX_VALUE_BYTES)

    def _fields_to_wire(self) -> list[Any]:
        return [self.slot, self.value]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} commit slot={self.slot} v={_show(self.value)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status(_Base):
    """Periodic summary of a member's decided entries: how many and a set digest."""

    KIND: ClassVar[str] = "status"
    count: int
    digest: bytes

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        _check_uint("count", self.count)
        if type(self.digest) is not bytes or len(self.digest) != DIGEST_BYTES:
            raise MalformedMessage(f"digest must be {DIGEST_BYTES} bytes")

    def _fields_to_wire(self) -> list[Any]:
        return [self.count, self.digest]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} status n={self.count} digest={self.digest.hex()[:8]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpRequest(_Base):
    """Ask a member for every decided entry it knows."""

    KIND: ClassVar[str] = "catchup?"

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} catch-up request"


@dataclass(frozen=True, slots=True, kw_only=True)
class CatchUpReply(_Base):
    """A chunk of decided ``(slot, value)`` entries, answering a :class:`CatchUpRequest`."""

    KIND: ClassVar[str] = "catchup"
    entries: tuple[tuple[int, bytes], ...]

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        if type(self.entries) is not tuple or len(self.entries) > MAX_ENTRIES_PER_REPLY:
            raise MalformedMessage(f"entries must be a tuple of at most {MAX_ENTRIES_PER_REPLY}")
        for entry in self.entries:
            if type(entry) is not tuple or len(entry) != 2:
                raise MalformedMessage("each entry must be a (slot, value) pair")
            _check_uint("entry slot", entry[0])
            _check_bytes("entry value", entry[1], MAX_VALUE_BYTES)

    def _fields_to_wire(self) -> list[Any]:
        return [[[slot, value] for slot, value in self.entries]]

    def describe(self) -> str:
        """Return a one-line human description."""
        shown = ", ".join(f"{slot}:{_show(value)}" for slot, value in self.entries)
        return f"{self.sender} catch-up [{shown}]"


@dataclass(frozen=True, slots=True, kw_only=True)
class _TypeRequest(_Base):
    """A request about one type, from an observer (or this node) to a member."""

    VERB: ClassVar[str] = ""
    type_name: str

    def __post_init__(self) -> None:
        _Base.__post_init__(self)
        if type(self.type_name) is not str or not 0 < len(self.type_name) <= MAX_TYPE_NAME:
            raise MalformedMessage(f"type_name must be a non-empty str of at most {MAX_TYPE_NAME}")

    def _fields_to_wire(self) -> list[Any]:
        return [self.type_name]

    def describe(self) -> str:
        """Return a one-line human description."""
        return f"{self.sender} {self.VERB} {_show(self.type_name)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeRequest(_TypeRequest):
    """Ask a member to get a group assigned to ``type_name`` (from observers, or local)."""

    KIND: ClassVar[str] = "propose"
    VERB: ClassVar[str] = "propose-request"


@dataclass(frozen=True, slots=True, kw_only=True)
class RetireRequest(_TypeRequest):
    """Ask a member to get ``type_name`` retired (from observers: ``ganglion types --retire``)."""

    KIND: ClassVar[str] = "retire"
    VERB: ClassVar[str] = "retire-request"

Message = (
    Prepare | Promise | Accept | Accepted | Nack | Commit | Status | CatchUpRequest
    | CatchUpReply | ProposeRequest | RetireRequest
)


def message_from_wire(tree: object) -> Message:
    """Rebuild a message from the primitive tree :meth:`to_wire` produced.

    Args:
        tree: anything, typically the result of ``cbor2.loads`` on a peer's datagram.

    Returns:
        The message, validated.

    Raises:
        MalformedMessage: for anything that is not a valid message; never another error.
    """
    try:
        return _from_wire(tree)
    except MalformedMessage:
        raise
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
        raise MalformedMessage(f"malformed message: {exc}") from exc


def _from_wire(tree: object) -> Message:
    if not isinstance(tree, list) or len(tree) < 2 or not isinstance(tree[0], str):
        raise MalformedMessage(f"message must be a list [kind, sender, ...], got {short(tree, 60)}")
    kind, sender, *rest = tree
    builder = _BUILDERS.get(kind)
    if builder is None:
        raise MalformedMessage(f"unknown message kind {short(kind, 40)}")
    arity, build = builder
    if len(rest) != arity:
        raise MalformedMessage(f"{kind} takes {arity} fields, got {len(rest)}")
    msg: Message = build(sender, rest)
    return msg


def _opt_ballot(tree: object) -> Ballot | None:
    return None if tree is None else Ballot.from_wire(tree)


def _entries(tree: object) -> tuple[tuple[int, bytes], ...]:
    if not isinstance(tree, list):
        raise MalformedMessage("entries must be a list")
    out = []
    for item in tree:
        if not isinstance(item, list) or len(item) != 2:
            raise MalformedMessage("each entry must be a [slot, value] pair")
        out.append((item[0], item[1]))
    return tuple(out)


_BUILDERS: dict[str, tuple[int, Any]] = {
    "prepare": (2, lambda s, f: Prepare(sender=s, slot=f[0], ballot=Ballot.from_wire(f[1]))),
    "promise": (4, lambda s, f: Promise(
        sender=s, slot=f[0], ballot=Ballot.from_wire(f[1]),
        accepted_ballot=_opt_ballot(f[2]), accepted_value=f[3])),
    "accept": (3, lambda s, f: Accept(
        sender=s, slot=f[0], ballot=Ballot.from_wire(f[1]), value=f[2])),
    "accepted": (2, lambda s, f: Accepted(sender=s, slot=f[0], ballot=Ballot.from_wire(f[1]))),
    "nack": (3, lambda s, f: Nack(
        sender=s, slot=f[0], ballot=Ballot.from_wire(f[1]), promised=Ballot.from_wire(f[2]))),
    "commit": (2, lambda s, f: Commit(sender=s, slot=f[0], value=f[1])),
    "status": (2, lambda s, f: Status(sender=s, count=f[0], digest=f[1])),
    "catchup?": (0, lambda s, f: CatchUpRequest(sender=s)),
    "catchup": (1, lambda s, f: CatchUpReply(sender=s, entries=_entries(f[0]))),
    "propose": (1, lambda s, f: ProposeRequest(sender=s, type_name=f[0])),
    "retire": (1, lambda s, f: RetireRequest(sender=s, type_name=f[0])),
}
