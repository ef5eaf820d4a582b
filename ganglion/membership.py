"""Membership: which nodes are alive, from the heartbeats they send on the control group.

Theory of operation: every node broadcasts a heartbeat every ``interval`` seconds.
A peer is *live* while its last heartbeat is younger than ``timeout``. The live
*members* (observers excluded: short-lived tools never count in a quorum) plus
this node itself form the view handed to the consensus state machine, whose
quorums are strict majorities of it. Each peer also says which types it
subscribes to; :meth:`Membership.interest` is their union, which a publisher
uses to send only what some live peer wants (publisher-side matching).

Pure: time is an argument, nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

MEMBER = "member"
OBSERVER = "observer"


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


class Membership:
    """The table of peers heard from, and the live view derived from it.

    Args:
        self_id: this node's 8-byte id.
        timeout: seconds without a heartbeat after which a peer is gone.
        self_is_member: False for an observer, which is never in its own view.
    """

    def __init__(self, self_id: bytes, *, timeout: float, self_is_member: bool = True) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.self_id = self_id
        self.timeout = timeout
        self.self_is_member = self_is_member
        self._peers: dict[bytes, PeerInfo] = {}

    def heard(self, peer: PeerInfo) -> bool:
        """Record a heartbeat; return True when the peer is new or changed role."""
        if peer.id == self.self_id:
            return False
        old = self._peers.get(peer.id)
        self._peers[peer.id] = peer
        return old is None or old.role != peer.role

    def note_interest(self, node_id: bytes, type_name: str) -> bool:
        """Record that a peer subscribes to ``type_name`` before its heartbeat says so.

        A late joiner's last-value request shows it subscribes; its next heartbeat
        (sent after the request) replaces the guess with what it really has.

        Returns:
            True when this changed what the peer is known to want.
        """
        peer = self._peers.get(node_id)
        if peer is None or peer.wants(type_name):
            return False
        assert peer.subscribes is not None
        self._peers[node_id] = dataclasses.replace(
            peer, subscribes=peer.subscribes | {type_name})
        return True

    def interest(self) -> frozenset[str] | None:
        """Every type some live peer subscribes to; None when one of them did not say."""
        wanted: set[str] = set()
        for peer in self._peers.values():
            if peer.subscribes is None:
                return None
            wanted |= peer.subscribes
        return frozenset(wanted)

    def expire(self, now: float) -> list[PeerInfo]:
        """Drop peers silent for longer than ``timeout``; return the ones dropped."""
        gone = [p for p in self._peers.values() if now - p.last_seen > self.timeout]
        for p in gone:
            del self._peers[p.id]
        return gone

    def get(self, node_id: bytes) -> PeerInfo | None:
        """The peer with this id, if it is live."""
        return self._peers.get(node_id)

    def forget(self, node_id: bytes) -> PeerInfo | None:
        """Drop one peer at once (it said goodbye)."""
        return self._peers.pop(node_id, None)

    def peers(self) -> list[PeerInfo]:
        """Every live peer, sorted by name then id."""
        return sorted(self._peers.values(), key=lambda p: (p.name, p.id))

    def view(self) -> frozenset[int]:
        """The live members' integer ids, this node included when it is a member."""
        ids: Iterable[int] = (p.int_id for p in self._peers.values() if p.role == MEMBER)
        own = {int.from_bytes(self.self_id, "big")} if self.self_is_member else set()
        return frozenset(ids) | own
