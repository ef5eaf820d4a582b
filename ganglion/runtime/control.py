"""The control channel: heartbeats, the agreement runner, and last-value answers.

Theory of operation: the control channel is an :class:`Endpoint` on the control
group (``239.255.0.1``, port 47801) carrying the types of
:mod:`ganglion.runtime.control_messages`. Around it:

* **Membership.** A heartbeat goes out every ``heartbeat_seconds``; peers silent
  for ``peer_timeout`` drop out. The live members (plus this node) are the view
  handed to the consensus state machine, whose quorums are majorities of it. A
  new id counts only once it proves it is live now: its heartbeat echoes the
  random nonce of this node's run (:mod:`ganglion.membership`), so neither a
  flood of forged ids nor a dead node's replayed recording enters the view; the
  table is bounded and new ids are admitted at a bounded rate.
* **Agreement runner** (STYLE.md section 5, raft's ``rafttest/node.go`` loop): a
  ``PaxosFrame`` received is decoded and passed to ``PaxosNode.step``; logical
  ticks are ``tick_seconds`` apart, but the channel wakes only when one is due to
  act (see *Waking by deadlines* below). After either, :meth:`_pump` takes every
  ``Ready``, appends ``to_persist`` to the journal with an fsync *before* sending
  its messages, applies the map changes, and advances. The journal is compacted
  when it grows. Sending and applying call out (the endpoint hands a published
  frame to local subscribers, the node reacts to a map change by proposing), and
  a call that reaches :meth:`_pump` again would ask for a second ``Ready`` before
  the first is advanced; so a nested pump only returns, and the outer one, which
  loops while the state machine has anything ready, takes what it was called for.
* **Last values.** A late joiner broadcasts a ``LastValueRequest``; every node
  that published the type answers with its latest message (``LastValue``, tagged
  with the requester's id), one per key for a keyed type (one per sensor), oldest
  first, as many as the requester's answer budget allows (newest kept). The request also shows that the requester subscribes
  to the type, so it counts as interest at once (see below), before the answer:
  what is published after the answered message is then sent, not skipped.
* **Matching.** Heartbeats carry the types this node subscribes to. When that set
  changes, a heartbeat goes out at once, at most one extra per
  :data:`MIN_HEARTBEAT_GAP`; so does one when a new peer is heard, so a newcomer
  learns everyone's subscriptions within milliseconds. ``on_peers_changed`` is
  called whenever what the live peers subscribe to may have changed (a peer
  joined, left, timed out, or changed its list).

* **Waking by deadlines.** Tick ``n`` falls at a loop time that
  :class:`~ganglion.runtime._tickclock.TickClock` gives (``tick_seconds`` apart
  once the first heartbeat interval is over). One timer is set for the earliest
  tick at which something is due: the state machine's :meth:`~consensus.PaxosNode.next_deadline` (its ``Status``, a retry, a
  backoff's end), the next heartbeat, or a peer's timeout. When it fires, and before
  any input reaches the state machine, :meth:`_catch_up` calls ``tick()`` once for
  every tick that has passed, so the logical clock reads as if it had ticked on
  time; ticks before a deadline do nothing, which ``consensus/sim`` checks. A loop
  stalled for longer than a heartbeat interval slips the clock by whole intervals
  instead of running several intervals' worth of ticks at once. Heartbeats go out on
  the tick of the state machine's ``Status``, and those ticks sit on the wall
  clock's multiples of ``heartbeat_seconds`` (the tick clock's module says how),
  so on a network with synchronised clocks every node sends at the same moment
  and an idle node wakes about twice per interval, not once per peer heartbeat.
* **Schemas** (docs/protocol.md 7.6). A ``SchemaRequest`` is answered by every
  node that publishes the type and has its class (within the requester's budget),
  with a ``Schema`` to the group; what arrives is checked and kept in a bounded
  :class:`~ganglion.schemas.SchemaCache`, so nodes without the class know units
  and kinds. A node of an older version has no subscriber of either type: it
  drops them like any unknown control type.
* **Retires.** A ``RetireRequest`` (``ganglion types --retire``) is refused, and
  counted as ``retire_refused_published``, while this node or a live peer lists
  the type in ``publishes``; otherwise it costs the requester a proposal token.
* **Repair** (docs/protocol.md 7.7, :mod:`ganglion.runtime._repairing`). Given
  :class:`~ganglion.runtime._repairing.RepairParts`, the channel carries repair
  requests, repairs and history requests, puts the node's quiet streams' last
  numbers in its heartbeats (``tails``) and hands peers' tails to the data
  endpoint. The repair machines run on a timer of their own: their waits are
  milliseconds, below the tick.
* **Budgets** (:mod:`ganglion.control_budget`). ``ProposeRequest``,
  ``RetireRequest`` and ``CatchUpRequest`` are served only for peers in the
  membership table and within token buckets; a consensus message whose sender is not the datagram's
  sender is dropped. A catch-up answer (the whole map) goes by unicast to the
  requester when its address is known and no other known peer shares it (peers
  on one host share the control port, and the kernel hands a unicast datagram to
  one socket only), from a socket with the multicast TTL; otherwise to the group.

Malformed control input (bad CBOR, invalid consensus messages, heartbeats that
do not fit the schema) is counted and dropped; nothing a peer sends stops the
channel. Every refusal is counted in :meth:`ControlChannel.stats`.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import random
import socket
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import cbor2

from consensus import Config, MapChange, PaxosNode, message_from_wire
from consensus.errors import ConsensusError
from consensus.messages import (
    CatchUpReply,
    CatchUpRequest,
    Message,
    ProposeRequest,
    RetireRequest,
)
from ganglion import defaults
from ganglion.control_budget import RequestBudget, UnicastChoice
from ganglion.membership import (
    MAX_ASK,
    MAX_ECHO,
    MEMBER,
    NONCE_SIZE,
    OBSERVER,
    Heard,
    Liveness,
    Membership,
    MembershipLimits,
    PeerInfo,
)
from ganglion.runtime._repairing import RepairGlue, RepairParts
from ganglion.runtime._tickclock import TickClock
from ganglion.runtime.control_messages import (
    Heartbeat,
    LastValue,
    LastValueRequest,
    PaxosFrame,
    SchemaAnnounce,
    SchemaField,
    SchemaRequest,
)
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.journal import Journal
from ganglion.runtime.subscription import MessageInfo
from ganglion.schemas import SchemaCache, check_announced
from ganglion.types import FINGERPRINT_SIZE, TypeSchema, is_valid_type_name
from ganglion.wallgrid import wall_offset
from ganglion.wire import KeyRing

_log = logging.getLogger(__name__)

#: Control datagrams may exceed the data budget: a catch-up reply carries up to 16
#: map entries. On the local link an IP-fragmented datagram is still delivered.
CONTROL_MAX_DATAGRAM = 16_384
#: Shortest time between two heartbeats sent early (subscriptions changed, a peer joined).
MIN_HEARTBEAT_GAP = 0.05
#: Longest ``subscribes`` list, in bytes of names, a heartbeat carries; beyond it the
#: heartbeat says None ("every type"), which is safe, only wasteful.
MAX_SUBSCRIBES_BYTES = 12_000
#: Longest nonce accepted in a peer's heartbeat (ours are NONCE_SIZE bytes).
MAX_NONCE_BYTES = 32
#: Deepest nesting a consensus message has on the wire is 3 (a catch-up reply's
#: entries); anything deeper is malformed.
_BODY_MAX_DEPTH = 8


def _refuse_tag(decoder: object) -> object:
    raise cbor2.CBORDecodeError("CBOR tags are not part of a consensus message")


#: A consensus message is plain ints, bytes, text, lists and null: every tag cbor2
#: would decode is refused, above all shared references (28/29) and string
#: references (25/256), which let a 250-byte body expand into a graph whose
#: decoding stalls the loop for most of a second.
_BODY_TAGS: dict[int, Any] = dict.fromkeys(
    (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261, 1004,
     43000, 55799), _refuse_tag)


class ControlChannel:
    """Membership, agreement and last values for one node.

    Args:
        node_id: this node's 8-byte id.
        name: this node's human name (in heartbeats).
        version: the ganglion version string (in heartbeats).
        interface: IPv4 address of the chosen interface.
        port: the control UDP port.
        group: the control multicast group.
        key: the network key, if any.
        ttl: multicast TTL.
        observer: True for short-lived tools: never in a quorum, no journal.
        journal: where acceptor state is persisted (required for members).
        rng: randomness for the consensus node (backoff jitter).
        tick_seconds: length of one consensus tick.
        heartbeat_seconds: interval between heartbeats.
        peer_timeout: seconds of silence after which a peer is gone.
        on_change: called with each map change (assign or move).
        publishes: returns the type names this node publishes (for heartbeats).
        clock_synced: returns whether this node's clock is synchronised.
        last_value: returns this node's latest messages of a type as ``LastValue``
            templates (``to`` is filled in), one per key, oldest first; empty (or
            None) when it has none.
        on_last_value: called with a ``LastValue`` addressed to this node.
        subscribes: returns the types this node has subscribers of (for heartbeats);
            None sends no list (peers then send this node every type).
        on_peers_changed: called when what the live peers subscribe to may have changed.
        limits: the membership budget; by default :class:`~ganglion.membership.MembershipLimits`
            with the probation of peers that cannot prove liveness (older nodes) on
            only without a key: with one, replays are what the proof stops, so such
            peers never count (give ``MembershipLimits()`` to admit them during an upgrade).
        schema_of: this node's schema of a type it publishes, or None.
        repair: what repair needs from the node (its history, requester and data
            endpoint); None: this channel neither asks for nor answers repairs.
        boot: the boot counter of the control endpoint: give the data endpoint's, so
            that a heartbeat's ``tails`` name the boot of the streams they describe.
    """

    def __init__(
        self,
        *,
        node_id: bytes,
        name: str,
        version: str,
        interface: str,
        port: int = defaults.CONTROL_PORT,
        group: str = defaults.CONTROL_GROUP,
        key: bytes | KeyRing | None = None,
        ttl: int = defaults.DEFAULT_TTL,
        observer: bool = False,
        journal: Journal | None = None,
        rng: random.Random | None = None,
        tick_seconds: float = 0.05,
        heartbeat_seconds: float = 0.5,
        peer_timeout: float = 2.0,
        on_change: Callable[[MapChange], None],
        publishes: Callable[[], list[str]],
        clock_synced: Callable[[], bool],
        last_value: Callable[[str], list[LastValue] | LastValue | None],
        on_last_value: Callable[[LastValue, MessageInfo], None],
        subscribes: Callable[[], list[str]] | None = None,
        on_peers_changed: Callable[[], None] | None = None,
        limits: MembershipLimits | None = None,
        schema_of: Callable[[str], TypeSchema | None] | None = None,
        repair: RepairParts | None = None,
        boot: int | None = None,
    ) -> None:
        if not observer and journal is None:
            raise ValueError("a member node needs a journal to persist its promises")
        self.node_id = node_id
        self.int_id = int.from_bytes(node_id, "big")
        self.name = name
        self.version = version
        self.observer = observer
        self._journal = journal
        self._tick_seconds = tick_seconds
        self._heartbeat_every = max(1, round(heartbeat_seconds / tick_seconds))
        self._on_change = on_change
        self._publishes = publishes
        self._clock_synced = clock_synced
        self._last_value = last_value
        self._on_last_value = on_last_value
        self._subscribes = subscribes
        self._on_peers_changed = on_peers_changed
        self._schema_of = schema_of
        #: Schemas announced by publishers (docs/protocol.md 7.6).
        self.schemas = SchemaCache()
        self._schema_events: dict[str, asyncio.Event] = {}
        self._last_heartbeat = float("-inf")
        self._early_heartbeat: asyncio.TimerHandle | None = None
        if limits is None:
            limits = MembershipLimits(legacy_probation=None if key is not None
                            else defaults.LEGACY_PROBATION_SECONDS)
        # Fresh at every start (docs/protocol.md 7.2): a heartbeat echoing it was sent
        # by a peer that heard this run of this node, so it is no replayed recording.
        self.nonce = os.urandom(NONCE_SIZE)  # secrets.token_bytes, without loading hmac
        self.membership = Membership(node_id, timeout=peer_timeout, self_is_member=not observer,
                                     nonce=self.nonce, limits=limits)
        self._interest_epoch = self.membership.interest_epoch
        self._ttl = ttl
        self._unicast: socket.socket | None = None
        self._unicast_choice = UnicastChoice()
        self._budget = RequestBudget(lambda node_id: self.membership.known(node_id) is not None)
        records = journal.load() if journal is not None else []
        self.paxos = PaxosNode(
            Config(node_id=self.int_id, observer=observer,
                   heartbeat_ticks=self._heartbeat_every, retry_ticks=10, backoff_ticks=6,
                   catchup_ticks=10),
            rng=rng or random.Random(), records=records,
        )
        self.endpoint = Endpoint(interface=interface, port=port, node_id=node_id, key=key,
                                 ttl=ttl, max_datagram=CONTROL_MAX_DATAGRAM,
                                 group_for=lambda _name: group, boot=boot)
        self._repair_parts = repair
        #: The repair glue, once started (None when repair is not given).
        self.repair: RepairGlue | None = None
        self._heartbeat_seconds = heartbeat_seconds
        self.counts: collections.Counter[str] = collections.Counter()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_tick = 0  # the tick the timer is set for
        self._clock: TickClock | None = None  # when each tick falls; set at start
        self._started = False
        self._ticks = 0
        self._pumping = False  # _pump is running: a nested call defers to it

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the control endpoint, replay the journal's map, start ticking."""
        await self.endpoint.start()
        self._unicast = self._open_unicast_socket()
        ep = self.endpoint
        ep.subscribe(Heartbeat, callback=self._on_heartbeat)
        ep.subscribe(PaxosFrame, callback=self._on_paxos)
        ep.subscribe(LastValueRequest, callback=self._on_last_value_request)
        ep.subscribe(LastValue, callback=self._on_last_value_message)
        ep.subscribe(SchemaRequest, callback=self._on_schema_request)
        ep.subscribe(SchemaAnnounce, callback=self._on_schema)
        if self._repair_parts is not None:
            self.repair = RepairGlue(self._repair_parts, ep, node_id=self.node_id,
                                     clock_synced=self._clock_synced,
                                     heartbeat_seconds=self._heartbeat_seconds)
            self.repair.carrier = self.next_heartbeat_at
            self.repair.start()
        for type_name, group in self.paxos.groups.items():
            # the map rebuilt from the journal: a restarted node keeps its groups
            self._on_change(MapChange(type_name=type_name, old=None, new=group))
        self.paxos.set_view(self.membership.view())
        loop = asyncio.get_running_loop()
        self._send_heartbeat()
        self._pump()
        # The wall clock as this loop maps it once (ganglion.wallgrid), so that other
        # periodic work on the same grid (a plugin's polls) shares the heartbeats' wake-ups.
        now = loop.time()
        self._clock = TickClock(now, now + wall_offset(loop), self._tick_seconds,
                                self._heartbeat_every)
        self._started = True
        self._reschedule()

    async def close(self) -> None:
        """Say goodbye, stop ticking and close the control endpoint."""
        self._started = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._early_heartbeat is not None:
            self._early_heartbeat.cancel()
            self._early_heartbeat = None
        if self.repair is not None:
            self.repair.close()
        try:
            self._send_heartbeat(goodbye=True)
        except Exception:  # the endpoint may already be broken; closing must go on
            _log.debug("could not send the goodbye heartbeat", exc_info=True)
        if self._unicast is not None:
            self._unicast.close()
            self._unicast = None
        await self.endpoint.close()

    # -- requests from the node ------------------------------------------------------

    def propose(self, type_name: str) -> None:
        """Ask the network for a group for ``type_name`` (no-op once it has one)."""
        if type_name in self.paxos.groups:
            return
        self._catch_up()
        self.paxos.propose(type_name)
        self._pump()

    def retire(self, type_name: str) -> None:
        """Ask the network to retire ``type_name`` (no-op when it has no group).

        The caller checks that nobody publishes it (:meth:`publishers`).
        """
        self._catch_up()
        self.paxos.retire(type_name)
        self._pump()

    def publishers(self, type_name: str) -> list[str]:
        """Names of the live nodes, this one included, that publish ``type_name``."""
        names = [self.name] if type_name in self._publishes() else []
        return names + sorted(p.name for p in self.membership.peers() if type_name in p.publishes)

    def groups(self) -> dict[str, IPv4Address]:
        """The agreed map as this node knows it."""
        return dict(self.paxos.groups)

    def peers(self) -> list[PeerInfo]:
        """The live peers: heard on the control channel and proven live (not candidates)."""
        return self.membership.peers()

    def heard(self) -> list[PeerInfo]:
        """Every peer in the membership table, candidates (not yet proven live) too."""
        return self.membership.peers() + self.membership.candidates()

    def request_last_values(self, type_name: str) -> None:
        """Ask every publisher of ``type_name`` for its latest message."""
        self.endpoint.publish(LastValueRequest(type_name=type_name))

    def request_history(self, type_name: str, seconds: float) -> bool:
        """Ask every publisher of ``type_name`` for what it still holds of the last
        ``seconds`` (docs/protocol.md 7.7); the answers reach the data endpoint's
        subscribers, each message once. Returns whether a request went out (not
        without repair)."""
        if self.repair is None:
            return False
        self.repair.request_history(type_name, seconds)
        return True

    def request_schema(self, type_name: str, fingerprint: bytes | None = None) -> bool:
        """Ask the publishers of ``type_name`` for its schema (at most once a second per
        version). Returns whether a request went out."""
        if not self.schemas.should_ask(type_name, fingerprint, asyncio.get_running_loop().time()):
            return False
        self.endpoint.publish(SchemaRequest(type_name=type_name, fingerprint=fingerprint))
        self.counts["schema_requested"] += 1
        return True

    def schema_event(self, type_name: str) -> asyncio.Event:
        """An event set (and replaced) whenever a schema of ``type_name`` is learned."""
        event = self._schema_events.get(type_name)
        if event is None:
            if len(self._schema_events) >= self.schemas_waited_max:
                self._schema_events.clear()  # waiters re-check on timeout; bounded table
            event = self._schema_events[type_name] = asyncio.Event()
        return event

    #: Type names with a waiting :meth:`schema_event` at most.
    schemas_waited_max = 256

    def heartbeat_soon(self) -> None:
        """Send a heartbeat now, or as soon as :data:`MIN_HEARTBEAT_GAP` allows.

        For changes peers should learn at once (this node's subscriptions).
        """
        if self._early_heartbeat is not None or not self._started:
            return  # one is already due, or the channel is not running
        loop = asyncio.get_running_loop()
        wait = self._last_heartbeat + MIN_HEARTBEAT_GAP - loop.time()
        if wait <= 0:
            self._send_heartbeat()
        else:
            self._early_heartbeat = loop.call_later(wait, self._send_early_heartbeat)

    def next_heartbeat_at(self) -> float | None:
        """The loop time of the next heartbeat on the tick grid (None: not running).

        Repair lets a first request ride it (``RepairGlue.carrier``); an early
        heartbeat (:meth:`heartbeat_soon`) carries what rides too.
        """
        clock = self._clock
        if not self._started or clock is None:
            return None
        tick = max(self._ticks, clock.ticks_at(asyncio.get_running_loop().time()))
        # Heartbeats on ticks 1 + k * every, k >= 1 (see _catch_up).
        k = max(1, (tick - 1) // self._heartbeat_every + 1)
        return clock.time_of(1 + k * self._heartbeat_every)

    def stats(self) -> dict[str, Any]:
        """Counters of the control channel.

        Besides the counters of what was received, sent and dropped (docs/security.md
        names each), the sizes of the bounded tables: ``view`` (the quorum view),
        ``members``, ``observers`` and ``candidates`` (the membership table) and
        ``types`` (the agreed map); under ``consensus``, what the agreement state
        machine itself refused (:attr:`consensus.PaxosNode.counters`: its own limits,
        a second layer behind these, with some of the same names).
        """
        return {**self.counts, **self.membership.counts, **self._budget.counts,
                **self.schemas.counts, "schemas": len(self.schemas),
                **self.membership.sizes(), "rate_keys_evicted": self._budget.evicted,
                "view": len(self.paxos.view),
                "types": len(self.paxos.groups), "ticks": self._ticks,
                **(self.repair.stats() if self.repair is not None else {}),
                "consensus": dict(self.paxos.counters)}

    # -- the runner ------------------------------------------------------------------

    def _on_timer(self) -> None:
        self._timer = None
        try:
            self._catch_up(due=self._timer_tick)
            self._pump()  # which sets the timer again when it is done
        except Exception:
            self.counts["tick_errors"] += 1
            _log.exception("control tick failed")
            self._reschedule()

    def _catch_up(self, due: int = 0) -> None:
        """Tick once for every tick that has passed: heartbeats, timeouts, ``tick()``.

        A heartbeat tick's datagrams (``Heartbeat``, then the ``Status`` the caller
        pumps) leave together at the end of this loop iteration, with no yield of the
        CPU between them, so that every peer reads both in one wake-up.

        Args:
            due: a tick known to have passed (the timer's, which may fire a little
                before the loop's clock says so); the clock decides beyond it.
        """
        clock = self._clock
        if not self._started or clock is None:
            return
        now = asyncio.get_running_loop().time()
        due = max(due, clock.ticks_at(now))
        ticks = self._ticks
        if due <= ticks:
            return
        every = self._heartbeat_every
        excess = due - (ticks + self._ticks_to_act())
        if excess > every:
            # Stalled for more than a heartbeat interval past a tick that acts: slip the
            # clock by whole intervals (the grid stays on the wall clock's multiples)
            # rather than run several intervals' worth of Status and retries at once.
            clock.slip(excess // every)
            due -= excess // every * every
        # Heartbeats on ticks 1 + k * every, k >= 1 (start() sent the first).
        heartbeat = (due - 1) // every > max(ticks - 1, 0) // every
        for _ in range(due - ticks):
            self.paxos.tick()
        self._ticks = due
        if heartbeat:
            self.endpoint.hold_sends()
            self._send_heartbeat()
        gone = self.membership.expire(max(now, clock.time_of(due)))
        for peer in gone:
            _log.info("peer %s (%s) timed out", peer.name, peer.id.hex())
        if gone:
            self.paxos.set_view(self.membership.view())
        self._peers_changed()  # only calls out when the peers' interest changed

    def _ticks_to_act(self) -> int:
        """Ticks from now to the first that acts: the state machine's, a heartbeat, a timeout."""
        ticks = self._ticks
        ahead = (-ticks) % self._heartbeat_every + 1  # heartbeats on ticks 1, 1 + every, ...
        deadline = self.paxos.next_deadline()
        if deadline is not None:
            ahead = min(ahead, deadline)
        expiry = self.membership.next_expiry()
        if expiry is not None and self._clock is not None:
            # The first tick after it: Membership.expire drops who is silent for longer.
            ahead = min(ahead, max(1, self._clock.first_tick_after(expiry) - ticks))
        return ahead

    def _reschedule(self) -> None:
        """Set the timer for the next tick that acts (after every input and every wake)."""
        if not self._started or self._clock is None:
            return
        tick = self._ticks + self._ticks_to_act()
        if self._timer is not None:
            if self._timer_tick == tick:
                return
            self._timer.cancel()
        self._timer_tick = tick
        self._timer = asyncio.get_running_loop().call_at(self._clock.time_of(tick),
                                                         self._on_timer)

    def _pump(self) -> None:
        if self._pumping:
            # Called back from inside the loop below, with a Ready not yet advanced:
            # whatever the caller stepped or proposed is taken by the outer loop.
            self.counts["pump_deferred"] += 1
            return
        self._pumping = True
        try:
            self._pump_ready()
        finally:
            self._pumping = False

    def _pump_ready(self) -> None:
        """Carry out every ``Ready`` in order (only :meth:`_pump` calls this)."""
        paxos = self.paxos
        while paxos.has_ready():
            rd = paxos.ready()
            if rd.to_persist:
                if self._journal is not None:
                    self._journal.append(rd.to_persist)
                rd.mark_persisted()
            unicast: dict[int, str | None] = {}
            for env in rd.outbox:
                frame = PaxosFrame(body=cbor2.dumps(env.msg.to_wire()), to=env.to)
                self.counts["paxos_sent"] += 1
                if env.to is not None and isinstance(env.msg, CatchUpReply):
                    # The whole map for one node: to its address alone where that
                    # reaches it, not to every node on the group.
                    if env.to not in unicast:
                        unicast[env.to] = self._unicast_address(env.to)
                    address = unicast[env.to]
                    if address is not None and self._send_unicast(frame, address):
                        continue
                self.endpoint.publish(frame)
            for change in rd.changes:
                try:
                    self._on_change(change)
                except Exception:
                    _log.exception("applying %s failed", change.describe())
            paxos.advance(rd)
        if self._journal is not None and self._journal.needs_compaction():
            self._journal.replace(paxos.durable_records())
        self._reschedule()  # what was stepped may have brought a deadline nearer

    def _update_view(self) -> None:
        self._catch_up()
        self.paxos.set_view(self.membership.view())
        self._pump()

    # -- control messages ------------------------------------------------------------

    def _send_early_heartbeat(self) -> None:
        self._early_heartbeat = None
        try:
            self._send_heartbeat()
        except Exception:
            self.counts["tick_errors"] += 1
            _log.exception("sending a heartbeat failed")

    def _send_heartbeat(self, *, goodbye: bool = False) -> None:
        subscribes: list[str] | None = None
        if self._subscribes is not None:
            subscribes = sorted(self._subscribes())
            if sum(len(name) + 2 for name in subscribes) > MAX_SUBSCRIBES_BYTES:
                subscribes = None
        self._last_heartbeat = asyncio.get_running_loop().time()
        ask = self.membership.ask()
        echo = self.membership.echo()
        tails = repairs = None
        if self.repair is not None and not goodbye:
            tails = self.repair.tails()
            repairs = self.repair.carried()  # first repair requests riding this heartbeat
        self.endpoint.publish(Heartbeat(
            name=self.name, role=OBSERVER if self.observer else MEMBER, version=self.version,
            clock_synced=self._clock_synced(), publishes=sorted(self._publishes()),
            goodbye=goodbye, subscribes=subscribes, nonce=self.nonce,
            ask=ask or None, echo=echo or None, tails=tails, repairs=repairs))

    def _peers_changed(self) -> None:
        epoch = self.membership.interest_epoch
        if epoch == self._interest_epoch:
            return  # nobody's subscriptions changed the union: nothing to redo
        self._interest_epoch = epoch
        if self._on_peers_changed is not None:
            try:
                self._on_peers_changed()
            except Exception:
                _log.exception("reacting to a change of the peers' subscriptions failed")

    def _on_heartbeat(self, hb: Heartbeat, info: MessageInfo) -> None:
        if info.local:
            return  # our own, handed back as it is published: the membership skips its own id
        if not isinstance(hb, Heartbeat) or not _plausible_nonce(hb.nonce):
            # A heartbeat of another schema whose fields do not fit ours arrives as a
            # Record: counted, never an exception per datagram.
            self.counts["heartbeat_malformed"] += 1
            return
        if hb.goodbye:
            gone = self.membership.forget(info.sender)
            if gone is not None:
                _log.info("peer %s (%s) said goodbye", gone.name, info.sender.hex())
                self._update_view()
                self._peers_changed()
            return
        if self.repair is not None:
            # Before the membership's reaction: a new peer triggers an early heartbeat of
            # ours, which must not carry a request this heartbeat already made for us.
            if hb.tails is not None:
                self.repair.on_tails(hb.tails, info)
            if hb.repairs is not None:
                self.repair.on_carried(hb.repairs, info)
        role = hb.role if hb.role in (MEMBER, OBSERVER) else OBSERVER
        subscribes = None if hb.subscribes is None else frozenset(hb.subscribes)
        heard = self.membership.heard(PeerInfo(
            id=info.sender, name=hb.name, role=role, version=hb.version,
            address=info.source[0] if info.source else "", publishes=tuple(hb.publishes),
            clock_synced=hb.clock_synced, last_seen=asyncio.get_running_loop().time(),
            subscribes=subscribes), _liveness(hb))
        self._react(heard, hb, info.sender, role)

    def _react(self, heard: Heard, hb: Heartbeat, sender: bytes, role: str) -> None:
        """Do what one heartbeat's outcome asks for; each step costs only when needed."""
        if heard.refused is not None:
            if heard.view_changed:
                self._update_view()
            self._peers_changed()
            return
        if heard.new:
            _log.debug("heard %s (%s, %s), not proven live yet", hb.name, sender.hex(), role)
        if heard.new or heard.asked:
            # Tell a newcomer what we subscribe to and ask it for proof; echo the
            # nonce of a peer that asks us. Rate-limited (MIN_HEARTBEAT_GAP).
            self.heartbeat_soon()
        if heard.view_changed:
            live = self.membership.get(sender) is not None
            _log.info("peer %s (%s, %s) %s", hb.name, sender.hex(), role,
                      "joined" if live else "left the view")
            self._update_view()
        self._peers_changed()

    def _on_paxos(self, frame: PaxosFrame, info: MessageInfo) -> None:
        if info.local:
            # Our own frame, handed back by the endpoint while _pump publishes it: the
            # state machine has already looped its own messages back; stepping them
            # again would re-enter _pump with a Ready outstanding.
            return
        if not isinstance(frame, PaxosFrame):
            self.counts["paxos_malformed"] += 1  # fields that do not fit: a Record
            return
        if frame.to is not None and frame.to != self.int_id:
            return
        try:
            msg = message_from_wire(cbor2.loads(
                frame.body, max_depth=_BODY_MAX_DEPTH, semantic_decoders=_BODY_TAGS,
                strict_hashable_types=True, allow_indefinite=False))
        except (ConsensusError, ValueError, cbor2.CBORDecodeError, RecursionError) as exc:
            self.counts["paxos_malformed"] += 1
            _log.debug("malformed consensus message from %s: %s", info.sender.hex(), exc)
            return
        if msg.sender != int.from_bytes(info.sender, "big"):
            # Every node sends its own consensus messages: one naming another sender
            # is forged (and would charge someone else's rate budget).
            self.counts["paxos_sender_mismatch"] += 1
            return
        if not self._admissible(msg, info):
            return
        self.counts["paxos_received"] += 1
        self._catch_up()
        self.paxos.step(msg)
        self._pump()

    def _admissible(self, msg: Message, info: MessageInfo) -> bool:
        """Whether a request that makes this node work for the requester may be served."""
        if isinstance(msg, ProposeRequest):
            if msg.type_name in self.paxos.groups:
                return False  # a no-op: free, and not worth a token
            return self._budget.allow_propose(info.sender, info.source[0] if info.source else "",
                                              asyncio.get_running_loop().time())
        if isinstance(msg, RetireRequest):
            if msg.type_name not in self.paxos.groups:
                return False  # a no-op, as above
            if self.publishers(msg.type_name):
                # Forged, or raced with a publisher that started: a published type
                # stays (docs/security.md). Free: refusing costs less than a token.
                self.counts["retire_refused_published"] += 1
                return False
            return self._budget.allow_propose(info.sender, info.source[0] if info.source else "",
                                              asyncio.get_running_loop().time())
        if isinstance(msg, CatchUpRequest):
            return self._budget.allow_catchup(info.sender, asyncio.get_running_loop().time())
        return True

    # -- unicast replies -------------------------------------------------------------

    def _open_unicast_socket(self) -> socket.socket | None:
        """A UDP socket for unicast replies from the interface address; None if refused."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # The multicast TTL (1: the local link) for unicast too, so a forged source
            # address off the link is not answered beyond the first router.
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, max(1, self._ttl))
            sock.bind((self.endpoint.interface, 0))
        except OSError as exc:
            sock.close()
            _log.warning("no unicast socket on %s (%s); catch-up answers go to the group",
                         self.endpoint.interface, exc)
            return None
        return sock

    def _unicast_address(self, to: int) -> str | None:
        """Where a reply to node ``to`` may go by unicast, or None for the group."""
        if self._unicast is None:
            return None
        address = self.membership.address_of(to)
        if address == self.endpoint.interface:
            address = None  # this host: our own socket shares the port
        return self._unicast_choice.address(to, address, asyncio.get_running_loop().time())

    def _send_unicast(self, frame: PaxosFrame, address: str) -> bool:
        """Send ``frame`` to ``address`` alone; False when it must go to the group."""
        assert self._unicast is not None
        try:
            datagram = self.endpoint.datagram_for(frame)
        except Exception:  # too large for one datagram, or the endpoint closed
            _log.debug("cannot build a unicast reply", exc_info=True)
            return False
        try:
            self._unicast.sendto(datagram, (address, self.endpoint.port))
        except OSError as exc:
            self.counts["unicast_errors"] += 1
            _log.debug("unicast to %s failed: %s", address, exc)
            return False
        self.counts["unicast_sent"] += 1
        return True

    def _on_last_value_request(self, req: LastValueRequest, info: MessageInfo) -> None:
        if not isinstance(req, LastValueRequest) or not is_valid_type_name(req.type_name):
            self.counts["last_value_malformed"] += 1
            return
        if self.membership.note_interest(info.sender, req.type_name):
            self._peers_changed()
        found = self._last_value(req.type_name)
        templates = [] if found is None else [found] if isinstance(found, LastValue) else found
        if not templates:
            return
        allowed = self._budget.allow_last_values(info.sender, asyncio.get_running_loop().time(),
                                                 len(templates))
        to = int.from_bytes(info.sender, "big")
        # Oldest first, so a receiver that drops an answer older than one it has seen
        # (an older node does) keeps every one; published in one go, they share datagrams.
        for template in templates[len(templates) - allowed:]:
            template.to = to
            self.endpoint.publish(template)

    def _on_last_value_message(self, lv: LastValue, info: MessageInfo) -> None:
        if not isinstance(lv, LastValue):
            self.counts["last_value_malformed"] += 1
            return
        if lv.to != self.int_id:
            return
        if not _plausible_last_value(lv):
            # Checked here, before the node's delivery path sees it: every field
            # within what a real answer can hold (docs/protocol.md).
            self.counts["last_value_malformed"] += 1
            return
        self._on_last_value(lv, info)


    def _on_schema_request(self, req: SchemaRequest, info: MessageInfo) -> None:
        if (not isinstance(req, SchemaRequest) or not is_valid_type_name(req.type_name)
                or not (req.fingerprint is None or len(req.fingerprint) == FINGERPRINT_SIZE)):
            self.counts["schema_malformed"] += 1
            return
        if info.local or self._schema_of is None or req.type_name not in self._publishes():
            return
        schema = self._schema_of(req.type_name)
        if schema is None or (req.fingerprint is not None
                              and req.fingerprint != schema.fingerprint):
            return
        if not self._budget.allow_schema(info.sender, asyncio.get_running_loop().time()):
            return
        self.endpoint.publish(_announcement(schema))
        self.counts["schema_answered"] += 1

    def _on_schema(self, msg: SchemaAnnounce, info: MessageInfo) -> None:
        if info.local:
            return
        try:
            if not isinstance(msg, SchemaAnnounce):
                raise ValueError("fields that do not fit the schema")
            schema = TypeSchema.from_plain({
                "name": msg.type_name, "fingerprint": msg.fingerprint.hex(),
                "description": msg.description, "key": msg.key,
                "fields": [dataclasses.asdict(f) for f in msg.fields]})
            check_announced(schema)
        except (ValueError, TypeError) as exc:
            self.counts["schema_malformed"] += 1
            _log.debug("schema announcement dropped: %s", exc)
            return
        self.schemas.put(schema)
        event = self._schema_events.pop(schema.name, None)
        if event is not None:
            event.set()


def _announcement(schema: TypeSchema) -> SchemaAnnounce:
    return SchemaAnnounce(
        type_name=schema.name, fingerprint=schema.fingerprint, description=schema.description,
        key=list(schema.key),
        fields=[SchemaField(name=f.name, wire=f.wire, unit=f.unit, device_class=f.device_class,
                            state_class=f.state_class, description=f.description,
                            declared=f.declared) for f in schema.fields])


def _plausible_last_value(lv: LastValue) -> bool:
    return (is_valid_type_name(lv.type_name) and len(lv.fingerprint) == FINGERPRINT_SIZE
            and 0 <= lv.seq < 1 << 64 and 0 <= lv.boot < 1 << 32 and 0 <= lv.sent_ns < 1 << 64
            and len(lv.payload) > 0)


def _plausible_nonce(nonce: object) -> bool:
    return nonce is None or (isinstance(nonce, bytes) and 0 < len(nonce) <= MAX_NONCE_BYTES)


def _liveness(hb: Heartbeat) -> Liveness:
    """The freshness fields of a heartbeat, cut to what an honest one carries."""
    return Liveness(nonce=hb.nonce, ask=(hb.ask or ())[:MAX_ASK], echo=(hb.echo or ())[:MAX_ECHO])
