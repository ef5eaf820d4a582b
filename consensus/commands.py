"""Commands the group map puts into the replicated log, and their byte encoding.

Theory of operation: the agreement core chooses opaque byte strings; this module gives
them meaning. A log entry is ``Assign(type, group)`` ("give this type this group"),
``Move(type, old, new)`` ("this type moved from old to new", the explicit decision a
partition merge produces) or ``Retire(type, group)`` ("this type, on this group, is no
longer used": it leaves the map, and its group is reserved for a grace period before
another type may get it, see :mod:`consensus.groupmap`). The encoding is plain ASCII
text such as
``assign brewery.Temperature 239.255.12.7`` so traces read without a decoder; it is
canonical (one command has exactly one encoding), which the fold relies on when it
orders entries by ``(slot, value)``.

A node of an older version that does not know a command (``retire`` came after
``assign`` and ``move``) gets :class:`InvalidCommand` from :func:`decode_command`, and
the fold treats such a value as deciding nothing: it never crashes on it, it only keeps
the retired type in its own map (``docs/consensus.md``, "Retiring a type").
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from consensus._repr import short
from consensus.allocator import is_assignable
from consensus.errors import InvalidCommand
from consensus.messages import MAX_TYPE_NAME

__all__ = ["Assign", "Command", "Move", "Retire", "check_type_name", "decode_command"]


def check_type_name(type_name: object) -> str:
    """Validate a type name as a command may carry it.

    Args:
        type_name: the candidate name.

    Returns:
        The name, unchanged.

    Raises:
        InvalidCommand: not a str of 1..200 printable ASCII characters without spaces.
    """
    if (
        type(type_name) is not str
        or not 0 < len(type_name) <= MAX_TYPE_NAME
        or not type_name.isascii()
        or not type_name.isprintable()
        or " " in type_name
    ):
        raise InvalidCommand(f"invalid type name {short(type_name, 60)}")
    return type_name


def _check_group(name: str, group: object) -> None:
    if not isinstance(group, IPv4Address) or not is_assignable(group):
        raise InvalidCommand(f"{name} {group!r} is not an assignable multicast group")


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign:
    """Give ``type_name`` the multicast group ``group``."""

    type_name: str
    group: IPv4Address

    def __post_init__(self) -> None:
        check_type_name(self.type_name)
        _check_group("group", self.group)

    def encode(self) -> bytes:
        """Return the canonical encoding, e.g. ``b"assign a.B 239.255.1.2"``."""
        return f"assign {self.type_name} {self.group}".encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    """Record that ``type_name`` moved from group ``old`` to group ``new``."""

    type_name: str
    old: IPv4Address
    new: IPv4Address

    def __post_init__(self) -> None:
        check_type_name(self.type_name)
        _check_group("old", self.old)
        _check_group("new", self.new)
        if self.old == self.new:
            raise InvalidCommand("a move needs two different groups")

    def encode(self) -> bytes:
        """Return the canonical encoding, e.g. ``b"move a.B 239.255.1.2 239.255.1.3"``."""
        return f"move {self.type_name} {self.old} {self.new}".encode("ascii")


@dataclass(frozen=True, slots=True, kw_only=True)
class Retire:
    """Take ``type_name`` off ``group``: it leaves the map, the group is reserved a while.

    Naming the group makes a retire apply to one placement only: a ``Retire`` decided
    for a type that has since moved, or was retired and assigned again elsewhere, is a
    no-op in the fold.
    """

    type_name: str
    group: IPv4Address

    def __post_init__(self) -> None:
        check_type_name(self.type_name)
        _check_group("group", self.group)

    def encode(self) -> bytes:
        """Return the canonical encoding, e.g. ``b"retire a.B 239.255.1.2"``."""
        return f"retire {self.type_name} {self.group}".encode("ascii")


Command = Assign | Move | Retire


def decode_command(value: bytes) -> Command:
    """Parse a log value back into a command.

    Args:
        value: bytes produced by ``encode()`` (or sent by a peer).

    Returns:
        The command.

    Raises:
        InvalidCommand: the bytes are not a canonical command encoding.
    """
    try:
        words = value.decode("ascii").split(" ")
        if words[0] == "assign" and len(words) == 3:
            cmd: Command = Assign(type_name=words[1], group=IPv4Address(words[2]))
        elif words[0] == "move" and len(words) == 4:
            cmd = Move(type_name=words[1], old=IPv4Address(words[2]), new=IPv4Address(words[3]))
        elif words[0] == "retire" and len(words) == 3:
            cmd = Retire(type_name=words[1], group=IPv4Address(words[2]))
        else:
            raise InvalidCommand(f"unknown command {short(value, 60)}")
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCommand(f"undecodable command {short(value, 60)}") from exc
    if cmd.encode() != value:
        raise InvalidCommand(f"non-canonical command {short(value, 60)}")
    return cmd
