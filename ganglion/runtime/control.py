"""The control channel: heartbeats, the agreement runner, and last-value answers.

Theory of operation: the control channel is an :class:`Endpoint` on the control
group (``239.255.0.1``, port 47801) carrying the types of
:mod:`ganglion.runtime.control_messages`. Around it:

* **Membership.** A heartbeat goes out every ``heartbeat_seconds``; peers silent
  for ``peer_timeout`` drop out. The live members (plus this node) are the view
  handed to the consensus state machine, whose quorums are majorities of it.
* **Agreement runner** (STYLE.md section 5, raft's ``rafttest/node.go`` loop): a
  ``PaxosFrame`` received is decoded and passed to ``PaxosNode.step``; a timer
  calls ``tick()`` every ``tick_seconds``. After either, :meth:`_pump` takes every
  ``Ready``, appends ``to_persist`` to the journal with an fsync *before* sending
  its messages, applies the map changes, and advances. The journal is compacted
  when it grows.
* **Last values.** A late joiner broadcasts a ``LastValueRequest``; every node
  that published the type answers with its latest message (``LastValue``, tagged
  with the requester's id). The request also shows that the requester subscribes
  to the type, so it counts as interest at once (see below), before the answer:
  what is published after the answered message is then sent, not skipped.
* **Matching.** Heartbeats carry the types this node subscribes to. When that set
  changes, a heartbeat goes out at once, at most one extra per
  :data:`MIN_HEARTBEAT_GAP`; so does one when a new peer is heard, so a newcomer
  learns everyone's subscriptions within milliseconds. ``on_peers_changed`` is
  called whenever what the live peers subscribe to may have changed (a peer
  joined, left, timed out, or changed its list).

Malformed control input (bad CBOR, invalid consensus messages) is counted and
dropped; nothing a peer sends stops the channel.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import cbor2

from consensus import Config, MapChange, PaxosNode, message_from_wire
from consensus.errors import ConsensusError
from ganglion import defaults
from ganglion.membership import MEMBER, OBSERVER, Membership, PeerInfo
from ganglion.runtime.control_messages import Heartbeat, LastValue, LastValueRequest, PaxosFrame
from ganglion.runtime.endpoint import Endpoint
from ganglion.runtime.journal import Journal
from ganglion.runtime.subscription import MessageInfo

_log = logging.getLogger(__name__)

#: Control datagrams may exceed the data budget: a catch-up reply carries up to 16
#: map entries. On the local link an IP-fragmented datagram is still delivered.
CONTROL_MAX_DATAGRAM = 16_384
#: Shortest time between two heartbeats sent early (subscriptions changed, a peer joined).
MIN_HEARTBEAT_GAP = 0.05
#: Longest ``subscribes`` list, in bytes of names, a heartbeat carries; beyond it the
#: heartbeat says None ("every type"), which is safe, only wasteful.
MAX_SUBSCRIBES_BYTES = 12_000


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
        last_value: returns this node's latest message of a type as a ``LastValue``
            template (``to`` is filled in), or None.
        on_last_value: called with a ``LastValue`` addressed to this node.
        subscribes: returns the types this node has subscribers of (for heartbeats);
            None sends no list (peers then send this node every type).
        on_peers_changed: called when what the live peers subscribe to may have changed.
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
        key: bytes | None = None,
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
        last_value: Callable[[str], LastValue | None],
        on_last_value: Callable[[LastValue, MessageInfo], None],
        subscribes: Callable[[], list[str]] | None = None,
        on_peers_changed: Callable[[], None] | None = None,
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
        self._last_heartbeat = float("-inf")
        self._early_heartbeat: asyncio.TimerHandle | None = None
        self.membership = Membership(node_id, timeout=peer_timeout, self_is_member=not observer)
        records = journal.load() if journal is not None else []
        self.paxos = PaxosNode(
            Config(node_id=self.int_id, observer=observer,
                   heartbeat_ticks=self._heartbeat_every, retry_ticks=10, backoff_ticks=6,
                   catchup_ticks=10),
            rng=rng or random.Random(), records=records,
        )
        self.endpoint = Endpoint(interface=interface, port=port, node_id=node_id, key=key,
                                 ttl=ttl, max_datagram=CONTROL_MAX_DATAGRAM,
                                 group_for=lambda _name: group)
        self.counts: collections.Counter[str] = collections.Counter()
        self._ticker: asyncio.Task[None] | None = None
        self._ticks = 0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the control endpoint, replay the journal's map, start ticking."""
        await self.endpoint.start()
        ep = self.endpoint
        ep.subscribe(Heartbeat, callback=self._on_heartbeat)
        ep.subscribe(PaxosFrame, callback=self._on_paxos)
        ep.subscribe(LastValueRequest, callback=self._on_last_value_request)
        ep.subscribe(LastValue, callback=self._on_last_value_message)
        for type_name, group in self.paxos.groups.items():
            # the map rebuilt from the journal: a restarted node keeps its groups
            self._on_change(MapChange(type_name=type_name, old=None, new=group))
        self.paxos.set_view(self.membership.view())
        self._send_heartbeat()
        self._pump()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever(),
                                                             name="ganglion-control-tick")

    async def close(self) -> None:
        """Say goodbye, stop ticking and close the control endpoint."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._early_heartbeat is not None:
            self._early_heartbeat.cancel()
            self._early_heartbeat = None
        try:
            self._send_heartbeat(goodbye=True)
        except Exception:  # the endpoint may already be broken; closing must go on
            _log.debug("could not send the goodbye heartbeat", exc_info=True)
        await self.endpoint.close()

    # -- requests from the node ------------------------------------------------------

    def propose(self, type_name: str) -> None:
        """Ask the network for a group for ``type_name`` (no-op once it has one)."""
        if type_name in self.paxos.groups:
            return
        self.paxos.propose(type_name)
        self._pump()

    def groups(self) -> dict[str, IPv4Address]:
        """The agreed map as this node knows it."""
        return dict(self.paxos.groups)

    def peers(self) -> list[PeerInfo]:
        """The live peers heard on the control channel."""
        return self.membership.peers()

    def request_last_values(self, type_name: str) -> None:
        """Ask every publisher of ``type_name`` for its latest message."""
        self.endpoint.publish(LastValueRequest(type_name=type_name))

    def heartbeat_soon(self) -> None:
        """Send a heartbeat now, or as soon as :data:`MIN_HEARTBEAT_GAP` allows.

        For changes peers should learn at once (this node's subscriptions).
        """
        if self._early_heartbeat is not None or self._ticker is None:
            return  # one is already due, or the channel is not running
        loop = asyncio.get_running_loop()
        wait = self._last_heartbeat + MIN_HEARTBEAT_GAP - loop.time()
        if wait <= 0:
            self._send_heartbeat()
        else:
            self._early_heartbeat = loop.call_later(wait, self._send_early_heartbeat)

    def stats(self) -> dict[str, Any]:
        """Counters of the control channel."""
        return {**self.counts, "view": len(self.paxos.view), "types": len(self.paxos.groups),
                "ticks": self._ticks}

    # -- the runner ------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_seconds)
            try:
                self._tick()
            except Exception:
                self.counts["tick_errors"] += 1
                _log.exception("control tick failed")

    def _tick(self) -> None:
        self._ticks += 1
        gone = self.membership.expire(asyncio.get_running_loop().time())
        for peer in gone:
            _log.info("peer %s (%s) timed out", peer.name, peer.id.hex())
        if gone:
            self._update_view()
            self._peers_changed()
        if self._ticks % self._heartbeat_every == 0:
            self._send_heartbeat()
        self.paxos.tick()
        self._pump()

    def _pump(self) -> None:
        paxos = self.paxos
        while paxos.has_ready():
            rd = paxos.ready()
            if rd.to_persist:
                if self._journal is not None:
                    self._journal.append(rd.to_persist)
                rd.mark_persisted()
            for env in rd.outbox:
                body = cbor2.dumps(env.msg.to_wire())
                self.endpoint.publish(PaxosFrame(body=body, to=env.to))
                self.counts["paxos_sent"] += 1
            for change in rd.changes:
                try:
                    self._on_change(change)
                except Exception:
                    _log.exception("applying %s failed", change.describe())
            paxos.advance(rd)
        if self._journal is not None and self._journal.needs_compaction():
            self._journal.replace(paxos.durable_records())

    def _update_view(self) -> None:
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
        self.endpoint.publish(Heartbeat(
            name=self.name, role=OBSERVER if self.observer else MEMBER, version=self.version,
            clock_synced=self._clock_synced(), publishes=sorted(self._publishes()),
            goodbye=goodbye, subscribes=subscribes))

    def _peers_changed(self) -> None:
        if self._on_peers_changed is not None:
            try:
                self._on_peers_changed()
            except Exception:
                _log.exception("reacting to a change of the peers' subscriptions failed")

    def _on_heartbeat(self, hb: Heartbeat, info: MessageInfo) -> None:
        if hb.goodbye:
            if self.membership.forget(info.sender) is not None:
                self._update_view()
                self._peers_changed()
            return
        role = hb.role if hb.role in (MEMBER, OBSERVER) else OBSERVER
        before = self.membership.get(info.sender)
        subscribes = None if hb.subscribes is None else frozenset(hb.subscribes)
        changed = self.membership.heard(PeerInfo(
            id=info.sender, name=hb.name, role=role, version=hb.version,
            address=info.source[0] if info.source else "", publishes=tuple(hb.publishes),
            clock_synced=hb.clock_synced, last_seen=asyncio.get_running_loop().time(),
            subscribes=subscribes))
        if before is None:
            self.heartbeat_soon()  # tell the newcomer what we subscribe to, now
        if changed:
            _log.info("peer %s (%s, %s) joined", hb.name, info.sender.hex(), role)
            self._update_view()
        if before is None or before.subscribes != subscribes:
            self._peers_changed()

    def _on_paxos(self, frame: PaxosFrame, info: MessageInfo) -> None:
        if frame.to is not None and frame.to != self.int_id:
            return
        try:
            msg = message_from_wire(cbor2.loads(frame.body))
        except (ConsensusError, ValueError, cbor2.CBORDecodeError, RecursionError) as exc:
            self.counts["paxos_malformed"] += 1
            _log.warning("malformed consensus message from %s: %s", info.sender.hex(), exc)
            return
        self.counts["paxos_received"] += 1
        self.paxos.step(msg)
        self._pump()

    def _on_last_value_request(self, req: LastValueRequest, info: MessageInfo) -> None:
        if self.membership.note_interest(info.sender, req.type_name):
            self._peers_changed()
        template = self._last_value(req.type_name)
        if template is not None:
            template.to = int.from_bytes(info.sender, "big")
            self.endpoint.publish(template)

    def _on_last_value_message(self, lv: LastValue, info: MessageInfo) -> None:
        if lv.to == self.int_id:
            self._on_last_value(lv, info)
