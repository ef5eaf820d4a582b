"""The type -> group map: a deterministic fold of the decided log entries.

Theory of operation: the map is never edited directly. It is the fold, in ``(slot,
value)`` order, of every decided entry this node knows. Inside one connected network
each slot holds one value, so this is the usual replicated-log fold. After a partition
heals, the two halves may have decided *different* values for the same slot; the entry
set is then simply their union, and the same fold over the union is the merge rule:

* ``Assign(t, g)``: if ``t`` already has a group, nothing happens (the earlier entry
  wins). Otherwise ``t`` gets ``g`` if ``g`` is free, else the allocator's next free group
  after ``t``'s preferred one. So two types never share a group (uniqueness), whatever
  order entries arrived in.
* ``Move(t, old, new)``: if ``t`` sits on ``new`` the entry records that it came from
  ``old`` (subscribers listen on both); otherwise nothing happens. A ``Move`` announces a
  re-placement, it never causes one: where a type sits is decided by the ``Assign``
  entries alone (the lowest one wins). So a forged ``Move`` cannot carry a type off its
  group; an honest one is always folded after the re-placement it announces, which is
  the only way a node comes to propose it.

Because the fold is a pure function of the entry *set*, two nodes that know the same
entries hold the same map (agreement), and a restarted node that reloads its entries
rebuilds exactly the map it had (stability). An entry that sorts after everything
already applied is applied incrementally; one that sorts earlier (only possible after a
merge) triggers a full re-fold, and the caller gets the difference as
:class:`MapChange` events.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from consensus.allocator import allocate
from consensus.commands import Assign, Move, decode_command
from consensus.errors import AddressSpaceExhausted, InvalidCommand
from consensus.messages import DIGEST_BYTES

__all__ = ["Entry", "GroupMap", "MapChange", "entry_digest"]

Entry = tuple[int, bytes]


@dataclass(frozen=True, slots=True, kw_only=True)
class MapChange:
    """One type's group changed in this node's map.

    ``old`` is None when the type is new; otherwise subscribers should listen on both
    ``old`` and ``new`` while the type moves.
    """

    type_name: str
    old: IPv4Address | None
    new: IPv4Address

    def describe(self) -> str:
        """Return a one-line human description."""
        if self.old is None:
            return f"assigned {self.type_name} -> {self.new}"
        return f"moved {self.type_name} {self.old} -> {self.new}"


def entry_digest(entry: Entry) -> int:
    """Return a 128-bit hash of one entry; XOR of these is the set digest."""
    slot, value = entry
    data = slot.to_bytes(8, "big") + value
    return int.from_bytes(hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest(), "big")


class GroupMap:
    """The fold of a set of decided ``(slot, value)`` entries into a type -> group map."""

    __slots__ = (
        "_digest", "_entries", "_groups", "_low", "_moved_from", "_order", "_owner", "_slots",
    )

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: set[Entry] = set()
        self._order: list[Entry] = []
        self._digest = 0
        self._groups: dict[str, IPv4Address] = {}
        self._owner: dict[IPv4Address, str] = {}
        self._moved_from: dict[str, IPv4Address] = {}
        self._slots: set[int] = set()
        self._low = 0  # every slot below this one has a known value
        for entry in entries:
            self.add(entry)

    # -- queries -------------------------------------------------------------------

    @property
    def groups(self) -> Mapping[str, IPv4Address]:
        """The current type -> group map (read-only view)."""
        return self._groups

    @property
    def moved_from(self) -> Mapping[str, IPv4Address]:
        """Types that moved, with the group they moved from (listen on both)."""
        return self._moved_from

    @property
    def taken(self) -> Collection[IPv4Address]:
        """The groups held by some type (constant-time membership)."""
        return self._owner.keys()

    @property
    def count(self) -> int:
        """How many distinct entries are known."""
        return len(self._entries)

    @property
    def digest(self) -> bytes:
        """An order-independent digest of the entry set (XOR of entry hashes)."""
        return self._digest.to_bytes(DIGEST_BYTES, "big")

    def entries(self) -> list[Entry]:
        """Return every known entry in fold order."""
        return list(self._order)

    def __contains__(self, entry: object) -> bool:
        return entry in self._entries

    def has_slot(self, slot: int) -> bool:
        """Tell whether some value is known decided in ``slot``."""
        i = bisect.bisect_left(self._order, (slot, b""))
        return i < len(self._order) and self._order[i][0] == slot

    def values_at(self, slot: int) -> list[bytes]:
        """Return every value known decided in ``slot`` (more than one only after a merge)."""
        i = bisect.bisect_left(self._order, (slot, b""))
        out = []
        while i < len(self._order) and self._order[i][0] == slot:
            out.append(self._order[i][1])
            i += 1
        return out

    def first_free_slot(self) -> int:
        """Return the lowest slot with no known decided value."""
        # Slots are only ever added, so the lowest free slot never moves down.
        while self._low in self._slots:
            self._low += 1
        return self._low

    def replaces(self, entry: Entry) -> bool:
        """Tell whether adding ``entry`` would move a type that already has a group.

        An entry that folds after every known one never does (an ``Assign`` of a placed
        type is a no-op, a ``Move`` only records); one that sorts earlier is checked by
        folding a copy, O(n) (a hole in the log is rare, and each is filled only once).

        Args:
            entry: a ``(slot, value)`` not known yet.

        Returns:
            True when some placed type would change group.
        """
        if entry in self._entries or not self._order or entry > self._order[-1]:
            return False
        trial = GroupMap(sorted([*self._order, entry]))
        return any(trial._groups.get(name) != group for name, group in self._groups.items())

    # -- updates -------------------------------------------------------------------

    def add(self, entry: Entry) -> list[MapChange]:
        """Add a decided entry and return how the map changed.

        Args:
            entry: ``(slot, value)``; adding a known entry is a no-op.

        Returns:
            The map changes, in type-name order for a re-fold.
        """
        if entry in self._entries:
            return []
        self._entries.add(entry)
        self._slots.add(entry[0])
        self._digest ^= entry_digest(entry)
        if not self._order or entry > self._order[-1]:
            self._order.append(entry)
            return self._apply(entry[1])
        bisect.insort(self._order, entry)
        return self._refold()

    # -- private -------------------------------------------------------------------

    def _apply(self, value: bytes) -> list[MapChange]:
        try:
            cmd = decode_command(value)
        except InvalidCommand:
            return []  # a value that is not a command decides nothing; same on every node
        name = cmd.type_name
        before = self._groups.get(name)
        if isinstance(cmd, Assign):
            if before is not None:
                return []
            group = cmd.group
            if group in self._owner:
                try:
                    group = allocate(name, self._owner)
                except AddressSpaceExhausted:
                    return []
            self._place(name, group)
            return [MapChange(type_name=name, old=None, new=group)]
        assert isinstance(cmd, Move)
        if before == cmd.new:
            self._moved_from[name] = cmd.old
        return []

    def _place(self, name: str, group: IPv4Address) -> None:
        self._groups[name] = group
        self._owner[group] = name

    def _refold(self) -> list[MapChange]:
        before = dict(self._groups)
        self._groups.clear()
        self._owner.clear()
        self._moved_from.clear()
        for _, value in self._order:
            self._apply(value)
        changes = []
        for name in sorted(self._groups):
            new = self._groups[name]
            old = before.get(name)
            if old != new:
                changes.append(MapChange(type_name=name, old=old, new=new))
        return changes
