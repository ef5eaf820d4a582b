"""What the control channel does for others, and how often (docs/protocol.md, section 7.3).

Theory of operation: a ``ProposeRequest`` makes this node run agreement for a type
someone else named, and a ``CatchUpRequest`` makes it send its whole map. Without a
network key any host on the LAN can send either under any node id, so
:class:`RequestBudget` decides which to serve:

* only requests from node ids in the membership table (which is bounded and admits
  new ids at a bounded rate), so a forger cannot mint a fresh budget per datagram;
* within token buckets (:mod:`ganglion.ratelimit`): proposals per requester id,
  per source address and in total; catch-up answers per requester and in total.
  Per-key buckets give fairness, the totals bound what many requesters get.

A ``LastValueRequest`` makes every publisher of the type multicast its latest
message, one per key of a keyed type (one per sensor): answers are limited per
requester and in total too, one token per answer (so a request for a type with
many keys costs what that many requests would), but a requester need not be known
yet (a tool that just started asks before its first heartbeat is heard). A
``SchemaRequest`` (a type's self-description) is budgeted the same way.

Every refusal is counted in :attr:`RequestBudget.counts` as ``<kind>_unknown`` or
``<kind>_rate_limited`` (kind ``propose``, ``catchup`` or ``last_value``), every
catch-up served as ``catchup_answered``.

:class:`UnicastChoice` decides where a catch-up answer goes: to the requester's
address alone when that reaches it (see :meth:`Membership.address_of
<ganglion.membership.Membership.address_of>`), except right after a unicast
answer to the same requester: asking again that soon says the unicast went astray
(another program on its host may hold the control port), so that answer goes to
the group.

Pure: time is an argument; nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from ganglion import defaults
from ganglion.ratelimit import KeyedBuckets, TokenBucket

__all__ = ["UNICAST_RETRY_SECONDS", "RequestBudget", "UnicastChoice"]

#: Seconds after a unicast answer during which the next answer to the same
#: requester goes to the group.
UNICAST_RETRY_SECONDS = 5.0

#: ``known(node_id)``: whether the membership table holds this node id.
Known = Callable[[bytes], bool]


class RequestBudget:
    """Which proposal and catch-up requests to serve.

    Args:
        known: whether a node id is in the membership table.
        max_keys: per-key bucket tables hold at most this many keys each.
    """

    def __init__(self, known: Known, *, max_keys: int = defaults.RATE_TABLE_KEYS) -> None:
        self._known = known
        #: Refusals and answers, by name.
        self.counts: collections.Counter[str] = collections.Counter()
        self._propose_by_requester: KeyedBuckets[bytes] = KeyedBuckets(
            *defaults.PROPOSE_PER_REQUESTER, max_keys=max_keys)
        self._propose_by_source: KeyedBuckets[str] = KeyedBuckets(
            *defaults.PROPOSE_PER_SOURCE, max_keys=max_keys)
        self._propose_total = TokenBucket(*defaults.PROPOSE_TOTAL, now=0.0)
        self._catchup_by_requester: KeyedBuckets[bytes] = KeyedBuckets(
            *defaults.CATCHUP_PER_REQUESTER, max_keys=max_keys)
        self._catchup_total = TokenBucket(*defaults.CATCHUP_TOTAL, now=0.0)
        self._last_value_by_requester: KeyedBuckets[bytes] = KeyedBuckets(
            *defaults.LAST_VALUE_PER_REQUESTER, max_keys=max_keys)
        self._last_value_total = TokenBucket(*defaults.LAST_VALUE_TOTAL, now=0.0)
        self._schema_by_requester: KeyedBuckets[bytes] = KeyedBuckets(
            *defaults.SCHEMA_PER_REQUESTER, max_keys=max_keys)
        self._schema_total = TokenBucket(*defaults.SCHEMA_TOTAL, now=0.0)

    def allow_propose(self, requester: bytes, source: str, now: float) -> bool:
        """Whether to act on a ``ProposeRequest`` (a type without a group yet).

        Args:
            requester: the node id of the datagram that carried it.
            source: the IPv4 address it came from.
            now: the current time (a monotonic clock, seconds).

        Returns:
            True to serve it; a refusal is counted.
        """
        if not self._known(requester):
            self.counts["propose_unknown"] += 1
            return False
        # Short-circuit: a request refused per requester costs the others nothing.
        if (self._propose_by_requester.take(requester, now)
                and self._propose_by_source.take(source, now)
                and self._propose_total.take(now)):
            return True
        self.counts["propose_rate_limited"] += 1
        return False

    def allow_catchup(self, requester: bytes, now: float) -> bool:
        """Whether to answer a ``CatchUpRequest`` addressed to this node.

        Args:
            requester: the node id of the datagram that carried it.
            now: the current time.

        Returns:
            True to answer it; an answer or a refusal is counted.
        """
        if not self._known(requester):
            self.counts["catchup_unknown"] += 1
            return False
        if self._catchup_by_requester.take(requester, now) and self._catchup_total.take(now):
            self.counts["catchup_answered"] += 1
            return True
        self.counts["catchup_rate_limited"] += 1
        return False

    def allow_last_value(self, requester: bytes, now: float) -> bool:
        """Whether to answer a ``LastValueRequest`` with this node's latest message.

        Args:
            requester: the node id of the datagram that carried it.
            now: the current time.

        Returns:
            True to answer it; a refusal is counted (``last_value_rate_limited``).
        """
        return self.allow_last_values(requester, now, 1) == 1

    def allow_last_values(self, requester: bytes, now: float, wanted: int) -> int:
        """How many of ``wanted`` answers to one ``LastValueRequest`` to send (one per key).

        Args:
            requester: the node id of the datagram that carried it.
            now: the current time.
            wanted: the answers this node has (its latest message per key).

        Returns:
            0..``wanted``: one token of each budget per answer; the answers refused are
            counted (``last_value_rate_limited``).
        """
        allowed = 0
        while allowed < wanted and self._last_value_by_requester.take(requester, now) \
                and self._last_value_total.take(now):
            allowed += 1
        if allowed < wanted:
            self.counts["last_value_rate_limited"] += wanted - allowed
        return allowed

    def allow_schema(self, requester: bytes, now: float) -> bool:
        """Whether to answer a ``SchemaRequest`` with this node's schema of a type.

        Like last values, a requester need not be known yet (a tool asks at start).

        Returns:
            True to answer; a refusal is counted (``schema_rate_limited``).
        """
        if self._schema_by_requester.take(requester, now) and self._schema_total.take(now):
            return True
        self.counts["schema_rate_limited"] += 1
        return False

    @property
    def evicted(self) -> int:
        """Keys dropped from a full per-key table while still in use (``rate_keys_evicted``)."""
        return (self._propose_by_requester.evicted + self._propose_by_source.evicted
                + self._catchup_by_requester.evicted + self._last_value_by_requester.evicted
                + self._schema_by_requester.evicted)


class UnicastChoice:
    """Where each catch-up answer goes: an address, or the group (None).

    Args:
        max_keys: requesters remembered at most (oldest forgotten first).
        retry_seconds: see :data:`UNICAST_RETRY_SECONDS`.
    """

    def __init__(self, *, max_keys: int = defaults.RATE_TABLE_KEYS,
                 retry_seconds: float = UNICAST_RETRY_SECONDS) -> None:
        self._max_keys = max_keys
        self._retry = retry_seconds
        self._last: collections.OrderedDict[int, float] = collections.OrderedDict()

    def address(self, to: int, address: str | None, now: float) -> str | None:
        """Choose the destination of one answer to node ``to``.

        Args:
            to: the requester's node id.
            address: where a unicast reaches it alone, or None (unknown, shared).
            now: the current time.

        Returns:
            ``address`` for a unicast, or None for the group.
        """
        if address is None:
            return None
        last = self._last.pop(to, None)
        if last is not None and now - last < self._retry:
            return None  # asked again soon after a unicast answer: use the group
        self._last[to] = now
        while len(self._last) > self._max_keys:
            self._last.popitem(last=False)
        return address
