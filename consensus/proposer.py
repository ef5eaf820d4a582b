"""One proposer attempt: a ballot in one slot, and the quorum counting it needs.

Theory of operation ("Paxos Made Simple" section 2.2): an attempt picks a slot and a
fresh ballot, gathers ``Promise`` replies from a quorum (phase 1), then proposes the
value of the highest-numbered proposal any of them reported, or its own value if none
did, and gathers ``Accepted`` replies from a quorum (phase 2). When phase 2 completes
the value is chosen. An attempt is volatile: a crash forgets it, which is safe because
an abandoned ballot is simply never completed.

A quorum is a strict majority of the caller's live membership view *including this
node*: ``len(view) // 2 + 1``. A half is never a majority, so a tie never decides.
Replies from nodes outside the view (observers, strangers) never count.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from consensus.messages import Ballot, Promise

__all__ = ["Attempt", "quorum_size"]


def quorum_size(view_size: int) -> int:
    """Return the strict-majority quorum for a view of ``view_size`` members (>= 1)."""
    return view_size // 2 + 1


@dataclass(slots=True, kw_only=True)
class Attempt:
    """A proposer's attempt to get a value chosen in ``slot`` at ``ballot``."""

    slot: int
    ballot: Ballot
    own: bytes
    deadline: int
    value: bytes | None = None  # set when phase 2 starts
    promises: dict[int, Promise] = field(default_factory=dict)
    accepted: set[int] = field(default_factory=set)

    @property
    def in_phase2(self) -> bool:
        """True once the attempt has sent ``Accept``."""
        return self.value is not None

    def promise_quorum(self, view: Collection[int]) -> bool:
        """Tell whether promises from a quorum of ``view`` are in (phase 1 complete)."""
        return self._count(self.promises, view) >= quorum_size(len(view))

    def accept_quorum(self, view: Collection[int]) -> bool:
        """Tell whether acceptances from a quorum of ``view`` are in (value chosen)."""
        return self.in_phase2 and self._count(self.accepted, view) >= quorum_size(len(view))

    def choose_value(self) -> bytes:
        """Return the value phase 2 must propose (section 2.2, rule P2c)."""
        best: tuple[Ballot, bytes] | None = None
        for promise in self.promises.values():
            if promise.accepted_ballot is None or promise.accepted_value is None:
                continue
            if best is None or promise.accepted_ballot > best[0]:
                best = (promise.accepted_ballot, promise.accepted_value)
        return self.own if best is None else best[1]

    @staticmethod
    def _count(senders: Collection[int], view: Collection[int]) -> int:
        return sum(1 for s in senders if s in view)
