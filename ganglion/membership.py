"""Membership: which nodes are alive, from the heartbeats they send on the control group.

Theory of operation: every node broadcasts a heartbeat every ``interval`` seconds.
A peer is *live* while its last heartbeat is younger than ``timeout`` and it has
*proven* that it is live now (below). The live *members* (observers excluded:
short-lived tools never count in a quorum) plus this node itself form the view
handed to the consensus state machine, whose quorums are strict majorities of it.
Each peer also says which types it subscribes to; :meth:`Membership.interest` is
their union, which a publisher uses to send only what some peer wants
(publisher-side matching).

Why proof: without a network key anyone on the LAN can send heartbeats, and with
one a recording of a node that has since died can be replayed. Either way a node
that counted every id it heard would let a few datagrams grow its view (and stall
agreement: a majority of fifty ids that never answer is never reached). So a new
id is first a *candidate*: it is remembered (its subscriptions count for
matching, a wasted send is cheap, a missed one is not) but it is not in the view
and not in :meth:`Membership.peers`. It becomes live in one of two ways:

* **Echo** (docs/protocol.md, section 7.2): this node puts a random ``nonce``,
  fresh at every start, in its heartbeats and lists in ``ask`` the candidates it
  wants proof from (:meth:`Membership.ask`). A live peer that sees itself asked
  echoes the asker's nonce in its next heartbeats (:meth:`Membership.echo`). A
  heartbeat carrying this node's current nonce was sent after this node started
  and by a sender that heard it: not a recording, and not a one-shot forgery.
* **Probation**, for a peer whose heartbeats carry no nonce (an older ganglion,
  which cannot echo): heard continuously for ``legacy_probation`` seconds, at
  least three heartbeats. The caller disables it (None) where replays matter and
  every node is new enough (by default: with a network key).

Budgets (docs/security.md): at most ``max_candidates`` unproven peers (when full,
the oldest heard only once makes room; else the newcomer is refused), at most
``max_members`` live members and ``max_observers`` live observers (a proof
beyond them is refused and the peer stays a candidate), and new ids are admitted
at most ``admit_rate`` per second after a burst of ``admit_burst``. A refused
heartbeat leaves nothing behind: it is counted and dropped. Silent peers expire
after ``timeout`` and free their slot. Every refusal and eviction is counted in
:attr:`Membership.counts`.

The cost per new id is a dict insert and a token; the union of subscriptions is
kept incrementally (a counter per type name), so neither a heartbeat nor
:meth:`Membership.interest` walks the whole table.

Pure: time is an argument, nothing here reads a clock, draws random numbers or
touches a socket.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Collection

from ganglion import defaults
from ganglion.ratelimit import TokenBucket

__all__ = [
    "MAX_ASK",
    "MAX_ECHO",
    "MAX_NOTED_INTEREST",
    "MEMBER",
    "NONCE_SIZE",
    "OBSERVER",
    "Heard",
    "Liveness",
    "Membership",
    "MembershipLimits",
    "PeerInfo",
]

MEMBER = "member"
OBSERVER = "observer"

#: Bytes of the random nonce a node puts in its heartbeats.
NONCE_SIZE = 8
#: Most candidate ids one heartbeat asks for proof from.
MAX_ASK = 16
#: Most nonces one heartbeat echoes.
MAX_ECHO = 32
#: Heartbeats a peer without a nonce must send, besides lasting the probation.
_LEGACY_MIN_HEARTBEATS = 3
#: Most type names a peer's known subscriptions may grow to by
#: :meth:`Membership.note_interest` (its heartbeat's own list is bounded by the
#: datagram); beyond it last-value requests no longer add names until its next
#: heartbeat replaces the guesses.
MAX_NOTED_INTEREST = 1024


@dataclasses.dataclass(frozen=True, slots=True)
class PeerInfo:
    """What this node knows of another node.

    Attributes:
        id: the peer's 8-byte node id.
        name: its human name.
        role: ``member`` or ``observer``.
        version: its ganglion version.
        address: the IPv4 address its heartbeats come from.
        publishes: type names it publishes.
        clock_synced: whether it reports its clock as synchronised (NTP).
        last_seen: time of its last heartbeat (the caller's clock).
        subscribes: type names it has subscribers of; None when it did not say
            (an older node), which means every type.
    """

    id: bytes
    name: str
    role: str
    version: str
    address: str
    publishes: tuple[str, ...]
    clock_synced: bool
    last_seen: float
    subscribes: frozenset[str] | None = None

    def wants(self, type_name: str) -> bool:
        """Whether this peer subscribes to ``type_name`` (always, when it did not say)."""
        return self.subscribes is None or type_name in self.subscribes

    @property
    def int_id(self) -> int:
        """The node id as the integer the consensus package uses."""
        return int.from_bytes(self.id, "big")


@dataclasses.dataclass(frozen=True, slots=True)
class Liveness:
    """What one heartbeat says about freshness (docs/protocol.md, section 7.2).

    Attributes:
        nonce: the sender's nonce; None when it sent none (an older node).
        ask: node ids the sender wants proof of liveness from.
        echo: nonces the sender echoes (of the peers that asked it).
    """

    nonce: bytes | None = None
    ask: Collection[bytes] = ()
    echo: Collection[bytes] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class MembershipLimits:
    """The membership budget (docs/security.md); validated when built.

    Attributes:
        max_members: live (proven) members, at most.
        max_observers: live (proven) observers, at most.
        max_candidates: peers not yet proven live, at most.
        admit_rate: new ids admitted per second, sustained.
        admit_burst: new ids admitted at once after a quiet spell.
        legacy_probation: seconds a peer without a nonce is heard before it is
            live; None never admits it.
    """

    max_members: int = defaults.MAX_MEMBERS
    max_observers: int = defaults.MAX_OBSERVERS
    max_candidates: int = defaults.MAX_CANDIDATES
    admit_rate: float = defaults.ADMIT_NEW_PEERS[0]
    admit_burst: float = defaults.ADMIT_NEW_PEERS[1]
    legacy_probation: float | None = defaults.LEGACY_PROBATION_SECONDS

    def __post_init__(self) -> None:
        for name in ("max_members", "max_observers", "max_candidates"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.admit_rate > 0 or not self.admit_burst >= 1:
            raise ValueError(f"admission needs rate > 0 and burst >= 1, got "
                             f"{self.admit_rate}, {self.admit_burst}")
        if self.legacy_probation is not None and self.legacy_probation < 0:
            raise ValueError(f"legacy_probation must be >= 0, got {self.legacy_probation}")


@dataclasses.dataclass(frozen=True, slots=True)
class Heard:
    """What one heartbeat changed (the answer of :meth:`Membership.heard`).

    Attributes:
        refused: why the heartbeat was dropped (``rate``, ``full``), or None.
        new: the sender was not known before (it is a candidate now, or live).
        view_changed: :meth:`Membership.view` differs from before.
        interest_changed: :meth:`Membership.interest` differs from before.
        asked: the sender newly asks this node for proof (echo it soon).
    """

    refused: str | None = None
    new: bool = False
    view_changed: bool = False
    interest_changed: bool = False
    asked: bool = False


_NOTHING = Heard()


class _Entry:
    """One peer in the table, proven or not (mutable; private)."""

    __slots__ = ("asked_at", "asks_us", "first_seen", "heartbeats", "info", "nonce", "proven")

    def __init__(self, info: PeerInfo, nonce: bytes | None) -> None:
        self.info = info
        self.first_seen = info.last_seen
        self.heartbeats = 1
        self.proven = False
        self.nonce = nonce
        self.asks_us = False
        self.asked_at = 0.0


class Membership:
    """The table of peers heard from, and the live view derived from it.

    Args:
        self_id: this node's 8-byte id.
        timeout: seconds without a heartbeat after which a peer is gone.
        self_is_member: False for an observer, which is never in its own view.
        nonce: this node's nonce for the current run (random, from the caller);
            None turns the proof off: every peer heard is live at once.
        limits: the budget of the table.
        now: the time the table is made (starts the admission bucket).
    """

    def __init__(self, self_id: bytes, *, timeout: float, self_is_member: bool = True,
                 nonce: bytes | None = None, limits: MembershipLimits | None = None,
                 now: float = 0.0) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if nonce is not None and not nonce:
            raise ValueError("the nonce must not be empty")
        self.self_id = self_id
        self.timeout = timeout
        self.self_is_member = self_is_member
        self.nonce = nonce
        self.limits = limits or MembershipLimits()
        #: Refusals, evictions, proofs and expiries, by name (see docs/security.md).
        self.counts: collections.Counter[str] = collections.Counter()
        #: Grows by one each time :meth:`interest` changes (compare to notice it).
        self.interest_epoch = 0
        self._peers: dict[bytes, _Entry] = {}
        self._live = {MEMBER: 0, OBSERVER: 0}
        self._candidates = 0
        self._admit = TokenBucket(self.limits.admit_rate, self.limits.admit_burst, now)
        # The union of subscriptions, kept as counts so it never needs a full walk.
        self._wanted: collections.Counter[str] = collections.Counter()
        self._wants_all = 0
        self._interest: frozenset[str] | None = frozenset()
        self._interest_stale = False

    # -- input -----------------------------------------------------------------------

    def heard(self, peer: PeerInfo, liveness: Liveness | None = None) -> Heard:
        """Record a heartbeat received at ``peer.last_seen``.

        Args:
            peer: what the heartbeat says, stamped with the time it arrived.
            liveness: its freshness fields; None as for an older node's heartbeat.

        Returns:
            What changed; ``refused`` set when the heartbeat was dropped (counted
            in :attr:`counts` as ``peers_refused_rate`` or ``peers_refused_full``).
        """
        if peer.id == self.self_id:
            return _NOTHING
        live = liveness or Liveness()
        now = peer.last_seen
        entry = self._peers.get(peer.id)
        new = entry is None
        if entry is None:
            refused = self._admit_new(now)
            if refused is not None:
                return Heard(refused=refused)
            entry = self._peers[peer.id] = _Entry(peer, live.nonce)
            self._candidates += 1
            interest_changed = self._add_interest(peer.subscribes)
            was_member = False
            restarted = False
        else:
            was_member = entry.proven and entry.info.role == MEMBER
            if entry.info.role != peer.role and entry.proven and not self._swap_role(entry, peer):
                # Its new role is full: it comes back as a newcomer.
                self.counts["peers_refused_full"] += 1
                return Heard(refused="full", view_changed=was_member,
                             interest_changed=self._drop(entry))
            interest_changed = False
            if entry.info.subscribes != peer.subscribes:
                # Added before removed: a name in both never drops to zero on the way.
                added = self._add_interest(peer.subscribes)
                removed = self._remove_interest(entry.info.subscribes)
                interest_changed = added or removed
            entry.info = peer
            entry.heartbeats += 1
            restarted = entry.nonce != live.nonce  # a new run of the peer: a new nonce
            entry.nonce = live.nonce
        asked = self._note_ask(entry, live, now, restarted)
        if not entry.proven and self._proves(entry, live, now):
            self._promote(entry)
        is_member = entry.proven and entry.info.role == MEMBER
        return Heard(new=new, view_changed=was_member != is_member,
                     interest_changed=interest_changed, asked=asked)

    def note_interest(self, node_id: bytes, type_name: str) -> bool:
        """Record that a peer subscribes to ``type_name`` before its heartbeat says so.

        A late joiner's last-value request shows it subscribes; its next heartbeat
        (sent after the request) replaces the guess with what it really has.

        Args:
            node_id: the peer (proven or not; unknown ids are ignored).
            type_name: the type it asked about.

        Returns:
            True when this changed what the peer is known to want.
        """
        entry = self._peers.get(node_id)
        if entry is None or entry.info.wants(type_name):
            return False
        old = entry.info.subscribes
        assert old is not None
        if len(old) >= MAX_NOTED_INTEREST:
            self.counts["interest_notes_refused"] += 1
            return False
        entry.info = dataclasses.replace(entry.info, subscribes=old | {type_name})
        self._add_interest(frozenset((type_name,)))
        return True

    def expire(self, now: float) -> list[PeerInfo]:
        """Drop peers silent for longer than ``timeout``, proven or not.

        Args:
            now: the current time.

        Returns:
            The live (proven) peers dropped; candidates are only counted
            (``candidates_expired``). Whether :meth:`interest` changed shows in
            :attr:`interest_epoch`.
        """
        gone: list[PeerInfo] = []
        for entry in [e for e in self._peers.values() if now - e.info.last_seen > self.timeout]:
            if entry.proven:
                gone.append(entry.info)
            else:
                self.counts["candidates_expired"] += 1
            self._drop(entry)
        return gone

    def next_expiry(self) -> float | None:
        """When :meth:`expire` next drops a peer unless it is heard again: the time after
        which the longest silent one has been silent for ``timeout``; None with no peers."""
        if not self._peers:
            return None
        return min(e.info.last_seen for e in self._peers.values()) + self.timeout

    def forget(self, node_id: bytes) -> PeerInfo | None:
        """Drop one peer at once (it said goodbye).

        Returns:
            What was known of it, or None when it was not in the table.
        """
        entry = self._peers.get(node_id)
        if entry is None:
            return None
        self._drop(entry)
        return entry.info

    # -- queries ---------------------------------------------------------------------

    def get(self, node_id: bytes) -> PeerInfo | None:
        """The peer with this id, if it is live (proven)."""
        entry = self._peers.get(node_id)
        return entry.info if entry is not None and entry.proven else None

    def known(self, node_id: bytes) -> PeerInfo | None:
        """The peer with this id, if it is in the table at all (a candidate too)."""
        entry = self._peers.get(node_id)
        return None if entry is None else entry.info

    def peers(self) -> list[PeerInfo]:
        """Every live (proven) peer, sorted by name then id."""
        return sorted((e.info for e in self._peers.values() if e.proven),
                      key=lambda p: (p.name, p.id))

    def candidates(self) -> list[PeerInfo]:
        """Every peer heard but not proven live yet, sorted by name then id."""
        return sorted((e.info for e in self._peers.values() if not e.proven),
                      key=lambda p: (p.name, p.id))

    def view(self) -> frozenset[int]:
        """The live members' integer ids, this node included when it is a member."""
        ids = {e.info.int_id for e in self._peers.values()
               if e.proven and e.info.role == MEMBER}
        if self.self_is_member:
            ids.add(int.from_bytes(self.self_id, "big"))
        return frozenset(ids)

    def interest(self) -> frozenset[str] | None:
        """Every type some known peer subscribes to; None when one of them did not say."""
        if self._wants_all:
            return None
        if self._interest is None or self._interest_stale:
            self._interest = frozenset(self._wanted)
            self._interest_stale = False
        return self._interest

    def ask(self) -> list[bytes]:
        """The candidates to ask for proof in the next heartbeat (at most :data:`MAX_ASK`).

        Those heard most often first (a flood of ids heard once then waits behind
        real newcomers), then the longest known; never peers without a nonce,
        which cannot answer.
        """
        waiting = [e for e in self._peers.values() if not e.proven and e.nonce is not None]
        if not waiting or self.nonce is None:
            return []
        waiting.sort(key=lambda e: (-e.heartbeats, e.first_seen))
        return [e.info.id for e in waiting[:MAX_ASK]]

    def echo(self) -> list[bytes]:
        """The nonces of the peers that ask this node for proof (at most :data:`MAX_ECHO`).

        The most recent askers first.
        """
        askers = [e for e in self._peers.values() if e.asks_us and e.nonce is not None]
        askers.sort(key=lambda e: -e.asked_at)
        return [e.nonce for e in askers[:MAX_ECHO] if e.nonce is not None]

    def address_of(self, node_id: int) -> str | None:
        """The address a unicast to ``node_id`` would reach it alone at, if there is one.

        Only when exactly one known peer (proven or not) sends from that address:
        peers sharing a host share its control port, and the kernel hands a
        unicast datagram to just one of their sockets.

        Returns:
            The IPv4 address, or None when unknown or shared.
        """
        entry = self._peers.get(node_id.to_bytes(len(self.self_id), "big")) \
            if 0 <= node_id < 1 << (8 * len(self.self_id)) else None
        if entry is None or not entry.info.address:
            return None
        address = entry.info.address
        sharing = sum(1 for e in self._peers.values() if e.info.address == address)
        return address if sharing == 1 else None

    def sizes(self) -> dict[str, int]:
        """How full each table is: ``members``, ``observers`` (live) and ``candidates``."""
        return {"members": self._live[MEMBER], "observers": self._live[OBSERVER],
                "candidates": self._candidates}

    # -- private ---------------------------------------------------------------------

    def _admit_new(self, now: float) -> str | None:
        """Make room for a new id and take an admission token; why not, if it fails."""
        evict: _Entry | None = None
        if self._candidates >= self.limits.max_candidates:
            evict = self._one_shot_candidate()
            if evict is None:
                self.counts["peers_refused_full"] += 1
                return "full"
        if not self._admit.take(now):
            self.counts["peers_refused_rate"] += 1
            return "rate"
        if evict is not None:
            self.counts["candidates_evicted"] += 1
            self._drop(evict)
        return None

    def _one_shot_candidate(self) -> _Entry | None:
        """The candidate heard only once and longest ago (a flood's leftovers), if any."""
        oldest: _Entry | None = None
        for entry in self._peers.values():
            if not entry.proven and entry.heartbeats == 1 and (
                    oldest is None or entry.first_seen < oldest.first_seen):
                oldest = entry
        return oldest

    def _note_ask(self, entry: _Entry, live: Liveness, now: float, restarted: bool) -> bool:
        """Remember whether the peer asks us for proof; True when it newly does."""
        asks = live.nonce is not None and self.self_id in live.ask
        newly = asks and (restarted or not entry.asks_us)
        entry.asks_us = asks
        if newly:
            entry.asked_at = now
        return newly

    def _proves(self, entry: _Entry, live: Liveness, now: float) -> bool:
        if self.nonce is None:
            return True
        if live.nonce is not None:
            return self.nonce in live.echo
        probation = self.limits.legacy_probation
        return (probation is not None and now - entry.first_seen >= probation
                and entry.heartbeats >= _LEGACY_MIN_HEARTBEATS)

    def _promote(self, entry: _Entry) -> None:
        role = entry.info.role
        cap = self.limits.max_members if role == MEMBER else self.limits.max_observers
        if self._live[role] >= cap:
            self.counts["peers_refused_full"] += 1
            return
        entry.proven = True
        self._candidates -= 1
        self._live[role] += 1
        self.counts["peers_proven" if entry.nonce is not None or self.nonce is None
                    else "peers_admitted_on_probation"] += 1

    def _swap_role(self, entry: _Entry, peer: PeerInfo) -> bool:
        """Move a live peer to its new role's count; False when that role is full."""
        cap = self.limits.max_members if peer.role == MEMBER else self.limits.max_observers
        if self._live[peer.role] >= cap:
            return False
        self._live[entry.info.role] -= 1
        self._live[peer.role] += 1
        return True

    def _drop(self, entry: _Entry) -> bool:
        """Remove an entry; True when :meth:`interest` changed."""
        del self._peers[entry.info.id]
        if entry.proven:
            self._live[entry.info.role] -= 1
        else:
            self._candidates -= 1
        return self._remove_interest(entry.info.subscribes)

    def _add_interest(self, subscribes: frozenset[str] | None) -> bool:
        """Count a peer's subscriptions in; True when :meth:`interest` changed."""
        if subscribes is None:
            self._wants_all += 1
            return self._changed(self._wants_all == 1)  # None from now on
        grew = False
        for name in subscribes:
            if not self._wanted[name]:
                self._interest_stale = grew = True
            self._wanted[name] += 1
        return self._changed(grew and not self._wants_all)

    def _remove_interest(self, subscribes: frozenset[str] | None) -> bool:
        """Count a peer's subscriptions out; True when :meth:`interest` changed."""
        if subscribes is None:
            self._wants_all -= 1
            return self._changed(self._wants_all == 0)  # a set again
        shrank = False
        for name in subscribes:
            left = self._wanted[name] - 1
            if left:
                self._wanted[name] = left
            else:
                del self._wanted[name]
                self._interest_stale = shrank = True
        return self._changed(shrank and not self._wants_all)

    def _changed(self, changed: bool) -> bool:
        if changed:
            self.interest_epoch += 1
        return changed
