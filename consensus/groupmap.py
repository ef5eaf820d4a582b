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
* ``Retire(t, g)``: if ``t`` sits on ``g`` it leaves the map (and ``moved_from``), and
  ``g`` is *reserved* for ``t`` for :data:`GRACE_ENTRIES` fold positions: until that
  many more entries have been folded, no other type is placed on ``g`` (an ``Assign``
  naming it is re-placed as if ``g`` were taken), while ``t`` itself may come back on
  it. Otherwise nothing happens. The grace is counted in entries, not ticks, because
  the fold must be a function of the entry set alone: ticks differ from node to node
  and restart at 0, entries are the same everywhere (``docs/consensus.md``, "Retiring
  a type", argues the number).

Because the fold is a pure function of the entry *set*, two nodes that know the same
entries hold the same map (agreement), and a restarted node that reloads its entries
rebuilds exactly the map it had (stability). An entry that sorts after everything
already applied is applied incrementally; one that sorts earlier (only possible after a
merge) triggers a full re-fold, and the caller gets the difference as
:class:`MapChange` events.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from consensus._blake2 import blake2b
from consensus.allocator import allocate
from consensus.commands import Assign, Move, Retire, decode_command
from consensus.errors import AddressSpaceExhausted, InvalidCommand
from consensus.messages import DIGEST_BYTES

__all__ = ["GRACE_ENTRIES", "Entry", "GroupMap", "MapChange", "entry_digest"]

Entry = tuple[int, bytes]

#: Fold positions a retired type's group stays reserved for it. At most this many
#: groups are ever reserved (each retire reserves one, for this many positions), so a
#: flood of retires cannot eat the address space.
GRACE_ENTRIES = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class MapChange:
    """One type's group changed in this node's map.

    ``old`` is None when the type is new; ``new`` is None when the type was retired
    (it left the map; ``old`` is the group it had). With both set, subscribers should
    listen on both ``old`` and ``new`` while the type moves.
    """

    type_name: str
    old: IPv4Address | None
    new: IPv4Address | None

    @property
    def retired(self) -> bool:
        """True when the type left the map."""
        return self.new is None

    def describe(self) -> str:
        """Return a one-line human description."""
        if self.new is None:
            return f"retired {self.type_name} from {self.old}"
        if self.old is None:
            return f"assigned {self.type_name} -> {self.new}"
        return f"moved {self.type_name} {self.old} -> {self.new}"


def entry_digest(entry: Entry) -> int:
    """Return a 128-bit hash of one entry; XOR of these is the set digest."""
    slot, value = entry
    data = slot.to_bytes(8, "big") + value
    return int.from_bytes(blake2b(data, digest_size=DIGEST_BYTES).digest(), "big")


class GroupMap:
    """The fold of a set of decided ``(slot, value)`` entries into a type -> group map."""

    __slots__ = (
        "_digest", "_entries", "_expiry", "_groups", "_low", "_moved_from", "_order", "_owner",
        "_pos", "_reserved", "_retired_at", "_slots",
    )

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: set[Entry] = set()
        self._order: list[Entry] = []
        self._digest = 0
        self._groups: dict[str, IPv4Address] = {}
        self._owner: dict[IPv4Address, str] = {}
        self._moved_from: dict[str, IPv4Address] = {}
        # Retired groups: group -> (the type retired from it, fold position it is freed
        # at), and the same in position order, so expiring is O(1) per entry.
        self._reserved: dict[IPv4Address, tuple[str, int]] = {}
        self._expiry: deque[tuple[int, IPv4Address]] = deque()
        self._pos = 0  # entries folded so far
        self._retired_at: dict[str, int] = {}  # unplaced type -> slot of the Retire that took it off
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
        """The groups no new type may get: held by some type, or reserved after a retire."""
        return _Blocked(self._owner, self._reserved, None)

    @property
    def reserved(self) -> Mapping[IPv4Address, str]:
        """Groups retired less than :data:`GRACE_ENTRIES` entries ago, with their old type."""
        return {group: name for group, (name, _) in self._reserved.items()}

    def choose(self, type_name: str) -> IPv4Address:
        """Return the group to propose for an unplaced type.

        A recently retired type asks for its old group back (still reserved for it), so
        a type retired by mistake, or by a forger, returns where its subscribers were;
        any other type gets :func:`~consensus.allocator.allocate` over :attr:`taken`.

        Args:
            type_name: a type not in the map.

        Returns:
            The group for its ``Assign``.

        Raises:
            AddressSpaceExhausted: no group is free for it.
        """
        for group, (name, _) in self._reserved.items():
            if name == type_name:
                return group
        return allocate(type_name, _Blocked(self._owner, self._reserved, type_name))

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

    def slot_for(self, type_name: str) -> int:
        """Return the slot to propose an ``Assign`` of an unplaced type in.

        The lowest free slot, except for a type taken off by a ``Retire`` decided above
        a hole: an ``Assign`` in the hole would fold *before* that ``Retire`` and stay
        retired, so it goes in the first free slot after the ``Retire`` instead (a
        forger's ``Retire`` far up the slot window would otherwise keep a published
        type off the map until every hole below it was filled, one attempt each).

        Args:
            type_name: a type not in the map.

        Returns:
            A slot with no known decided value.
        """
        slot = self.first_free_slot()
        after = self._retired_at.get(type_name)
        if after is not None and after >= slot:
            slot = after + 1
            while slot in self._slots:
                slot += 1
        return slot

    def replaces(self, entry: Entry) -> bool:
        """Tell whether adding ``entry`` would move a type that already has a group.

        An entry that folds after every known one never does (an ``Assign`` of a placed
        type is a no-op, a ``Move`` only records, a ``Retire`` removes but moves
        nothing); one that sorts earlier is checked by folding a copy, O(n) (a hole in
        the log is rare, and each is filled only once). For such an entry, taking a
        type off the map counts as moving it.

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
            return self._apply(entry)
        bisect.insort(self._order, entry)
        return self._refold()

    # -- private -------------------------------------------------------------------

    def _apply(self, entry: Entry) -> list[MapChange]:
        slot, value = entry
        self._pos += 1
        self._expire()
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
            blocked = _Blocked(self._owner, self._reserved, name)
            if group in blocked:
                try:
                    group = allocate(name, blocked)
                except AddressSpaceExhausted:
                    return []
            self._place(name, group)
            return [MapChange(type_name=name, old=None, new=group)]
        if isinstance(cmd, Retire):
            if before != cmd.group:
                return []
            del self._groups[name]
            del self._owner[cmd.group]
            self._moved_from.pop(name, None)
            self._retired_at[name] = slot
            release = self._pos + GRACE_ENTRIES
            self._reserved[cmd.group] = (name, release)
            self._expiry.append((release, cmd.group))
            return [MapChange(type_name=name, old=cmd.group, new=None)]
        assert isinstance(cmd, Move)
        if before == cmd.new:
            self._moved_from[name] = cmd.old
        return []

    def _expire(self) -> None:
        # Positions only grow, so the queue is in release order; an entry is stale when
        # the type took its group back or the group was retired again since.
        while self._expiry and self._expiry[0][0] <= self._pos:
            release, group = self._expiry.popleft()
            held = self._reserved.get(group)
            if held is not None and held[1] == release:
                del self._reserved[group]

    def _place(self, name: str, group: IPv4Address) -> None:
        held = self._reserved.get(group)
        if held is not None and held[0] == name:
            del self._reserved[group]  # the retired type came back to its own group
        self._groups[name] = group
        self._owner[group] = name
        self._retired_at.pop(name, None)

    def _refold(self) -> list[MapChange]:
        before = dict(self._groups)
        self._groups.clear()
        self._owner.clear()
        self._moved_from.clear()
        self._reserved.clear()
        self._expiry.clear()
        self._pos = 0
        self._retired_at.clear()
        for entry in self._order:
            self._apply(entry)
        changes = []
        for name in sorted(set(self._groups) | set(before)):
            new = self._groups.get(name)
            old = before.get(name)
            if old != new:
                changes.append(MapChange(type_name=name, old=old, new=new))
        return changes


class _Blocked(Collection[IPv4Address]):
    """The groups a type may not be placed on: held, or reserved for another type."""

    __slots__ = ("_for", "_owner", "_reserved")

    def __init__(self, owner: Mapping[IPv4Address, str],
                 reserved: Mapping[IPv4Address, tuple[str, int]], for_type: str | None) -> None:
        self._owner = owner
        self._reserved = reserved
        self._for = for_type

    def __contains__(self, group: object) -> bool:
        if group in self._owner:
            return True
        held = self._reserved.get(group)  # type: ignore[call-overload]
        return held is not None and held[0] != self._for

    def __iter__(self) -> Iterator[IPv4Address]:
        yield from self._owner
        for group, (name, _) in self._reserved.items():
            if name != self._for:
                yield group

    def __len__(self) -> int:
        return len(self._owner) + sum(1 for name, _ in self._reserved.values() if name != self._for)
