"""What a node accepts from the network: plausibility bounds and rate limits.

Theory of operation: without a network key anyone on the LAN can send any consensus
message under any node id, so the state machine must not let one message (or a flood
of them) wedge it, grow its tables without bound, or change the map faster than a
person could notice. This module holds the numbers and the two small mechanisms the
node's boundary checks use (see ``docs/consensus.md``, "Hostile input"):

* **Plausible rounds.** A ballot round is refused when it is above :data:`MAX_ROUND`
  (2**62) or more than :data:`ROUND_STEP` (2**16) above the highest round this node has
  used or seen. Honest rounds grow by one per attempt over the highest round anyone saw,
  so they never jump; a node that really is behind (it slept while the network ran
  65,536 attempts) catches up by ``ROUND_STEP`` per refused message. Reaching
  ``MAX_ROUND`` from 0 therefore takes at least 2**46 forged messages (years at 100,000
  a second), and ``MAX_ROUND`` itself leaves 2**62 rounds of headroom below the wire
  limit, so ``round + 1`` never overflows what :class:`~consensus.messages.Ballot` can
  carry.
* **Plausible slots.** Acceptor state and learned entries are accepted only for slots
  below ``first free slot + SLOT_WINDOW``: a node never holds promises for more than
  :data:`SLOT_WINDOW` undecided slots, whatever slot numbers a peer invents.
* **Rate limits** (:class:`Limits`): token buckets (GCRA, one integer per bucket,
  time in ticks) for the new types one requester may queue, for all remote requesters
  together, for catch-up answers, and for entries learned from other nodes. Per-requester
  buckets live in a bounded table evicted least-recently-used (:class:`KeyedRateLimiter`);
  since an attacker can cycle through ids to get fresh buckets, every per-requester limit
  is backed by a global one.

Pure: time is the caller's tick count; nothing here reads a clock.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

from consensus.errors import InvalidConfig

__all__ = [
    "MAX_ROUND",
    "ROUND_STEP",
    "SLOT_WINDOW",
    "KeyedRateLimiter",
    "Limits",
    "RateLimiter",
]

MAX_ROUND = 2**62
ROUND_STEP = 2**16
SLOT_WINDOW = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Rate limits and table sizes of one node; validated when built.

    A bucket ``(burst, every)`` admits ``burst`` events at once and one more every
    ``every`` ticks. With the runtime's 50 ms tick the defaults are: one requester may
    ask for 8 new types at once and 5 a second after that, all remote requesters
    together 32 and 10 a second, and the leader queues at most 16 types for peers
    (a requester whose type was refused asks again every ``retry_ticks``); a node answers one catch-up request per requester per
    ``Config.catchup_ticks`` and at most 4 at once, 4 a second, in all; it learns 1,024
    entries from peers at once and then 5 a second.

    Attributes:
        enabled: False turns every rate limit off (the exhaustive search does this: a
            refused message is indistinguishable from a lost one, which it covers).
        requesters: size of each per-requester table (LRU-evicted).
        propose_burst: new types one requester may queue at once.
        propose_every: ticks per further new type from one requester.
        propose_total_burst: new types all remote requesters may queue at once.
        propose_total_every: ticks per further new type from all remote requesters.
        max_pending: types the leader queues for peers; requests beyond are dropped.
        catchup_total_burst: catch-up requests answered at once (all requesters).
        catchup_total_every: ticks per further catch-up answer (all requesters).
        learn_burst: entries learned from peers at once (Commit and catch-up).
        learn_every: ticks per further entry learned from peers.
    """

    enabled: bool = True
    requesters: int = 1024
    propose_burst: int = 8
    propose_every: int = 4
    propose_total_burst: int = 32
    propose_total_every: int = 2
    max_pending: int = 16
    catchup_total_burst: int = 4
    catchup_total_every: int = 5
    learn_burst: int = 1024
    learn_every: int = 4

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "enabled":
                if type(value) is not bool:
                    raise InvalidConfig(f"limits.enabled must be a bool, got {value!r}")
            elif type(value) is not int or value < 1:
                raise InvalidConfig(f"limits.{f.name} must be an int >= 1, got {value!r}")


class RateLimiter:
    """One token bucket, as GCRA: ``burst`` events at once, one more every ``every`` ticks."""

    __slots__ = ("_every", "_slack", "_tat")

    def __init__(self, burst: int, every: int) -> None:
        self._every = every
        self._slack = (burst - 1) * every
        self._tat = 0  # theoretical arrival time of the next event, in ticks

    def admit(self, now: int) -> bool:
        """Take one token at tick ``now``.

        Args:
            now: the current tick (never decreasing).

        Returns:
            True when the event is admitted (and the token taken).
        """
        tat = max(self._tat, now)
        if tat - now > self._slack:
            return False
        self._tat = tat + self._every
        return True

    def state_key(self, now: int) -> int:
        """Return the debt relative to ``now`` (0 when full): all that shapes the future."""
        return max(0, self._tat - now)

    def copy(self) -> RateLimiter:
        """Return an independent copy."""
        new = RateLimiter.__new__(RateLimiter)
        new._every, new._slack, new._tat = self._every, self._slack, self._tat
        return new


class KeyedRateLimiter:
    """A token bucket per key (a node id) in a table of at most ``size`` keys, LRU-evicted.

    An evicted key comes back with a full bucket, which is why each use of this class
    is paired with a global :class:`RateLimiter`.
    """

    __slots__ = ("_every", "_size", "_slack", "_tat", "evicted")

    def __init__(self, burst: int, every: int, size: int) -> None:
        self._every = every
        self._slack = (burst - 1) * every
        self._size = size
        self._tat: OrderedDict[int, int] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._tat)

    def admit(self, key: int, now: int) -> bool:
        """Take one of ``key``'s tokens at tick ``now``.

        Args:
            key: the requester.
            now: the current tick (never decreasing).

        Returns:
            True when the event is admitted (and the token taken).
        """
        tat = max(self._tat.get(key, now), now)
        if tat - now > self._slack:
            self._tat.move_to_end(key)
            return False
        if key not in self._tat and len(self._tat) >= self._size:
            self._tat.popitem(last=False)
            self.evicted += 1
        self._tat[key] = tat + self._every
        self._tat.move_to_end(key)
        return True

    def state_key(self, now: int) -> tuple[tuple[int, int], ...]:
        """Return the keys still in debt and their debt relative to ``now``, sorted."""
        return tuple(sorted((k, t - now) for k, t in self._tat.items() if t > now))

    def copy(self) -> KeyedRateLimiter:
        """Return an independent copy."""
        new = KeyedRateLimiter.__new__(KeyedRateLimiter)
        new._every, new._slack, new._size = self._every, self._slack, self._size
        new._tat = OrderedDict(self._tat)
        new.evicted = self.evicted
        return new
