"""What a node hands its caller after some input: ``Ready`` and ``Outbound``.

Theory of operation (raft ``node.go``'s ``Ready``): after stepping messages or ticking,
the caller asks the node for a :class:`Ready`, performs its effects *in this order*, and
then calls ``advance``:

1. append ``rd.to_persist`` to stable storage and flush it, then call
   ``rd.mark_persisted()``;
2. send every envelope in ``rd.outbox``;
3. apply ``rd.changes`` (join / leave multicast groups) and read ``rd.decided``;
4. ``node.advance(rd)``.

Step 1 before step 2 is what makes a promise survive a crash: an acceptor's ``Promise``
leaves the node only after the record of that promise is durable. The order is
enforced: reading ``rd.outbox`` while records are waiting to be persisted raises
:class:`~consensus.errors.PersistOrderError`, and so does ``advance``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from consensus.errors import PersistOrderError
from consensus.groupmap import Entry, MapChange
from consensus.journal import JournalRecord
from consensus.messages import Message

__all__ = ["Outbound", "Ready"]


@dataclass(frozen=True, slots=True)
class Outbound:
    """A message and where to send it: a node id, or None for every node (broadcast)."""

    to: int | None
    msg: Message

    def describe(self) -> str:
        """Return one line: the message and its destination."""
        dest = "*" if self.to is None else str(self.to)
        return f"{self.msg.describe()} -> {dest}"


class Ready:
    """The effects of the input since the previous ``Ready``; see the module docstring.

    Attributes:
        to_persist: journal records to make durable BEFORE any message is sent.
        changes: how the type -> group map changed (join the new group; during a move
            listen on both old and new).
        decided: ``(slot, value)`` entries newly learned as decided, in learning order.
    """

    __slots__ = ("_outbox", "_persisted", "changes", "decided", "to_persist")

    def __init__(
        self,
        *,
        to_persist: Sequence[JournalRecord],
        outbox: Sequence[Outbound],
        changes: Sequence[MapChange],
        decided: Sequence[Entry],
    ) -> None:
        self.to_persist: tuple[JournalRecord, ...] = tuple(to_persist)
        self._outbox: tuple[Outbound, ...] = tuple(outbox)
        self.changes: tuple[MapChange, ...] = tuple(changes)
        self.decided: tuple[Entry, ...] = tuple(decided)
        self._persisted = not self.to_persist

    @property
    def persisted(self) -> bool:
        """True when there was nothing to persist or :meth:`mark_persisted` was called."""
        return self._persisted

    def mark_persisted(self) -> None:
        """Declare that ``to_persist`` is on stable storage; unlocks :attr:`outbox`."""
        self._persisted = True

    @property
    def outbox(self) -> tuple[Outbound, ...]:
        """The messages to send, available only once ``to_persist`` is durable.

        Raises:
            PersistOrderError: ``to_persist`` is not empty and not yet marked persisted.
        """
        if not self._persisted:
            raise PersistOrderError("persist rd.to_persist and call rd.mark_persisted() first")
        return self._outbox

    def is_empty(self) -> bool:
        """True when this ``Ready`` asks the caller to do nothing."""
        return not (self.to_persist or self._outbox or self.changes or self.decided)

    def describe(self) -> str:
        """Return a multi-line summary for traces."""
        lines = [f"persist {len(self.to_persist)} record(s)"] if self.to_persist else []
        lines += [f"send {env.describe()}" for env in self._outbox]
        lines += [f"map {change.describe()}" for change in self.changes]
        return "\n".join(lines)
