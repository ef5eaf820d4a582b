"""The byzantine-input fault kind: forged messages with extreme fields, from one seed.

Theory of operation: an :class:`Adversary` stands for a host on a keyless LAN that
sends whatever it likes under whatever node id it likes (issue 21). Each call to
:meth:`Adversary.act` forges one kind of message, chosen from its own
``random.Random``, and injects it with :meth:`SimNetwork.inject`, through the CBOR
codec like any datagram. It may read the nodes' state to aim (a real attacker reads the
control group): the first undecided slot, the highest round, where a type sits.

Kinds (every one named in the issue, and the fields at their extremes):

* ``prepare``/``accept``: rounds at 2**63-1, just above ``MAX_ROUND``, ``MAX_ROUND``,
  and just past or just within a node's round plus ``ROUND_STEP``; slots at 2**63-1,
  2**32 and just past the slot window; values that assign junk or move a placed type.
* ``nack``: a ``promised`` ballot at the same extreme rounds, for the node's own attempt.
* ``commit`` and ``catchup`` (a ``CatchUpReply`` nobody asked for, or one from a peer a
  node did ask): a decided slot with another value, the first free slot with junk, a
  hole above it with an ``Assign`` that would re-place a type, a ``Move`` or a
  ``Retire`` of a placed type, a huge slot; from members, observers and strangers.
* ``status``: a huge count and a random digest (a node then asks the forged sender).
* ``catchup_flood``: catch-up requests from many ids at once.
* ``propose_flood``: 200 ``ProposeRequest``\\ s for junk types, from one id or from 200.
* ``retire_flood``: 200 ``RetireRequest``\\ s for placed types, from one id or from 200
  (rate-limited like proposals; a retired type the nodes still want is asked for
  again by them, as the runtime does for a type it publishes).

The invariants the run must keep are the usual ones (uniqueness, stability across
restarts, agreement and move linkage at convergence), plus liveness *after* the attack:
a type proposed once the adversary stops is decided everywhere within a bounded number
of ticks (``consensus/sim/scenario.py``). Static-view classic Paxos safety ("every
learned value was chosen by a majority") is not claimed under forgery: without a key a
forged ``Commit`` from a member's id *is* a decision (``docs/consensus.md``).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from consensus.allocator import allocate
from consensus.commands import Assign, Move, Retire
from consensus.limits import MAX_ROUND, ROUND_STEP, SLOT_WINDOW
from consensus.messages import (
    DIGEST_BYTES,
    MAX_ENTRIES_PER_REPLY,
    MAX_NODE_ID,
    MAX_VALUE_BYTES,
    Accept,
    Ballot,
    CatchUpReply,
    CatchUpRequest,
    Commit,
    Message,
    Nack,
    Prepare,
    ProposeRequest,
    RetireRequest,
    Status,
)
from consensus.node import PaxosNode
from consensus.sim.network import SimNetwork

__all__ = ["ADVERSARY", "KINDS", "Adversary"]

ADVERSARY = -1  # the attacking host's datagram source in traces: not a node id
_WIRE_MAX = 2**63 - 1
FLOOD = 200


class Adversary:
    """Forges messages into a :class:`SimNetwork` (see the module docstring)."""

    def __init__(self, net: SimNetwork, rnd: random.Random) -> None:
        """Aim at ``net``; every choice comes from ``rnd``.

        Args:
            net: the network to attack.
            rnd: the adversary's own seeded RNG (a seed replays exactly).
        """
        self.net = net
        self.rnd = rnd
        self.sent: dict[str, int] = {}
        self._junk = 0
        self._lured: int | None = None  # the id a forged Status made the nodes ask

    def act(self, kind: str | None = None) -> str:
        """Forge and inject one kind of message (a flood counts as one act).

        Args:
            kind: one of :data:`KINDS`, or None for a random one.

        Returns:
            The kind forged.
        """
        kind = kind or self.rnd.choice(KINDS)
        target = self._target()
        if target is not None:
            _FORGERS[kind](self, target)
            self.sent[kind] = self.sent.get(kind, 0) + 1
        return kind

    # -- aiming --------------------------------------------------------------------

    def _target(self) -> PaxosNode | None:
        up = self.net.up()
        return self.net.nodes[self.rnd.choice(up)] if up else None

    def _sender(self) -> int:
        known = sorted(self.net.members | self.net.observers)
        strangers = [0, MAX_NODE_ID, self.rnd.getrandbits(64)]
        return self.rnd.choice(known + strangers)

    def _round(self, node: PaxosNode) -> int:
        top = node._max_round  # the attacker sees rounds on the wire
        return self.rnd.choice([
            _WIRE_MAX, MAX_ROUND + 1, MAX_ROUND, 2**32, top + ROUND_STEP + 1, top + ROUND_STEP, top + 1,
        ])

    def _slot(self, node: PaxosNode) -> int:
        free = _first_free(node)
        return self.rnd.choice([
            _WIRE_MAX, 2**32, free + SLOT_WINDOW, free + SLOT_WINDOW - 1, free, free + 3,
        ])

    def _value(self, node: PaxosNode) -> bytes:
        placed = sorted(node.groups.items())
        choices: list[Callable[[], bytes]] = [self._junk_assign, lambda: b"\xff" * MAX_VALUE_BYTES]
        if placed:
            name, group = self.rnd.choice(placed)
            other = allocate(f"evil.{self.rnd.getrandbits(32)}", set(node.groups.values()))
            choices += [
                lambda: Assign(type_name=name, group=other).encode(),
                lambda: Move(type_name=name, old=group, new=other).encode(),
                lambda: Retire(type_name=name, group=group).encode(),
            ]
        return self.rnd.choice(choices)()

    def _junk_assign(self) -> bytes:
        self._junk += 1
        name = f"junk.T{self._junk}"
        return Assign(type_name=name, group=allocate(name, ())).encode()

    def _entries(self, node: PaxosNode) -> tuple[tuple[int, bytes], ...]:
        decided = [slot for slot, _ in node.entries()]
        slots = [self._slot(node)] + ([self.rnd.choice(decided)] if decided else [])
        count = self.rnd.randint(1, MAX_ENTRIES_PER_REPLY)
        return tuple((self.rnd.choice(slots), self._value(node)) for _ in range(count))

    def _ballot(self, node: PaxosNode) -> Ballot:
        return Ballot(self._round(node), self._sender())

    def _inject(self, msg: Message, to: PaxosNode | None = None) -> None:
        self.net.inject(msg, to=None if to is None else to.node_id, src=ADVERSARY)

    # -- the kinds -----------------------------------------------------------------

    def _prepare(self, node: PaxosNode) -> None:
        self._inject(Prepare(sender=self._sender(), slot=self._slot(node), ballot=self._ballot(node)))

    def _accept(self, node: PaxosNode) -> None:
        self._inject(Accept(
            sender=self._sender(), slot=self._slot(node), ballot=self._ballot(node),
            value=self._value(node),
        ))

    def _nack(self, node: PaxosNode) -> None:
        # Aimed at the node's own attempt when it has one: that is what a Nack can stop.
        a = node._attempt  # the attacker reads the wire; the sim reads the node
        slot, ballot = (a.slot, a.ballot) if a is not None else (self._slot(node), self._ballot(node))
        promised = Ballot(max(self._round(node), ballot.round), self._sender())
        self._inject(Nack(sender=self._sender(), slot=slot, ballot=ballot, promised=promised), node)

    def _commit(self, node: PaxosNode) -> None:
        for slot, value in self._entries(node)[:1]:
            self._inject(Commit(sender=self._sender(), slot=slot, value=value))

    def _catchup(self, node: PaxosNode) -> None:
        # Half the time from the id a forged Status lured the nodes into asking: that
        # reply is solicited, and is the one way a forger gets a conflicting entry in.
        lured = self._lured is not None and self.rnd.random() < 0.5
        sender = self._lured if lured and self._lured is not None else self._sender()
        entries = tuple(sorted(set(self._entries(node))))[:MAX_ENTRIES_PER_REPLY]
        self._inject(CatchUpReply(sender=sender, entries=entries), node)

    def _status(self, node: PaxosNode) -> None:
        digest = self.rnd.getrandbits(8 * DIGEST_BYTES).to_bytes(DIGEST_BYTES, "big")
        count = self.rnd.choice([_WIRE_MAX, node.summary[0] + 1])
        self._lured = self._sender()
        self._inject(Status(sender=self._lured, count=count, digest=digest))

    def _catchup_flood(self, node: PaxosNode) -> None:
        for _ in range(20):
            self._inject(CatchUpRequest(sender=self._sender()), node)

    def _propose_flood(self, node: PaxosNode) -> None:
        one = self.rnd.random() < 0.5
        sender = self._sender()
        for _ in range(FLOOD):
            self._junk += 1
            self._inject(ProposeRequest(
                sender=sender if one else self._sender(), type_name=f"junk.P{self._junk}",
            ), node)


    def _retire_flood(self, node: PaxosNode) -> None:
        placed = sorted(node.groups)
        if not placed:
            return
        one = self.rnd.random() < 0.5
        sender = self._sender()
        for _ in range(FLOOD):
            self._inject(RetireRequest(
                sender=sender if one else self._sender(), type_name=self.rnd.choice(placed),
            ), node)


def _first_free(node: PaxosNode) -> int:
    slots = {slot for slot, _ in node.entries()}
    free = 0
    while free in slots:
        free += 1
    return free


_FORGERS: dict[str, Callable[[Adversary, PaxosNode], None]] = {
    "prepare": Adversary._prepare,
    "accept": Adversary._accept,
    "nack": Adversary._nack,
    "commit": Adversary._commit,
    "catchup": Adversary._catchup,
    "status": Adversary._status,
    "catchup_flood": Adversary._catchup_flood,
    "propose_flood": Adversary._propose_flood,
    "retire_flood": Adversary._retire_flood,
}
KINDS: tuple[str, ...] = tuple(_FORGERS)

