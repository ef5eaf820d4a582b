"""What an endpoint listens to: its local subscriptions and the groups they join.

Theory of operation: each type has one multicast group, known from
:meth:`Listening.set_group` (the agreed map in a node) or else asked of
``group_for`` once and kept (:meth:`Listening.group`; None while it is not known
yet). Both the publish side (where to send) and the receive side (what to join)
read it here.

* The first local subscriber of a type joins its group; the last one to close
  leaves it and forgets where the senders' sequences were, so the next subscription
  starts a fresh baseline (senders may stop sending while nobody here listens, and
  that pause must not count as loss). ``on_subscriptions(type_name, subscribed)``
  is told of both, so a node can tell its peers.
* When a type's group moves, subscribers join the new group at once and keep
  listening on the old one for ``move_grace`` seconds, so readings from publishers
  that have not learned of the move yet still arrive (the sequence tracker drops any
  duplicate); a retired type's group (:meth:`Listening.clear_group`) is left after
  the same grace. Moving back within the grace cancels the leave.

The receiver reference-counts its memberships; this module keeps, per type, the
groups joined for it, so a type is never joined twice nor left twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from ipaddress import IPv4Address

from ganglion.runtime._sockets import validate_group
from ganglion.runtime.subscription import Callback, Subscription
from ganglion.runtime.transport import MulticastReceiver
from ganglion.sequence import SequenceTable

__all__ = ["DEFAULT_MOVE_GRACE", "GroupFor", "Listening", "SubscriptionsChanged"]

#: Seconds subscribers keep listening on a type's old group after it moved.
DEFAULT_MOVE_GRACE = 10.0

#: Maps a type name to its group; None while the group is not known yet (publishes
#: wait in a bounded queue, subscriptions join once :meth:`Listening.set_group` runs).
GroupFor = Callable[[str], "str | IPv4Address | None"]
#: Told ``(type_name, True)`` when a type gets its first local subscriber and
#: ``(type_name, False)`` when its last one closes.
SubscriptionsChanged = Callable[[str, bool], None]


class Listening:
    """The groups of the types, and the local subscribers listening on them.

    Args:
        group_for: a type's group when :meth:`set_group` has not said.
        subs: the local subscribers per type name (shared with the receive side,
            which delivers to them, and the publish side, which delivers too).
        sequences: the receive side's sequence trackers (rebased per type when its
            last subscriber leaves).
        move_grace: seconds to keep listening on a type's old group after a move.
        on_subscriptions: told when a type gets its first subscriber or loses its last.

    Attributes:
        groups: the group of each type resolved so far.
        receiver: the receive sockets while the endpoint is started, else None.
    """

    def __init__(self, *, group_for: GroupFor, subs: dict[str, list[Subscription]],
                 sequences: SequenceTable, move_grace: float = DEFAULT_MOVE_GRACE,
                 on_subscriptions: SubscriptionsChanged | None = None) -> None:
        self.groups: dict[str, str] = {}
        self.receiver: MulticastReceiver | None = None
        self._group_for = group_for
        self._subs = subs
        self._sequences = sequences
        self._move_grace = move_grace
        self._on_subscriptions = on_subscriptions
        self._joined: dict[str, set[str]] = {}  # type -> groups joined for it
        self._move_timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._queue_dropped_closed = 0

    def group(self, type_name: str) -> str | None:
        """The type's group, resolved once; None while it is not known.

        Raises:
            ConfigError: ``group_for`` maps the type to an address that is not multicast.
        """
        group = self.groups.get(type_name)
        if group is None:
            found = self._group_for(type_name)
            if found is None:
                return None
            group = self.groups[type_name] = validate_group(str(found))
        return group

    def subscribe(self, name: str, callback: Callback | None, maxsize: int) -> Subscription:
        """A new local subscription to ``name``; the first one joins the type's group."""
        sub = Subscription(name, callback=callback, maxsize=maxsize, on_close=self._unsubscribe)
        subs = self._subs.setdefault(name, [])
        first = not subs
        if first:
            group = self.group(name)
            if group is not None:
                self._join(name, group)
        subs.append(sub)
        if first and self._on_subscriptions is not None:
            self._on_subscriptions(name, True)
        return sub

    def set_group(self, type_name: str, group: str | IPv4Address) -> None:
        """``type_name`` uses ``group`` from now on: subscribers join it, and leave the
        old one after the grace period.

        Raises:
            ConfigError: ``group`` is not a multicast address.
        """
        group = validate_group(str(group))
        old = self.groups.get(type_name)
        self.groups[type_name] = group
        if self._subs.get(type_name) and self.receiver is not None:
            self._join(type_name, group)
            if old is not None and old != group:
                self._schedule_leave(type_name, old)

    def clear_group(self, type_name: str) -> None:
        """``type_name`` has no group any more: its groups are left after the grace period."""
        old = self.groups.pop(type_name, None)
        if old is not None and self.receiver is not None:
            for group in list(self._joined.get(type_name, ())):
                self._schedule_leave(type_name, group)

    def subscribed(self) -> frozenset[str]:
        """Type names with at least one local subscriber."""
        return frozenset(name for name, subs in self._subs.items() if subs)

    def queue_dropped(self) -> int:
        """Messages slow ``async for`` subscribers lost, closed ones included."""
        return self._queue_dropped_closed + sum(
            sub.dropped for subs in self._subs.values() for sub in subs)

    def close(self) -> None:
        """Cancel the pending leaves and close every subscription."""
        for handle in self._move_timers.values():
            handle.cancel()
        self._move_timers.clear()
        for subs in list(self._subs.values()):
            for sub in list(subs):
                sub.close()

    def _join(self, type_name: str, group: str) -> None:
        assert self.receiver is not None
        joined = self._joined.setdefault(type_name, set())
        if group not in joined:
            self.receiver.join(group)  # reference-counted by the receiver
            joined.add(group)
        timer = self._move_timers.pop((type_name, group), None)
        if timer is not None:
            timer.cancel()  # moved back before the grace period ended

    def _leave(self, type_name: str, group: str) -> None:
        self._move_timers.pop((type_name, group), None)
        joined = self._joined.get(type_name)
        if joined and group in joined:
            joined.discard(group)
            if self.receiver is not None:
                self.receiver.leave(group)

    def _schedule_leave(self, type_name: str, group: str) -> None:
        key = (type_name, group)
        if key not in self._move_timers:
            loop = asyncio.get_running_loop()
            self._move_timers[key] = loop.call_later(self._move_grace, self._leave,
                                                     type_name, group)

    def _unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.type_name)
        if not subs or sub not in subs:
            return
        subs.remove(sub)
        self._queue_dropped_closed += sub.dropped
        if not subs:
            for group in list(self._joined.get(sub.type_name, ())):
                self._leave(sub.type_name, group)
            # Senders may stop sending while nobody here listens (matching): the
            # next subscription must not count that pause as loss.
            self._sequences.rebase(sub.type_name)
            if self._on_subscriptions is not None:
                self._on_subscriptions(sub.type_name, False)
