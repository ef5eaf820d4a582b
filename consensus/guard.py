"""The node's input guard: rate limits, solicited catch-ups, and the drop counters.

Theory of operation: :class:`~consensus.node.PaxosNode` asks its :class:`InputGuard`
before it lets a peer's request cost it something (queue a type, stream its entries,
add an entry to its map). Each refusal is *counted* under a named reason and the input
dropped; nothing here raises. The counters are the node's record of hostile or broken
input (``PaxosNode.counters``); the runtime reports them.

Reasons counted (``docs/consensus.md``, "Hostile input", has the whole table):
``forged_self``, ``implausible_round``, ``implausible_slot``, ``rounds_exhausted``,
``propose_rate_limited``, ``propose_total_rate_limited``, ``propose_queue_full``,
``catchup_rate_limited``, ``catchup_total_rate_limited``, ``catchup_unsolicited``,
``commit_stranger``, ``commit_conflict``, ``commit_replaces``, ``learn_rate_limited``,
``journal_implausible``, and ``requesters_evicted`` (table evictions, not drops).

Pure and deterministic: time is the node's tick count, passed in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from consensus.limits import KeyedRateLimiter, Limits, RateLimiter

__all__ = ["InputGuard"]


class InputGuard:
    """Rate limits and bookkeeping of one node (see the module docstring)."""

    __slots__ = (
        "_asked", "_catchup_each", "_catchup_total", "_counts", "_learn", "_limits",
        "_propose_each", "_propose_total",
    )

    def __init__(self, limits: Limits, catchup_ticks: int) -> None:
        """Build the guard.

        Args:
            limits: the node's rate limits and table sizes.
            catchup_ticks: one requester is answered at most once per this many ticks.
        """
        lim = limits
        self._limits = lim
        self._counts: Counter[str] = Counter()
        self._propose_each = KeyedRateLimiter(lim.propose_burst, lim.propose_every, lim.requesters)
        self._propose_total = RateLimiter(lim.propose_total_burst, lim.propose_total_every)
        self._catchup_each = KeyedRateLimiter(1, catchup_ticks, lim.requesters)
        self._catchup_total = RateLimiter(lim.catchup_total_burst, lim.catchup_total_every)
        self._learn = RateLimiter(lim.learn_burst, lim.learn_every)
        self._asked: dict[int, int] = {}  # peer -> last tick its catch-up reply is welcome

    @property
    def counters(self) -> Mapping[str, int]:
        """Drops (and evictions) so far, by reason."""
        evicted = self._propose_each.evicted + self._catchup_each.evicted
        if evicted:
            return {**self._counts, "requesters_evicted": evicted}
        return self._counts

    def count(self, reason: str, n: int = 1) -> None:
        """Count ``n`` inputs dropped for ``reason``."""
        self._counts[reason] += n

    def admit_propose(self, sender: int, now: int, pending: int) -> bool:
        """Tell whether a peer may queue one more new type; count the refusal.

        Args:
            sender: the requester's id.
            now: the current tick.
            pending: how many types the node already wants.

        Returns:
            True when the type may be queued.
        """
        lim = self._limits
        if not lim.enabled:
            return True
        if pending >= lim.max_pending:
            return self._refuse("propose_queue_full")
        if not self._propose_each.admit(sender, now):
            return self._refuse("propose_rate_limited")
        if not self._propose_total.admit(now):
            return self._refuse("propose_total_rate_limited")
        return True

    def admit_catchup_answer(self, sender: int, now: int) -> bool:
        """Tell whether to answer ``sender``'s catch-up request now; count the refusal."""
        if not self._limits.enabled:
            return True
        if not self._catchup_each.admit(sender, now):
            return self._refuse("catchup_rate_limited")
        if not self._catchup_total.admit(now):
            return self._refuse("catchup_total_rate_limited")
        return True

    def admit_learn(self, now: int) -> bool:
        """Tell whether one more entry from a peer may be learned now; count the refusal."""
        if not self._limits.enabled or self._learn.admit(now):
            return True
        return self._refuse("learn_rate_limited")

    def note_asked(self, peer: int, until: int, now: int) -> None:
        """Remember that this node asked ``peer`` for a catch-up, welcome until ``until``."""
        # Requests leave at most once per catchup_ticks, so after pruning what expired
        # the table holds a handful of peers.
        for key in [k for k, t in self._asked.items() if t < now]:
            del self._asked[key]
        self._asked[peer] = until

    def was_asked(self, peer: int, now: int) -> bool:
        """Tell whether a catch-up reply from ``peer`` answers a request of ours; count if not."""
        if self._asked.get(peer, -1) >= now:
            return True
        return self._refuse("catchup_unsolicited")

    def copy(self) -> InputGuard:
        """Return an independent copy (for ``PaxosNode.clone``)."""
        new = InputGuard.__new__(InputGuard)
        new._limits = self._limits
        new._counts = Counter(self._counts)
        new._propose_each = self._propose_each.copy()
        new._propose_total = self._propose_total.copy()
        new._catchup_each = self._catchup_each.copy()
        new._catchup_total = self._catchup_total.copy()
        new._learn = self._learn.copy()
        new._asked = dict(self._asked)
        return new

    def state_key(self, now: int) -> tuple[Any, ...]:
        """Return everything that shapes future behaviour, relative to ``now`` (no counters)."""
        asked = tuple(sorted((p, t - now) for p, t in self._asked.items() if t >= now))
        if not self._limits.enabled:
            return (asked,)
        return (
            asked,
            self._propose_each.state_key(now),
            self._propose_total.state_key(now),
            self._catchup_each.state_key(now),
            self._catchup_total.state_key(now),
            self._learn.state_key(now),
        )

    def _refuse(self, reason: str) -> bool:
        self._counts[reason] += 1
        return False
