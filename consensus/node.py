"""PaxosNode: the sans-IO facade that agrees on the type -> multicast group map.

Determinism promise: a ``PaxosNode`` never reads a clock, the global ``random`` module,
a socket or a file. Given the same journal, the same ``random.Random`` state and the same
sequence of calls (``step``, ``tick``, ``propose``, ``set_view``), it produces the same
``Ready`` values, byte for byte. Time enters only through ``tick()`` (one abstract tick;
the caller decides how long that is).

Theory of operation: each member node plays all three roles of "Paxos Made Simple"
over a log of slots, one single-decree instance per slot. As *proposer* it works
through a queue of commands (types it was asked to assign, moves it owes) one attempt
at a time (:mod:`consensus.proposer`); as *acceptor* it answers ``Prepare`` and
``Accept`` (:mod:`consensus.acceptor`); as *learner* it folds decided entries into the
map (:mod:`consensus.groupmap`). Every transition lives in this file: one handler per
message kind, dispatched by :data:`PaxosNode._HANDLERS`. Local inputs are messages
too: ``propose(t)`` is ``step(ProposeRequest(sender=self, ...))``, and a node's
messages to itself go through the same handlers via a local queue.

Anti-entropy: every ``heartbeat_ticks`` a node broadcasts ``Status`` (entry count and
set digest). A node whose digest differs and whose count is not larger asks the sender
for a catch-up; the sender streams all its decided entries. This single mechanism is
how newcomers, restarted nodes, observers and healed partitions converge.

Observers (``Config(observer=True)``) have no acceptor and never propose: they learn
by catch-up and forward ``propose`` (and ``retire``) to the leader of their view. They do take part in
anti-entropy (``Status`` and serving catch-up): an entry an observer learned from a
member that then left must still reach everyone. The caller never puts
observers in a member's view, so they never count in a quorum.

Hostile input (``docs/consensus.md``, "Hostile input"): without a network key any
message may be forged, so every handler checks what it is given before it costs the
node anything. A ballot round above :data:`~consensus.limits.MAX_ROUND` or far above
every round seen, a slot far beyond the first undecided one, a ``Commit`` from outside
the view or one that would overwrite a decided slot or move a placed type, a catch-up
reply nobody asked for, and requests beyond the rate limits are counted
(:attr:`PaxosNode.counters`) and dropped; allocating a round never raises.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Any

from consensus.acceptor import Acceptor
from consensus.commands import Assign, Move, Retire, check_type_name, decode_command
from consensus.errors import AddressSpaceExhausted, ConsensusError, InvalidConfig
from consensus.groupmap import Entry, GroupMap, MapChange
from consensus.guard import InputGuard
from consensus.journal import JournalRecord, Learned, MoveIntent, RoundUsed, replay
from consensus.limits import MAX_ROUND, ROUND_STEP, SLOT_WINDOW, Limits
from consensus.messages import (
    MAX_ENTRIES_PER_REPLY,
    MAX_NODE_ID,
    Accept,
    Accepted,
    Ballot,
    CatchUpReply,
    CatchUpRequest,
    Commit,
    Message,
    Nack,
    Prepare,
    Promise,
    ProposeRequest,
    RetireRequest,
    Status,
)
from consensus.proposer import Attempt
from consensus.ready import Outbound, Ready

__all__ = ["Config", "NodeFailed", "PaxosNode"]

_log = logging.getLogger(__name__)


class NodeFailed(ConsensusError, RuntimeError):
    """The node hit an internal error earlier and refuses further input."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Static settings of one node; validated when built.

    Attributes:
        node_id: this node's id, unique in the network (0 .. 2**64-1).
        observer: True for short-lived tools: no acceptor, never in a quorum.
        heartbeat_ticks: ticks between ``Status`` broadcasts; 0 disables them.
        retry_ticks: ticks a proposer attempt may take before it is abandoned.
        backoff_ticks: upper bound of the random extra wait after a failed attempt.
        catchup_ticks: minimum ticks between two catch-up requests.
        follow_leader: members leave proposing to the lowest-id member of their view and
            step in only when it stays silent; False makes every member propose at once
            (more duelling; used by the exhaustive search to cover concurrent proposers).
        limits: rate limits and table sizes for what peers may ask (``Limits()``).
    """

    node_id: int
    observer: bool = False
    heartbeat_ticks: int = 10
    retry_ticks: int = 10
    backoff_ticks: int = 10
    catchup_ticks: int = 10
    follow_leader: bool = True
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not isinstance(self.limits, Limits):
            raise InvalidConfig(f"limits must be a Limits, got {self.limits!r:.60}")
        if type(self.node_id) is not int or not 0 <= self.node_id <= MAX_NODE_ID:
            raise InvalidConfig(f"node_id must be an int in [0, 2**64), got {self.node_id!r}")
        for name in ("heartbeat_ticks", "backoff_ticks"):
            if getattr(self, name) < 0:
                raise InvalidConfig(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("retry_ticks", "catchup_ticks"):
            if getattr(self, name) < 1:
                raise InvalidConfig(f"{name} must be >= 1, got {getattr(self, name)}")


class PaxosNode:
    """One participant (member or observer) in group agreement; see the module docstring."""

    def __init__(
        self, config: Config, *, rng: random.Random, records: Iterable[JournalRecord] = ()
    ) -> None:
        """Create a node, or restart one from its journal.

        Args:
            config: static settings.
            rng: the only source of randomness (backoff jitter, choice of member).
            records: the journal persisted by a previous incarnation, oldest first.
        """
        self._cfg = config
        self._id = config.node_id
        self._rng = rng
        durable = replay(records)
        self._guard = InputGuard(config.limits, config.catchup_ticks)
        if durable.dropped:
            # Written by an older version that adopted a forged round: left out, or the
            # node could never allocate a round again (docs/consensus.md).
            self._guard.count("journal_implausible", durable.dropped)
            _log.warning(
                "node %d: %d journal record(s) with a round above %d left out",
                self._id, durable.dropped, MAX_ROUND,
            )
        self._map = GroupMap(durable.learned)
        self._decided_values = {value for _, value in durable.learned}
        self._acceptor = Acceptor(self._id, durable)
        for slot, _ in durable.learned:
            self._acceptor.forget(slot)
        self._max_round = durable.max_round
        self._moves: list[Move] = [m for m in durable.moves if m.encode() not in self._decided_values]
        self._wanted: dict[str, int] = {}  # type -> tick it was first asked for
        self._remote: dict[str, int] = {}  # wanted only because a peer asked: its requester
        # Retires wanted, handled like wanted types (left to the leader): type -> (the
        # group it had when asked, tick asked); dropped once that placement is gone or
        # the retire decided. Volatile, like proposals: whoever asked asks again.
        self._retires: dict[str, tuple[IPv4Address, int]] = {}
        self._retire_remote: set[str] = set()  # of those, asked for by a peer
        self._attempt: Attempt | None = None
        self._view: frozenset[int] = frozenset() if config.observer else frozenset({self._id})
        self._now = 0
        self._backoff_until = 0
        self._next_status = 0
        self._next_catchup = 0
        self._next_ask = 0
        self._failures = 0
        self._leader_heard = 0
        self._local: deque[Message] = deque()
        self._persist: list[JournalRecord] = []
        self._outbox: list[Outbound] = []
        self._changes: list[MapChange] = []
        self._decided: list[Entry] = []
        self._handed_out: Ready | None = None
        self._failed: BaseException | None = None

    # -- queries -------------------------------------------------------------------

    @property
    def node_id(self) -> int:
        """This node's id."""
        return self._id

    @property
    def config(self) -> Config:
        """The node's settings."""
        return self._cfg

    @property
    def groups(self) -> Mapping[str, IPv4Address]:
        """The current type -> group map."""
        return self._map.groups

    @property
    def moved_from(self) -> Mapping[str, IPv4Address]:
        """Types that moved and the group they left (subscribers listen on both)."""
        return self._map.moved_from

    @property
    def reserved_groups(self) -> Mapping[IPv4Address, str]:
        """Groups of recently retired types, not handed to another type yet."""
        return self._map.reserved

    @property
    def view(self) -> frozenset[int]:
        """The membership view quorums are computed over (includes self for members)."""
        return self._view

    @property
    def acceptor(self) -> Acceptor:
        """The acceptor state (read by tests and the simulator's invariant checks)."""
        return self._acceptor

    @property
    def summary(self) -> tuple[int, bytes]:
        """``(entry count, entry-set digest)``: equal summaries mean equal maps."""
        return (self._map.count, self._map.digest)

    def entries(self) -> list[Entry]:
        """Return every decided ``(slot, value)`` entry this node knows, in fold order."""
        return self._map.entries()

    def pending_moves(self) -> list[Move]:
        """Return the moves this node still has to get decided."""
        return list(self._moves)

    @property
    def counters(self) -> Mapping[str, int]:
        """Inputs refused so far, by reason (see :mod:`consensus.guard`); for the runtime's stats."""
        return self._guard.counters

    # -- inputs --------------------------------------------------------------------

    def set_view(self, members: Iterable[int]) -> None:
        """Replace the live membership view (the caller computes it from heartbeats).

        Args:
            members: ids of live member nodes this node can reach. A member always
                counts itself; observers must never be listed.
        """
        self._run(lambda: self._set_view(frozenset(members)))

    def step(self, msg: Message) -> None:
        """Feed one message received from a peer.

        A message that claims this node as its sender is forged (or the caller's own
        multicast loopback): it is counted as ``forged_self`` and dropped. Any other
        input the node finds implausible or over a rate limit is counted and dropped
        too; ``step`` never raises for what a peer sent.

        Args:
            msg: a validated message (see :func:`consensus.messages.message_from_wire`).

        Raises:
            NodeFailed: an earlier call hit an internal error.
        """
        self._run(lambda: self._receive(msg))

    def tick(self) -> None:
        """Advance the node's clock by one tick: heartbeats, timeouts, retries.

        Raises:
            NodeFailed: an earlier call hit an internal error.
        """
        self._run(self._tick)

    def propose(self, type_name: str) -> None:
        """Ask for a group for ``type_name``; it shows up in ``Ready.changes`` once decided.

        Proposing a type that already has a group does nothing.

        Args:
            type_name: the message type name (printable ASCII, no spaces, 1..200 chars).

        Raises:
            InvalidCommand: the type name cannot be carried in a command.
            NodeFailed: an earlier call hit an internal error.
        """
        check_type_name(type_name)
        self._run(lambda: self._want_own(type_name))

    def retire(self, type_name: str) -> None:
        """Ask for ``type_name`` to leave the map; it shows up in ``Ready.changes`` once decided.

        The decided entry is ``Retire(type_name, group)`` for the group the type has
        now (a no-op in the fold if the type has moved since). Its group is then
        reserved for it for :data:`~consensus.groupmap.GRACE_ENTRIES` entries. As for
        ``propose``, the leader proposes it: others ask the leader, and a follower
        proposes it itself only when the leader stays silent. Retiring a type not in
        the map does nothing. Whether anyone still publishes the type is the
        caller's to check: the state machine does not know.

        Args:
            type_name: the message type name.

        Raises:
            InvalidCommand: the type name cannot be carried in a command.
            NodeFailed: an earlier call hit an internal error.
        """
        check_type_name(type_name)
        self._run(lambda: self._want_retire(type_name, requester=None))

    def pending_retires(self) -> list[str]:
        """Return the types this node still wants retired."""
        return sorted(self._retires)

    def next_deadline(self) -> int | None:
        """Ticks until the first :meth:`tick` that may do something, if no input comes first.

        Every earlier tick has no effect: it puts nothing in a ``Ready``. So a runtime
        need not wake for each tick: it may sleep until this deadline (or an input),
        then call ``tick()`` once per tick that has passed, before it steps the input;
        the logical clock, and every state the node goes through, stay as they were.
        The answer is never late, sometimes early (a tick that then does nothing); it
        changes only through a call (``step``, ``propose``, ``set_view``, ...), so ask
        again after each. ``consensus/sim`` checks both claims at every tick.

        Returns:
            ``k >= 1``: the ``k``-th ``tick()`` from now is the first that may act; None
            when no tick will act before an input (only with ``heartbeat_ticks == 0``).
        """
        now = self._now
        due: list[int] = []
        if self._cfg.heartbeat_ticks:
            due.append(self._next_status)
        a = self._attempt
        if a is not None:
            due.append(a.deadline)
        leader = self._leader()
        if (leader is not None and leader != self._id
                and (self._retires or any(t not in self._map.groups for t in self._wanted))):
            due.append(self._next_ask)  # _forward_wanted asks the leader again
        start = self._next_start()
        if start is not None:
            due.append(start)
        if not due:
            return None
        return max(1, min(due) - now)

    def has_ready(self) -> bool:
        """True when :meth:`ready` would return a non-empty ``Ready``."""
        return bool(self._persist or self._outbox or self._changes or self._decided)

    def ready(self) -> Ready:
        """Hand out the effects accumulated since the last ``Ready``.

        Returns:
            A :class:`~consensus.ready.Ready`; persist ``to_persist`` before sending
            ``outbox`` (enforced), then call :meth:`advance`.

        Raises:
            ConsensusError: the previous ``Ready`` was not advanced yet.
        """
        if self._handed_out is not None:
            raise ConsensusError("call advance() on the previous Ready before ready() again")
        rd = Ready(
            to_persist=self._persist,
            outbox=self._outbox,
            changes=self._changes,
            decided=self._decided,
        )
        self._persist, self._outbox, self._changes, self._decided = [], [], [], []
        self._handed_out = rd
        return rd

    def advance(self, rd: Ready) -> None:
        """Acknowledge that ``rd``'s effects were carried out.

        Args:
            rd: the ``Ready`` last returned by :meth:`ready`.

        Raises:
            PersistOrderError: ``rd.to_persist`` was never marked persisted.
            ConsensusError: ``rd`` is not the outstanding ``Ready``.
        """
        if rd is not self._handed_out:
            raise ConsensusError("advance() takes the Ready returned by the last ready()")
        rd.outbox  # noqa: B018 - raises PersistOrderError when persisting was skipped
        self._handed_out = None

    def durable_records(self) -> list[JournalRecord]:
        """Return a compacted journal equivalent to everything persisted so far.

        A caller may atomically replace its journal with this list to bound its size.
        """
        out: list[JournalRecord] = [RoundUsed(round=min(self._max_round, MAX_ROUND))]
        out += [Learned(slot=s, value=v) for s, v in self._map.entries()]
        out += self._acceptor.records()
        out += [MoveIntent(move=m) for m in self._moves]
        return out

    def clone(self) -> PaxosNode:
        """Return an independent copy that evolves exactly like this node (for search).

        Containers are copied one level deep; what they hold (messages, ballots, entries,
        commands, addresses) is immutable and shared. The RNG and the config are shared.

        Returns:
            The copy.

        Raises:
            ConsensusError: a ``Ready`` is handed out and not yet advanced.
        """
        if self._handed_out is not None:
            raise ConsensusError("clone() between ready() and advance()")
        new = PaxosNode.__new__(PaxosNode)
        new.__dict__.update({k: _copy1(v) for k, v in self.__dict__.items()})
        new._map = _copy_slots(self._map)
        new._acceptor = _copy_slots(self._acceptor)
        new._guard = self._guard.copy()
        if self._attempt is not None:
            new._attempt = _copy_slots(self._attempt)
        return new

    def state_key(self) -> tuple[Any, ...]:
        """Return a canonical, hashable summary of the whole state (for state-space search).

        Two nodes with equal keys behave identically on every future input, except for
        the RNG (used only when ``backoff_ticks > 0`` or by observers). Timers are kept
        relative to the current tick, clamped where larger values behave the same.
        """
        now = self._now
        a = self._attempt
        attempt_key = None if a is None else (
            a.slot, a.ballot, a.own, a.value, max(0, a.deadline - now),
            tuple(sorted((s, p.accepted_ballot, p.accepted_value) for s, p in a.promises.items())),
            tuple(sorted(a.accepted)),
        )
        patience = self._patience()
        return (
            self._acceptor.state_key(),
            tuple(self._map.entries()),
            self._max_round,
            tuple(m.encode() for m in self._moves),
            # Only "how long has this type waited, up to the patience" affects behaviour.
            tuple(
                (t, min(patience, now - max(asked, self._leader_heard)), t in self._remote)
                for t, asked in self._wanted.items()
            ),
            attempt_key,
            max(0, self._backoff_until - now),
            max(0, self._next_ask - now),
            max(0, self._next_catchup - now),
            max(0, self._next_status - now) if self._cfg.heartbeat_ticks else 0,
            self._failures,
            self._view,
            self._guard.state_key(now),
            # Last, so the explorer's indices into this key stay valid.
            tuple(
                (t, g, min(patience, now - max(asked, self._leader_heard)), t in self._retire_remote)
                for t, (g, asked) in self._retires.items()
            ),
        )

    # -- dispatch ------------------------------------------------------------------

    def _run(self, action: Callable[[], None]) -> None:
        if self._failed is not None:
            raise NodeFailed("node failed earlier; rebuild it from its journal") from self._failed
        try:
            action()
            self._drain()
            self._maybe_start()
            self._drain()
        except ConsensusError:
            raise
        except Exception as exc:  # a bug: refuse further input rather than limp on
            self._failed = exc
            raise

    def _receive(self, msg: Message) -> None:
        if msg.sender == self._id:
            self._guard.count("forged_self")  # our own messages never come from outside
            return
        self._dispatch(msg)

    def _dispatch(self, msg: Message) -> None:
        handler = self._HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg)

    def _drain(self) -> None:
        while self._local:
            self._dispatch(self._local.popleft())

    def _send(self, to: int, msg: Message) -> None:
        if to == self._id:
            self._local.append(msg)
        else:
            self._outbox.append(Outbound(to, msg))

    def _broadcast(self, msg: Message, *, loopback: bool) -> None:
        self._outbox.append(Outbound(None, msg))
        if loopback:
            self._local.append(msg)

    # -- local inputs --------------------------------------------------------------

    def _set_view(self, members: frozenset[int]) -> None:
        self._view = members - {self._id} if self._cfg.observer else members | {self._id}
        if self._attempt is not None:
            self._check_attempt(self._attempt)

    def _tick(self) -> None:
        self._now += 1
        self._forward_wanted()
        if self._cfg.heartbeat_ticks and self._now >= self._next_status:
            self._next_status = self._now + self._cfg.heartbeat_ticks
            self._broadcast(
                Status(sender=self._id, count=self._map.count, digest=self._map.digest),
                loopback=False,
            )
        if self._attempt is not None and self._now >= self._attempt.deadline:
            self._abandon(backoff=True)

    def _leader(self) -> int | None:
        # The distinguished proposer of "Paxos Made Simple" 2.4: the lowest id in the
        # view. Views that agree give one leader, so proposers rarely duel.
        if not self._view:
            return None
        if not self._cfg.follow_leader and not self._cfg.observer:
            return self._id
        return min(self._view)

    def _forward_wanted(self) -> None:
        leader = self._leader()
        if leader is None or leader == self._id or self._now < self._next_ask:
            return
        asks = [t for t in self._wanted if t not in self._map.groups]
        retires = list(self._retires)
        if asks or retires:
            self._next_ask = self._now + self._cfg.retry_ticks
            for name in asks:
                self._send(leader, ProposeRequest(sender=self._id, type_name=name))
            for name in retires:
                self._send(leader, RetireRequest(sender=self._id, type_name=name))

    def _on_propose_request(self, msg: ProposeRequest) -> None:
        # Only a peer's requests arrive here (``propose`` calls ``_want_own``), so
        # each new type costs the requester a token; repeats of a queued type are free.
        # Only the leader queues a peer's type (at most limits.max_pending of them); a
        # follower relays it once and keeps nothing, so after a flood the junk waits
        # in one bounded queue, behind every node's own types.
        name = msg.type_name
        if self._cfg.observer or name in self._map.groups or name in self._wanted:
            return
        try:
            check_type_name(name)
        except ConsensusError:
            return  # a peer's bad name: drop it, as with any malformed input
        if not self._guard.admit_propose(msg.sender, self._now, len(self._remote)):
            return
        leader = self._leader()
        if leader is not None and leader != self._id:
            self._send(leader, ProposeRequest(sender=self._id, type_name=name))
            return
        self._remote[name] = msg.sender
        self._want(name)

    def _on_retire_request(self, msg: RetireRequest) -> None:
        # As a ProposeRequest: it costs the requester a proposal token; a follower
        # relays it once and keeps nothing; the leader queues it, and peers' retires
        # and types share the bound on what it keeps for peers (limits.max_pending).
        name = msg.type_name
        if self._cfg.observer or name not in self._map.groups or name in self._retires:
            return
        pending = len(self._remote) + len(self._retire_remote)
        if not self._guard.admit_propose(msg.sender, self._now, pending):
            return
        leader = self._leader()
        if leader is not None and leader != self._id:
            self._send(leader, RetireRequest(sender=self._id, type_name=name))
            return
        self._want_retire(name, requester=msg.sender)

    def _want_retire(self, name: str, requester: int | None) -> None:
        group = self._map.groups.get(name)
        if group is None:
            return
        if name not in self._retires or self._retires[name][0] != group:
            self._retires[name] = (group, self._now)
        if requester is None:
            self._retire_remote.discard(name)
        else:
            self._retire_remote.add(name)
        self._next_ask = self._now  # ask the leader now, not at the next retry
        self._forward_wanted()

    def _prune_retires(self, learned: bytes) -> None:
        # A retire is done (or moot) once the placement it named is gone, or once it
        # was decided: an Assign of the same type decided in a later slot (a duplicate,
        # or a forger's) may put the type straight back, and proposing the same Retire
        # again would only fill the next hole below that Assign, over and over.
        groups = self._map.groups
        done = [t for t, (g, _) in self._retires.items()
                if groups.get(t) != g or Retire(type_name=t, group=g).encode() == learned]
        for name in done:
            del self._retires[name]
            self._retire_remote.discard(name)

    def _want(self, name: str) -> None:
        if name in self._map.groups or name in self._wanted:
            return
        self._wanted[name] = self._now
        self._next_ask = self._now  # forward to the leader now, not at the next retry
        self._forward_wanted()

    def _want_own(self, name: str) -> None:
        self._want(name)
        self._remote.pop(name, None)  # this node's own now, not a peer's

    def _unwant(self, name: str) -> None:
        self._wanted.pop(name, None)
        self._remote.pop(name, None)

    # -- acceptor ------------------------------------------------------------------

    def _on_prepare(self, msg: Prepare) -> None:
        if not (self._plausible_slot(msg.slot) and self._note_round(msg.ballot)):
            return
        self._note_leader(msg.sender)
        if self._cfg.observer or self._answer_decided(msg.sender, msg.slot):
            return
        reply, record = self._acceptor.on_prepare(msg)
        self._reply(msg.sender, reply, record)

    def _on_accept(self, msg: Accept) -> None:
        if not (self._plausible_slot(msg.slot) and self._note_round(msg.ballot)):
            return
        self._note_leader(msg.sender)
        self._yield_to(msg)
        if self._cfg.observer or self._answer_decided(msg.sender, msg.slot):
            return
        reply, record = self._acceptor.on_accept(msg)
        self._reply(msg.sender, reply, record)

    def _answer_decided(self, to: int, slot: int) -> bool:
        values = self._map.values_at(slot)
        for value in values:
            self._send(to, Commit(sender=self._id, slot=slot, value=value))
        return bool(values)

    def _reply(self, to: int, reply: Message, record: JournalRecord | None) -> None:
        if record is not None:
            self._persist.append(record)  # same Ready as the reply: durable before it leaves
        self._send(to, reply)

    # -- proposer ------------------------------------------------------------------

    def _on_promise(self, msg: Promise) -> None:
        a = self._attempt
        if a is None or a.in_phase2 or (msg.slot, msg.ballot) != (a.slot, a.ballot):
            return
        a.promises[msg.sender] = msg
        self._check_attempt(a)

    def _on_accepted(self, msg: Accepted) -> None:
        a = self._attempt
        if a is None or not a.in_phase2 or (msg.slot, msg.ballot) != (a.slot, a.ballot):
            return
        a.accepted.add(msg.sender)
        self._check_attempt(a)

    def _on_nack(self, msg: Nack) -> None:
        if not self._note_round(msg.promised):
            return
        a = self._attempt
        if a is not None and (msg.slot, msg.ballot) == (a.slot, a.ballot):
            self._abandon(backoff=True)

    def _check_attempt(self, a: Attempt) -> None:
        if not a.in_phase2 and a.promise_quorum(self._view):
            a.value = a.choose_value()
            self._broadcast(
                Accept(sender=self._id, slot=a.slot, ballot=a.ballot, value=a.value), loopback=True
            )
        elif a.value is not None and a.accept_quorum(self._view):
            self._attempt = None
            self._failures = 0
            self._learn(a.slot, a.value)
            self._broadcast(Commit(sender=self._id, slot=a.slot, value=a.value), loopback=False)

    def _maybe_start(self) -> None:
        if (
            self._cfg.observer
            or self._attempt is not None
            or self._now < self._backoff_until
            or self._id not in self._view
        ):
            return
        value = self._next_value()
        if value is None:
            return
        if self._max_round >= MAX_ROUND:
            # Only 2**46 forged messages get here (consensus/limits.py); refuse to
            # propose rather than build a ballot the wire cannot carry.
            self._guard.count("rounds_exhausted")
            return
        self._max_round += 1
        self._persist.append(RoundUsed(round=self._max_round))
        a = Attempt(
            slot=self._slot_for(value),
            ballot=Ballot(self._max_round, self._id),
            own=value,
            deadline=self._now + self._cfg.retry_ticks,
        )
        self._attempt = a
        self._broadcast(Prepare(sender=self._id, slot=a.slot, ballot=a.ballot), loopback=True)

    def _next_start(self) -> int | None:
        # The tick at which _maybe_start may begin an attempt with no input before it:
        # mirrors its conditions and _next_value's patience (early is safe, late is not).
        if self._cfg.observer or self._attempt is not None or self._id not in self._view:
            return None
        if self._moves:
            return self._backoff_until
        patience = self._patience()
        waits = [max(asked, self._leader_heard) + patience
                 for _, asked in self._retires.values()]
        waits += [max(asked, self._leader_heard) + patience for asked in self._wanted.values()]
        if not waits:
            return None
        return max(self._backoff_until, min(waits))

    def _next_value(self) -> bytes | None:
        for move in self._moves:
            return move.encode()
        # Followers leave retires and types to the leader; after three retry periods
        # without a decision (leader gone, or views disagree) they propose themselves.
        patience = self._patience()
        for name, (group, asked) in self._retires.items():
            if self._now - max(asked, self._leader_heard) >= patience:
                return Retire(type_name=name, group=group).encode()
        for name, asked in self._work_order():
            since = max(asked, self._leader_heard)
            if name in self._map.groups:
                self._unwant(name)
                continue
            if self._now - since < patience:
                continue
            try:
                group = self._map.choose(name)
            except AddressSpaceExhausted:
                self._unwant(name)  # cannot be assigned; retrying would spin forever
                continue
            return Assign(type_name=name, group=group).encode()
        return None

    def _slot_for(self, value: bytes) -> int:
        # An Assign of a type a Retire took off goes after that Retire (GroupMap.slot_for),
        # within the window acceptors accept; everything else in the lowest free slot.
        low = self._map.first_free_slot()
        cmd = decode_command(value)  # our own value: always a command
        if not isinstance(cmd, Assign):
            return low
        slot = self._map.slot_for(cmd.type_name)
        return slot if slot < low + SLOT_WINDOW else low

    def _work_order(self) -> list[tuple[str, int]]:
        # This node's own types first, then peers' round-robin by requester, oldest
        # first: a flood of peers' requests must not hold back what this node's
        # application needs, and one requester's flood must not hold back another's.
        ranks: dict[int, int] = {}
        keyed = []
        for i, (name, asked) in enumerate(self._wanted.items()):
            requester = self._remote.get(name)
            rank = -1
            if requester is not None:
                rank = ranks[requester] = ranks.get(requester, -1) + 1
            keyed.append(((rank, i), (name, asked)))
        keyed.sort()
        return [item for _, item in keyed]

    def _patience(self) -> int:
        return 0 if self._leader() == self._id else 3 * self._cfg.retry_ticks

    def _abandon(self, *, backoff: bool) -> None:
        self._attempt = None
        if backoff:
            self._failures = min(self._failures + 1, 5)
            spread = self._cfg.backoff_ticks << (self._failures - 1)
            jitter = self._rng.randint(0, spread) if spread else 0
            # Back off at least half a retry so a competitor that just won phase 1 can
            # finish phase 2 before we preempt it again.
            self._backoff_until = self._now + 1 + self._cfg.backoff_ticks // 2 + jitter

    def _yield_to(self, msg: Accept) -> None:
        # Another proposer is already in phase 2 for our slot with a higher ballot: let it
        # finish instead of duelling (Paxos Made Simple 2.4 on progress).
        a = self._attempt
        if a is not None and msg.slot == a.slot and msg.ballot > a.ballot:
            self._abandon(backoff=True)

    def _note_leader(self, sender: int) -> None:
        if sender == self._leader():
            self._leader_heard = self._now

    def _note_round(self, ballot: Ballot) -> bool:
        # Starting above every round seen avoids a sure Nack; not needed for safety.
        # A round far above every round seen is refused (consensus/limits.py): adopted,
        # it would leave no honest ballot able to exceed it. A node that really is behind
        # catches up by ROUND_STEP per refused message.
        r = ballot.round
        if r <= self._max_round:
            return True
        ceiling = min(MAX_ROUND, self._max_round + ROUND_STEP)
        if r <= ceiling:
            self._max_round = r
            return True
        self._guard.count("implausible_round")
        if r <= MAX_ROUND:
            self._max_round = ceiling
        return False

    def _plausible_slot(self, slot: int) -> bool:
        # Bounds acceptor state and learned entries to SLOT_WINDOW undecided slots.
        if slot < self._map.first_free_slot() + SLOT_WINDOW:
            return True
        self._guard.count("implausible_slot")
        return False

    # -- learner and anti-entropy --------------------------------------------------

    def _on_commit(self, msg: Commit) -> None:
        # A Commit is one unauthenticated datagram: it may add a decision to an empty
        # slot, from a member of the view, at a bounded rate; it may not overwrite a
        # decided slot or move a placed type. Those only happen in a merge, and merges
        # come through catch-up, which this node asks for (docs/consensus.md).
        entry = (msg.slot, msg.value)
        if entry in self._map:
            return
        if msg.sender not in self._view:
            self._guard.count("commit_stranger")
        elif not self._plausible_slot(msg.slot):
            pass
        elif self._map.has_slot(msg.slot):
            self._guard.count("commit_conflict")
        elif self._map.replaces(entry):
            self._guard.count("commit_replaces")
        elif self._guard.admit_learn(self._now):
            self._learn(msg.slot, msg.value)

    def _on_status(self, msg: Status) -> None:
        if (
            msg.sender == self._id
            or msg.digest == self._map.digest
            or msg.count < self._map.count
            or self._now < self._next_catchup
        ):
            return
        self._next_catchup = self._now + self._cfg.catchup_ticks
        # The reply is welcome for three request periods: it may come in several chunks.
        self._guard.note_asked(msg.sender, self._now + 3 * self._cfg.catchup_ticks, self._now)
        self._send(msg.sender, CatchUpRequest(sender=self._id))

    def _on_catchup_request(self, msg: CatchUpRequest) -> None:
        # Addressed to the requester alone (Outbound.to); at most once per catchup_ticks
        # per requester and a few a second in all, since one request costs count/16 replies.
        if not self._guard.admit_catchup_answer(msg.sender, self._now):
            return
        entries = self._map.entries()
        for i in range(0, len(entries), MAX_ENTRIES_PER_REPLY):
            chunk = tuple(entries[i : i + MAX_ENTRIES_PER_REPLY])
            self._send(msg.sender, CatchUpReply(sender=self._id, entries=chunk))

    def _on_catchup_reply(self, msg: CatchUpReply) -> None:
        if not self._guard.was_asked(msg.sender, self._now):
            return
        for slot, value in msg.entries:
            if (slot, value) in self._map or not self._plausible_slot(slot):
                continue
            if not self._guard.admit_learn(self._now):
                return
            self._learn(slot, value)

    def _learn(self, slot: int, value: bytes) -> None:
        entry = (slot, value)
        if entry in self._map:
            return
        self._decided_values.add(value)
        changes = self._map.add(entry)
        self._persist.append(Learned(slot=slot, value=value))
        self._decided.append(entry)
        self._leader_heard = self._now  # progress: whoever leads is working
        self._changes.extend(changes)
        self._acceptor.forget(slot)
        for change in changes:
            if change.new is not None:
                self._unwant(change.type_name)
                self._owe_move(change)
        self._moves = [m for m in self._moves if m.encode() not in self._decided_values]
        if self._retires:
            self._prune_retires(value)
        if self._attempt is not None and self._attempt.slot == slot:
            self._abandon(backoff=False)  # the slot is taken; move on to the next one

    def _owe_move(self, change: MapChange) -> None:
        # A type this node already placed was re-placed by a merge: it owes the network
        # an explicit Move decision so every node listens on both groups.
        if change.old is None or change.new is None or self._cfg.observer:
            return  # observers never propose; a member that held the old group owes it
        move = Move(type_name=change.type_name, old=change.old, new=change.new)
        if move.encode() in self._decided_values or move in self._moves:
            return
        self._moves.append(move)
        self._persist.append(MoveIntent(move=move))

    _HANDLERS: dict[type, Callable[[PaxosNode, Any], None]] = {
        Prepare: _on_prepare,
        Promise: _on_promise,
        Accept: _on_accept,
        Accepted: _on_accepted,
        Nack: _on_nack,
        Commit: _on_commit,
        Status: _on_status,
        CatchUpRequest: _on_catchup_request,
        CatchUpReply: _on_catchup_reply,
        ProposeRequest: _on_propose_request,
        RetireRequest: _on_retire_request,
    }


_CONTAINERS = frozenset({dict, list, set, deque})


def _copy1(value: Any) -> Any:
    # One level: the containers a node holds are mutable, their contents are not.
    return value.copy() if type(value) in _CONTAINERS else value


def _copy_slots(obj: Any) -> Any:
    copied = object.__new__(type(obj))
    for name in type(obj).__slots__:
        object.__setattr__(copied, name, _copy1(getattr(obj, name)))
    return copied
