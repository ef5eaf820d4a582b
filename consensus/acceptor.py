"""The acceptor role: per-slot promises and acceptances ("Paxos Made Simple" 2.2-2.3).

Theory of operation: for each log slot the acceptor remembers the highest ballot it
promised and the last ``(ballot, value)`` it accepted. It answers a ``Prepare`` with a
``Promise`` (reporting what it accepted) unless it promised a higher ballot, and an
``Accept`` with ``Accepted`` unless it promised a higher ballot; a refused request gets a
``Nack`` so the proposer can give up early. Each answer that changes state comes with
the :mod:`~consensus.journal` record that must be durable before the answer leaves the
node; :class:`~consensus.node.PaxosNode` puts both in the same ``Ready``, whose contract
is "persist, then send". A restarted acceptor is rebuilt from those records, so it never
breaks a promise it made.

Once the node has learned a slot's decision it stops acting as acceptor for that slot
(:meth:`Acceptor.forget`): the node answers requests for it with the decision instead.
"""

from __future__ import annotations

from consensus.journal import AcceptedRecord, DurableState, JournalRecord, Promised
from consensus.messages import Accept, Accepted, Ballot, Message, Nack, Prepare, Promise

__all__ = ["Acceptor"]


class Acceptor:
    """Promise and acceptance state of one node, per slot."""

    __slots__ = ("_accepted", "_id", "_promised")

    def __init__(self, node_id: int, durable: DurableState | None = None) -> None:
        self._id = node_id
        self._promised: dict[int, Ballot] = dict(durable.promised) if durable else {}
        self._accepted: dict[int, tuple[Ballot, bytes]] = dict(durable.accepted) if durable else {}

    def promised(self, slot: int) -> Ballot | None:
        """Return the highest ballot promised in ``slot``, if any."""
        return self._promised.get(slot)

    def accepted(self, slot: int) -> tuple[Ballot, bytes] | None:
        """Return the last ``(ballot, value)`` accepted in ``slot``, if any."""
        return self._accepted.get(slot)

    def slots(self) -> list[int]:
        """Return the slots with acceptor state, sorted."""
        return sorted(self._promised)

    def on_prepare(self, msg: Prepare) -> tuple[Message, JournalRecord | None]:
        """Answer phase 1a.

        Args:
            msg: the proposer's ``Prepare``.

        Returns:
            The reply (``Promise`` or ``Nack``) and the record to persist before sending
            it, or None when nothing changed (a duplicate, or a refusal).
        """
        current = self._promised.get(msg.slot)
        if current is not None and msg.ballot < current:
            return Nack(sender=self._id, slot=msg.slot, ballot=msg.ballot, promised=current), None
        record: JournalRecord | None = None
        if current != msg.ballot:
            self._promised[msg.slot] = msg.ballot
            record = Promised(slot=msg.slot, ballot=msg.ballot)
        prior = self._accepted.get(msg.slot)
        reply = Promise(
            sender=self._id,
            slot=msg.slot,
            ballot=msg.ballot,
            accepted_ballot=None if prior is None else prior[0],
            accepted_value=None if prior is None else prior[1],
        )
        return reply, record

    def on_accept(self, msg: Accept) -> tuple[Message, JournalRecord | None]:
        """Answer phase 2a.

        Args:
            msg: the proposer's ``Accept``.

        Returns:
            The reply (``Accepted`` or ``Nack``) and the record to persist before sending
            it, or None when nothing changed.
        """
        current = self._promised.get(msg.slot)
        if current is not None and msg.ballot < current:
            return Nack(sender=self._id, slot=msg.slot, ballot=msg.ballot, promised=current), None
        record: JournalRecord | None = None
        if self._accepted.get(msg.slot) != (msg.ballot, msg.value):
            self._promised[msg.slot] = msg.ballot
            self._accepted[msg.slot] = (msg.ballot, msg.value)
            record = AcceptedRecord(slot=msg.slot, ballot=msg.ballot, value=msg.value)
        return Accepted(sender=self._id, slot=msg.slot, ballot=msg.ballot), record

    def forget(self, slot: int) -> None:
        """Drop the state of a slot whose decision the node has learned."""
        self._promised.pop(slot, None)
        self._accepted.pop(slot, None)

    def records(self) -> list[JournalRecord]:
        """Return records that rebuild this acceptor's state (for journal compaction)."""
        out: list[JournalRecord] = []
        for slot in sorted(self._promised):
            out.append(Promised(slot=slot, ballot=self._promised[slot]))
            prior = self._accepted.get(slot)
            if prior is not None:
                out.append(AcceptedRecord(slot=slot, ballot=prior[0], value=prior[1]))
        return out

    def state_key(self) -> tuple[tuple[int, Ballot, tuple[Ballot, bytes] | None], ...]:
        """Return a canonical, hashable form of the state."""
        return tuple((s, self._promised[s], self._accepted.get(s)) for s in sorted(self._promised))
