"""The ganglion node: agreed groups, membership, discovery and local publish/subscribe.

Theory of operation: a :class:`Node` is an :class:`~ganglion.runtime.endpoint.Endpoint`
whose type -> group map is not computed locally but *agreed* with the other nodes by
the control channel (:mod:`ganglion.runtime.control`, driving the ``consensus`` state
machine). Around it:

* The first publish of a type (or the first subscription, on a member) proposes it.
  Until its group is decided, published messages wait in a bounded queue in the
  endpoint and go out once it is; subscribers join the group when it is known.
* A decided move makes subscribers listen on the old and the new group for a grace
  period (duplicates are dropped by sequence number), so no reading is lost.
* A type nobody publishes any more can be retired (:meth:`Node.retire`): it leaves
  the map everywhere. A node that still publishes a type it sees retired (a forged
  or racing retire) asks for it again at once; it comes back on its old group,
  which stays reserved for it a while (docs/consensus.md, "Retiring a type").
* The node id and a boot counter are persisted in the state directory, and so is
  the consensus journal: a node restarted with the same directory keeps its map
  and its promises.
* Discovery (mDNS/DNS-SD) advertises the node and the types it publishes, for
  people and tools; liveness and quorums come from control-channel heartbeats.
* Late joiners: ``subscribe(..., last_value=True)`` asks every publisher of the
  type for its latest message, one per key of a keyed type (one per sensor).
* Matching: heartbeats carry the types this node subscribes to (its own
  subscribers, its external plugins', an observer's), sent at once when that set
  changes. A type is sent on the network only while some live peer subscribes
  to it (or is an older node that does not say, or asked for its last value);
  otherwise publishing it costs only local delivery. Until it has heard a round
  of heartbeats (:data:`MATCHING_WARMUP_HEARTBEATS` intervals after start) a node
  does not know who wants what, and sends everything.
* Observers (``observer=True``, for short-lived tools) learn the map by catch-up and
  never count in a quorum; they persist nothing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from consensus import MapChange
from ganglion import __version__, defaults
from ganglion.clock import clock_synchronized
from ganglion.errors import (
    ConfigError,
    DecodeError,
    LocalError,
    StateError,
    StateLockedError,
    TypeInUseError,
)
from ganglion.membership import PeerInfo
from ganglion.netif import API_CHOICE_HINT, resolve_interface
from ganglion.repair import (
    DEFAULT_LIMITS,
    DEFAULT_TOTAL_BYTES,
    History,
    HistoryLimits,
    PermanentGap,
    Requester,
)
from ganglion.runtime._repairing import RepairParts
from ganglion.runtime.control import ControlChannel
from ganglion.runtime.control_messages import LastValue
from ganglion.runtime.endpoint import Endpoint, EndpointStats
from ganglion.runtime.journal import Journal
from ganglion.runtime.subscription import DEFAULT_QUEUE_SIZE, Callback, MessageInfo, Subscription
from ganglion.state import NodeState, program_state_dir
from ganglion.types import TypeSchema, decode_payload, lookup, type_schema, validate_type_name
from ganglion.types._payload import payload_problem
from ganglion.wallgrid import next_multiple
from ganglion.wire import KeyRing, as_keyring

__all__ = ["Node", "NodeStats", "TypeStats"]

_log = logging.getLogger(__name__)

#: Seconds a new type's first messages wait after its group is decided, so that
#: subscribers elsewhere, who learn the decision at the same moment, have joined.
NEW_TYPE_SETTLE_SECONDS = 0.1

#: Seconds between checks of the wall clock's synchronisation.
CLOCK_CHECK_SECONDS = 10.0

#: Heartbeat intervals after start during which every type is sent: peers answer a
#: newcomer's first heartbeat at once, and all have sent one within an interval.
MATCHING_WARMUP_HEARTBEATS = 1.5


@dataclasses.dataclass(frozen=True, slots=True)
class TypeStats:
    """Counters of one message type on this node.

    Attributes:
        group: its agreed multicast group, or None while undecided.
        sent: messages published here.
        received: messages received from other nodes.
        lost: gaps in the senders' sequence numbers.
        duplicates: messages received twice (dropped).
        reordered: messages that arrived late (delivered).
        stale: messages older than the replay window (dropped).
        sent_per_key: for a keyed type (``sensors.Temperature``: its ``sensor``),
            messages published here per key (the key fields' values, a tuple), for
            the keys whose last value is kept. Receive counters stay per type: the
            key is inside the stream, whose sequence numbers are per (sender, type).
        repaired: messages received from repairs or history answers (a subset of
            ``received``; ``lost`` no longer counts those that filled a gap).
        repair_requests_sent: repair requests this node sent for the type's streams.
        repair_requests_suppressed: requests held back as another node asked first.
        permanently_lost: numbers given up for good (still counted in ``lost``).
        repair_requests_received: requests for this node's messages of the type.
        repaired_sent: messages of the type this node sent again (repairs and
            history answers).
        gone_sent: numbers it answered as no longer held.
        repair_rate_limited: numbers not answered because of the repair budget.
        history_messages: messages of the type held in this node's history.
        history_bytes: bytes they take (with the per-message overhead).
    """

    group: str | None
    sent: int
    received: int
    lost: int
    duplicates: int
    reordered: int
    stale: int
    sent_per_key: dict[tuple[Any, ...], int] = dataclasses.field(default_factory=dict)
    repaired: int = 0
    repair_requests_sent: int = 0
    repair_requests_suppressed: int = 0
    permanently_lost: int = 0
    repair_requests_received: int = 0
    repaired_sent: int = 0
    gone_sent: int = 0
    repair_rate_limited: int = 0
    history_messages: int = 0
    history_bytes: int = 0


#: The receive-side repair counters of a stream, summed per type into TypeStats.
_STREAM_REPAIR = ("repaired", "repair_requests_sent", "repair_requests_suppressed",
                  "permanently_lost")
#: The Responder's per-type counters that TypeStats shows, by its names.
_SENT_REPAIR = {"repair_requests_received": "repair_requests_received",
                "repaired_sent": "repaired_sent", "gone_sent": "gone_sent",
                "repair_rate_limited": "repair_rate_limited"}


def history_limits(value: HistoryLimits | float | int, what: str = "history") -> HistoryLimits:
    """A history option as limits: a number is a maximum age in seconds (with the
    default byte bound), 0 turning the history off.

    Raises:
        ConfigError: a negative or non-numeric value (the message names ``what``).
    """
    if isinstance(value, HistoryLimits):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} must be a number of seconds or HistoryLimits, got {value!r}")
    try:
        return HistoryLimits(max_bytes=DEFAULT_LIMITS.max_bytes, max_age=float(value))
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def make_history(history: HistoryLimits | float | None,
                 per_type: Mapping[str, HistoryLimits | float] | None = None, *,
                 total_bytes: int = DEFAULT_TOTAL_BYTES, boot: int = 0) -> History | None:
    """The node's :class:`~ganglion.repair.History` for its options, or None when it
    keeps none (``history=None`` and no type of its own, or ``total_bytes`` 0).

    Raises:
        ConfigError: a bad value (named).
    """
    if total_bytes < 0:
        raise ConfigError(f"history total bytes must be >= 0, got {total_bytes}")
    per = {name: history_limits(limits, f"history of {name}")
           for name, limits in (per_type or {}).items()}
    if history is None:
        if not per or all(limits.off for limits in per.values()):
            return None
        base = HistoryLimits(max_bytes=0, max_age=0.0)  # only the types named keep one
    else:
        base = history_limits(history)
    if total_bytes == 0:
        return None
    return History(base, total_bytes=total_bytes, per_type=per, boot=boot)


@dataclasses.dataclass(frozen=True, slots=True)
class NodeStats:
    """A snapshot of a node's counters.

    Attributes:
        types: per type name.
        dropped: messages dropped before sending (a full waiting queue).
        bad_mac: datagrams without a valid MAC (data and control).
        decode_errors: malformed datagrams or payloads (data and control).
        peers: live peers heard on the control channel.
        control: control-channel counters.
        endpoint: the data endpoint's full counters.
        bus: the plugin bus's counters (``ganglion.runtime.bus.BusStats``), None without a bus.
    """

    types: dict[str, TypeStats]
    dropped: int
    bad_mac: int
    decode_errors: int
    peers: int
    control: dict[str, Any]
    endpoint: EndpointStats
    bus: Any = None


class Node:
    """A ganglion node. Use ``async with Node(...) as node:``.

    The interface and the state directory are chosen as a program needs them:

    * ``interface`` is chosen exactly as ``ganglion --iface`` chooses it (one function,
      :func:`ganglion.netif.resolve_interface`): a name (``eth0``, ``wlan0``, ``lo``)
      or an IPv4 address; without one, the ``GANGLION_IFACE`` environment variable,
      else the interface of the default IPv4 route. It is resolved here, so a bad
      choice raises at once, with the interfaces that would work.
    * Without ``state_dir``, a node keeps its id, boot counter and journal in a
      directory of its own name, ``~/.local/state/ganglion/nodes/<name>``
      (:func:`ganglion.state.program_state_dir`), never in the one ``ganglion node``
      uses: a program and the system's node run side by side as one user. Two
      programs need two names (or two ``state_dir``).

    Args:
        name: human name; the host name when None.
        interface: the interface's name or one of its IPv4 addresses; None for
            ``GANGLION_IFACE``, else the default route's interface.
        port: UDP port of the data groups.
        control_port: UDP port of the control group.
        control_group: the control multicast group.
        state_dir: where the node id, boot counter and journal live; None for
            ``<user state dir>/nodes/<name>``. Observers use none.
        key: the 32-byte network key, or a :class:`~ganglion.wire.KeyRing` (during a
            rotation, two keys), if any. With a key, readings and control traffic
            are encrypted unless ``encrypt`` (or the ring) says otherwise.
        encrypt: with a key, encrypt what this node sends (ChaCha20-Poly1305, needs
            the ``secure`` extra); False sends MAC-only datagrams that nodes of
            older versions also read (``--no-encrypt``). None: as the ring says
            (a bytes key encrypts). Received datagrams are accepted either way.
        ttl: multicast TTL.
        max_datagram: size budget of one data datagram.
        observer: True for short-lived tools (never in a quorum, nothing persisted).
        discovery: advertise and browse over mDNS (python-zeroconf).
        tick_seconds: length of one consensus tick.
        heartbeat_seconds: interval between heartbeats.
        peer_timeout: seconds of silence after which a peer is gone.
        pending_limit: messages per type held while its group is being agreed.
        rng: randomness for the consensus node.
        bus_ipc: serve the external plugin bus on ipc sockets: True for
            ``<state dir>/bus.pub`` and ``.sub``, a path for another base, False for none.
        bus_tcp_port: also serve it on ``tcp://127.0.0.1:PORT`` (and PORT+1); None for no TCP.
        bus_secret_file: accept on the bus (ipc and tcp) only plugins holding this
            CURVE key pair file, created 0600 if absent; None accepts any process
            that can connect (on TCP: every local user). See docs/plugin-frames.md.
        replay: mark everything this node publishes as replayed from a log
            (``ganglion replay``), so loggers can tell it from live readings.
        history: how much of what this node publishes it keeps per type, to repair
            other nodes' gaps and answer ``subscribe(..., history=...)``: a
            :class:`~ganglion.repair.HistoryLimits`, a number of seconds (with the
            default bytes), or None for none. The default keeps 60 s and 256 KiB
            per type. A type with history on is encoded even when nobody wants it
            (0 or None avoids that).
        history_per_type: limits of particular types (the same forms; 0 turns one off).
        history_total_bytes: most bytes the history holds for all types together.
        repair: ask publishers for the numbers this node missed (NACK repair,
            docs/protocol.md 7.7). False: gaps are only counted (the history still
            answers other nodes).

    Attributes:
        interface: the chosen interface's IPv4 address.
        interface_name: its name (``eth0``).
        state_dir: the state directory, None for an observer.

    Raises:
        InterfaceError: ``interface`` (or ``GANGLION_IFACE``) names no interface of
            this host, or there is no choice and no default route; the message lists
            the interfaces that would work.
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        interface: str | None = None,
        port: int = defaults.DATA_PORT,
        control_port: int = defaults.CONTROL_PORT,
        control_group: str = defaults.CONTROL_GROUP,
        state_dir: Path | str | None = None,
        key: bytes | KeyRing | None = None,
        ttl: int = defaults.DEFAULT_TTL,
        max_datagram: int = defaults.MAX_DATAGRAM,
        observer: bool = False,
        discovery: bool = True,
        tick_seconds: float = 0.05,
        heartbeat_seconds: float = 0.5,
        peer_timeout: float = 2.0,
        pending_limit: int = 1000,
        rng: random.Random | None = None,
        bus_ipc: bool | Path | str = False,
        bus_tcp_port: int | None = None,
        bus_secret_file: Path | str | None = None,
        replay: bool = False,
        encrypt: bool | None = None,
        history: HistoryLimits | float | None = DEFAULT_LIMITS,
        history_per_type: Mapping[str, HistoryLimits | float] | None = None,
        history_total_bytes: int = DEFAULT_TOTAL_BYTES,
        repair: bool = True,
    ) -> None:
        self.name = name or socket.gethostname()
        chosen = resolve_interface(interface, env=os.environ, hint=API_CHOICE_HINT)
        self.interface = chosen.address
        self.interface_name = chosen.name
        self.state_dir: Path | None = None
        self._state_dir_given = state_dir is not None
        if not observer:
            self.state_dir = (Path(state_dir).expanduser() if state_dir is not None
                              else program_state_dir(self.name))
        self.port = port
        self.observer = observer
        self._control_port = control_port
        self._control_group = control_group
        self._key = as_keyring(key, encrypt=encrypt)
        self._ttl = ttl
        self._max_datagram = max_datagram
        self._use_discovery = discovery
        self._tick_seconds = tick_seconds
        self._heartbeat_seconds = heartbeat_seconds
        self._peer_timeout = peer_timeout
        self._pending_limit = pending_limit
        self._rng = rng
        self._state: NodeState | None = None
        self._endpoint: Endpoint | None = None
        self._control: ControlChannel | None = None
        self._discovery: Any = None
        self._publishes: set[str] = set()
        self._matching = False  # False during the warm-up: send everything
        self._matching_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._clock_timer: asyncio.Task[None] | None = None
        self._decided: dict[str, asyncio.Event] = {}
        self._discovery_ready = asyncio.Event()
        self._bus_ipc = bus_ipc
        self._replay = replay
        self._type_watchers: list[Callable[[str, str], object]] = []
        self._bus_tcp_port = bus_tcp_port
        self._bus_secret_file = bus_secret_file
        self._bus: Any = None
        self._bus_subs: dict[str, Subscription] = {}
        self._from_bus = False
        self.node_id = b""
        # Checked now (a bad value is the caller's error at once), made at start.
        make_history(history, history_per_type, total_bytes=history_total_bytes)
        self._history_options = (history, dict(history_per_type or {}), history_total_bytes)
        self._repair = repair
        self._history: History | None = None
        self._requester: Requester | None = None
        self._gap_watchers: list[Callable[[PermanentGap], object]] = []

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Open the state directory and the sockets, join the control channel.

        Raises:
            StateError: the state directory is locked by another node or unusable;
                the message says which argument chooses another.
            TransportError: a socket could not be opened.
        """
        if self._endpoint is not None:
            raise LocalError("the node is already started")
        journal = None
        if self.observer:
            node_id, boot = os.urandom(8), int(time.time()) & 0xFFFFFFFF
        else:
            self._state = self._open_state()
            node_id, boot = self._state.node_id, self._state.boot
            journal = Journal(self._state.file_path("consensus.journal"))
        self.node_id = node_id
        history, per_type, total_bytes = self._history_options
        self._history = None if self._replay else make_history(
            history, per_type, total_bytes=total_bytes, boot=boot)
        self._requester = Requester(rng=self._rng) if self._repair else None
        try:
            self._endpoint = Endpoint(
                interface=self.interface, port=self.port, node_id=node_id, boot=boot,
                key=self._key, ttl=self._ttl, max_datagram=self._max_datagram,
                group_for=self._agreed_group, pending_limit=self._pending_limit,
                remote_interest=self._wanted_remotely, on_subscriptions=self._on_subscriptions,
                replay=self._replay, history=self._history, requester=self._requester)
            loop = asyncio.get_running_loop()
            warmup = MATCHING_WARMUP_HEARTBEATS * self._heartbeat_seconds
            self._matching_timer = loop.call_later(warmup, self._start_matching)
            await self._endpoint.start()
            self._endpoint.set_clock_synced(clock_synchronized())  # said at the first publish
            self._control = ControlChannel(
                node_id=node_id, name=self.name, version=__version__, interface=self.interface,
                port=self._control_port, group=self._control_group, key=self._key,
                ttl=self._ttl, observer=self.observer, journal=journal, rng=self._rng,
                tick_seconds=self._tick_seconds, heartbeat_seconds=self._heartbeat_seconds,
                peer_timeout=self._peer_timeout, on_change=self._on_map_change,
                publishes=lambda: sorted(self._publishes), clock_synced=self._clock_flag,
                last_value=self._last_value, on_last_value=self._on_last_value,
                subscribes=self._subscribed, on_peers_changed=self._update_interest,
                schema_of=_local_schema, boot=boot,
                repair=RepairParts(deliver=self._endpoint.deliver_repair,
                                   note_tail=self._endpoint.note_tail,
                                   fingerprint=self._published_fingerprint, boot=boot,
                                   history=self._history, requester=self._requester,
                                   on_gap=self._on_permanent_gap))
            await self._control.start()
            if self._control.repair is not None:
                # gaps go through the glue, which sets the timer for the requests they make due
                self._endpoint.set_gap_hooks(self._control.repair)
            if self._bus_ipc or self._bus_tcp_port is not None:
                await self._start_bus()
            if self._use_discovery:
                # mDNS probing takes ~1.2 s (RFC 6762 section 8.1); the node does not wait
                self._spawn(self._start_discovery())
            self._clock_timer = asyncio.get_running_loop().create_task(self._watch_clock())
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Stop gracefully: say goodbye, unregister mDNS, flush and leave every group."""
        if self._matching_timer is not None:
            self._matching_timer.cancel()
            self._matching_timer = None
        if self._clock_timer is not None:
            self._clock_timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock_timer
            self._clock_timer = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus is not None:
            for sub in list(self._bus_subs.values()):
                sub.close()
            self._bus_subs.clear()
            await self._bus.close()
            self._bus = None
        if self._discovery is not None:
            try:
                await self._discovery.close()
            except Exception:
                _log.warning("closing mDNS discovery failed", exc_info=True)
            self._discovery = None
        if self._control is not None:
            await self._control.close()
            self._control = None
        if self._endpoint is not None:
            await self._endpoint.close()
            self._endpoint = None
        if self._state is not None:
            self._state.close()
            self._state = None

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # -- publish and subscribe -------------------------------------------------------

    async def publish(self, msg: object) -> None:
        """Publish one message to every subscriber of its type, on every node.

        The first publish of a type starts the agreement on its group; until it is
        decided, messages wait in a bounded queue (the oldest dropped and counted).

        Args:
            msg: an instance of a registered message class, or a Record.

        Raises:
            TypeRegistrationError: the class is not registered.
            EncodeError: a field holds a value its type does not allow.
            MessageTooLarge: the message cannot fit in one datagram.
            LocalError: the node is not started.
        """
        self.publish_nowait(msg)

    def publish_nowait(self, msg: object) -> None:
        """Like :meth:`publish`, callable from synchronous code on the event loop."""
        endpoint = self._endpoint
        if endpoint is None:
            self._running()  # raises
            return
        name = endpoint.publish(msg)
        if name not in self._publishes:
            self._published(name)

    def _published(self, name: str) -> None:
        """After a publish: a type's first makes the node propose and advertise it."""
        if name not in self._publishes:
            self._publishes.add(name)
            endpoint, control = self._running()
            control.propose(name)
            self._spawn(self._advertise())
            if not endpoint.clock_synced and not self._replay:
                _say_clock_unsynced_once()

    def publish_encoded(self, type_name: str, payload: bytes) -> None:
        """Publish a CBOR payload received from an external plugin.

        Raises:
            TypeNameError: the type name is invalid.
            DecodeError: the payload is not a valid message of that type.
        """
        validate_type_name(type_name)
        problem = payload_problem(payload)
        if problem is not None:
            raise DecodeError(f"{type_name}: {problem}")
        self._publish_checked(type_name, payload)

    def _publish_checked(self, type_name: str, payload: bytes) -> None:
        """Publish a plugin's checked payload: as bytes for a type without a class here."""
        endpoint = self._endpoint
        if endpoint is None:
            self._running()  # raises
            return
        # The bus's own subscription passed the message to the plugins already.
        if not endpoint.publish_payload(type_name, payload, exclude=self._bus_subs.get(type_name)):
            self.publish_nowait(decode_payload(type_name, payload))
            return
        self._published(type_name)

    def subscribe(self, type_or_name: type | str, callback: Callback | None = None, *,
                  maxsize: int = DEFAULT_QUEUE_SIZE, last_value: bool = False,
                  propose: bool | None = None, history: float | None = None) -> Subscription:
        """Subscribe to a message type on every node.

        Args:
            type_or_name: a registered class or a dotted type name.
            callback: called as ``callback(msg, info)``; without one, iterate the
                subscription with ``async for``.
            maxsize: messages an ``async for`` subscription buffers.
            last_value: also ask every publisher for its latest message of the
                type, one per key of a keyed type (delivered with ``info.last_value``
                set).
            propose: start the agreement on the type's group if it has none yet;
                by default members do and observers do not.
            history: also ask every publisher of the type for what its history still
                holds of the last ``history`` seconds (a late subscriber's past):
                delivered once each, marked ``info.repaired``, oldest first per
                publisher, mixed in arrival order with live messages (``seq`` and
                ``sent_ns`` are the original ones). Answers are taken for
                ``HISTORY_ANSWER_SECONDS`` (10 s) after the request; a recorded
                answer replayed later is dropped.

        Returns:
            The :class:`Subscription`; close it to unsubscribe.

        Raises:
            ValueError: ``history`` is negative.
        """
        if history is not None and not history >= 0:
            raise ValueError(f"history must be a number of seconds >= 0, got {history!r}")
        endpoint, control = self._running()
        sub = endpoint.subscribe(type_or_name, callback, maxsize=maxsize)
        self._refresh_bus()  # the bus passes plugins' messages of this type to the node now
        if propose if propose is not None else not self.observer:
            control.propose(sub.type_name)
        if last_value:
            control.request_last_values(sub.type_name)
        if history:
            control.request_history(sub.type_name, history)
        return sub

    def request_history(self, type_name: str, seconds: float) -> bool:
        """Ask every publisher of ``type_name`` for what it holds of the last ``seconds``
        (see :meth:`subscribe`); False when it cannot be asked (the channel has no repair)."""
        return self._running()[1].request_history(type_name, seconds)

    def watch_gaps(self, callback: Callable[[PermanentGap], object]) -> Callable[[], None]:
        """Call ``callback(gap)`` for every permanent gap (numbers of a stream that will
        never arrive: gone from the publisher's history, no answer after the retries,
        the publisher restarted, or given up as too far behind).

        Returns:
            A function that stops the watching.
        """
        self._gap_watchers.append(callback)

        def unwatch() -> None:
            if callback in self._gap_watchers:
                self._gap_watchers.remove(callback)

        return unwatch

    @property
    def history(self) -> History | None:
        """This node's history of what it published (None: it keeps none, or not started)."""
        return self._history

    def request_last_values(self, type_name: str) -> None:
        """Ask every publisher of ``type_name`` for its latest message."""
        self._running()[1].request_last_values(type_name)

    async def wait_for_group(self, type_name: str, timeout: float = 10.0) -> str:
        """Wait until ``type_name`` has an agreed group and return it.

        Raises:
            TimeoutError: not decided within ``timeout`` seconds.
        """
        control = self._running()[1]
        group = control.groups().get(type_name)
        if group is not None:
            return str(group)
        event = self._decided.setdefault(type_name, asyncio.Event())
        await asyncio.wait_for(event.wait(), timeout)
        return str(control.groups()[type_name])

    def retire(self, type_name: str) -> None:
        """Ask the network to take ``type_name`` off the agreed map.

        For a type nobody publishes any more (a typo, a retired sensor). The leader
        of the members proposes it; once decided, :meth:`types` no longer lists it,
        and its group is reserved for it for a while (docs/consensus.md). Returns at
        once; watch :meth:`types` to see it done. A type not in the map is ignored.

        Args:
            type_name: the type to retire.

        Raises:
            TypeInUseError: this node or a live peer publishes it (see :meth:`publishers`).
            TypeNameError: the name is not a valid type name.
            LocalError: the node is not started.
        """
        validate_type_name(type_name)
        control = self._running()[1]
        who = control.publishers(type_name)
        if who:
            raise TypeInUseError(f"{type_name} is still published by {', '.join(who)}; "
                                 f"stop publishing it there first")
        control.retire(type_name)

    def publishers(self, type_name: str) -> list[str]:
        """Names of the live nodes (this one included) that publish ``type_name``."""
        return self._running()[1].publishers(type_name)

    def watch_types(self, callback: Callable[[str, str], object]) -> Callable[[], None]:
        """Call ``callback(type_name, group)`` whenever a type is assigned or moves.

        A retired type is not reported (it leaves :meth:`types`).

        Types already in the map are not replayed to the callback; read :meth:`types`
        first. Exceptions from the callback are logged and ignored.

        Returns:
            A function that stops the calls.
        """
        self._type_watchers.append(callback)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                self._type_watchers.remove(callback)

        return unwatch

    # -- what the node knows ---------------------------------------------------------

    def type_schema(self, type_name: str, fingerprint: bytes | None = None
                    ) -> TypeSchema | None:
        """A type's self-description (units, kinds, descriptions), if this node knows it.

        From the class when this program has it registered (and, given a
        ``fingerprint``, of that version), else from the schemas publishers announced
        on the control channel (:meth:`request_type_schema`, :meth:`fetch_type_schema`).
        Only reads: safe to call from another thread (the logger's writer does).

        Args:
            type_name: the dotted type name.
            fingerprint: the version wanted (``MessageInfo.fingerprint``); None for the
                local class, else the newest version learned.

        Returns:
            The :class:`~ganglion.types.TypeSchema` (``source`` says where it came
            from), or None.
        """
        mtype = lookup(type_name)
        if mtype is not None and (fingerprint is None or fingerprint == mtype.fingerprint):
            return type_schema(mtype)
        control = self._control
        return None if control is None else control.schemas.get(type_name, fingerprint)

    def request_type_schema(self, type_name: str, fingerprint: bytes | None = None) -> None:
        """Ask the type's publishers to announce its schema (at most once a second)."""
        validate_type_name(type_name)
        if self.type_schema(type_name, fingerprint) is None:
            self._running()[1].request_schema(type_name, fingerprint)

    async def fetch_type_schema(self, type_name: str, fingerprint: bytes | None = None, *,
                                timeout: float = 2.0) -> TypeSchema | None:
        """:meth:`type_schema`, asking the network and waiting for an answer if needed.

        Args:
            type_name: the dotted type name.
            fingerprint: the version wanted; None for any.
            timeout: seconds to wait for a publisher's answer.

        Returns:
            The schema, or None when no publisher answered in time (none runs, or all
            are of a version from before schemas).

        Raises:
            TypeNameError: the name is not a valid type name.
        """
        validate_type_name(type_name)
        control = self._running()[1]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = self.type_schema(type_name, fingerprint)
            left = deadline - loop.time()
            if found is not None or left <= 0:
                return found
            event = control.schema_event(type_name)
            control.request_schema(type_name, fingerprint)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(left, defaults.SCHEMA_ASK_SECONDS))

    def types(self) -> dict[str, str]:
        """The agreed map: type name -> multicast group address."""
        return {name: str(group) for name, group in sorted(self._running()[1].groups().items())}

    def peers(self) -> list[PeerInfo]:
        """The live peers heard on the control channel (members and observers)."""
        return self._running()[1].peers()

    def heard(self) -> list[PeerInfo]:
        """Every peer heard on the control channel, also those not yet proven live.

        A new peer counts (in :meth:`peers`, in quorums) only once its heartbeat has
        echoed this node's nonce, a few hundred milliseconds after it is first heard;
        its readings may arrive before that. Use this to name senders, never to count
        them: a candidate's name is only what it claims.
        """
        return self._running()[1].heard()

    def bus_endpoints(self) -> list[str]:
        """The addresses external plugins connect to (publish and subscribe), if any."""
        if self._bus is None:
            return []
        return [addr for pair in self._bus.endpoints for addr in pair]

    def discovered(self) -> list[Any]:
        """The peers seen over mDNS (:class:`ganglion.runtime.discovery.AdvertisedPeer`)."""
        return [] if self._discovery is None else list(self._discovery.peers())

    def stats(self) -> NodeStats:
        """A snapshot of every counter (see :class:`NodeStats`)."""
        endpoint, control = self._running()
        es = endpoint.stats()
        cs = control.endpoint.stats()
        groups = control.groups()
        per: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for (_node, type_name), s in es.streams.items():
            per[type_name].update(received=s.received, lost=s.lost, duplicates=s.duplicates,
                                  reordered=s.reordered, stale=s.stale,
                                  **{name: getattr(s, name) for name in _STREAM_REPAIR})
        glue = control.repair
        if glue is not None:
            for type_name, counts in glue.responder.stats().items():
                per[type_name].update({ours: counts.get(theirs, 0)
                                       for ours, theirs in _SENT_REPAIR.items()})
        for type_name, (messages, size) in es.history_types.items():
            per[type_name].update(history_messages=messages, history_bytes=size)
        sent = endpoint.published()
        per_key: dict[str, dict[tuple[Any, ...], int]] = collections.defaultdict(dict)
        for (type_name, key), count in endpoint.last_value_counts().items():
            per_key[type_name][key] = count
        names = set(per) | set(sent) | set(groups)
        types = {
            name: TypeStats(group=str(groups[name]) if name in groups else None,
                            sent=sent.get(name, 0), received=per[name]["received"],
                            lost=per[name]["lost"], duplicates=per[name]["duplicates"],
                            reordered=per[name]["reordered"], stale=per[name]["stale"],
                            sent_per_key=per_key.get(name, {}),
                            **{field: per[name][field] for field in (
                                *_STREAM_REPAIR, *_SENT_REPAIR, "history_messages",
                                "history_bytes")})
            for name in sorted(names)
        }
        return NodeStats(types=types, dropped=es.pending_dropped,
                         bad_mac=es.bad_mac + cs.bad_mac,
                         decode_errors=es.decode_errors + cs.decode_errors,
                         peers=len(control.peers()), control=control.stats(), endpoint=es,
                         bus=None if self._bus is None else self._bus.stats())

    # -- internals -------------------------------------------------------------------

    def _published_fingerprint(self, type_name: str) -> bytes | None:
        """The fingerprint this node publishes ``type_name`` under (what its repairs say),
        or None for a type it never published."""
        mtype = lookup(type_name)
        if mtype is not None:
            return mtype.fingerprint
        endpoint = self._endpoint
        if endpoint is not None and endpoint.published().get(type_name):
            return bytes(8)  # a plugin's payload of a type without a class here
        return None

    def _on_permanent_gap(self, gap: PermanentGap) -> None:
        for callback in list(self._gap_watchers):
            try:
                callback(gap)
            except Exception:
                _log.exception("a gap watcher failed")

    def _open_state(self) -> NodeState:
        """Open the state directory; an error says how to choose another, in Python's words."""
        try:
            return NodeState.open(self.state_dir)
        except StateError as exc:
            if not exc.remedy:
                raise  # nothing to choose: the message says what to do
            if isinstance(exc, StateLockedError):
                other = ("another state_dir=" if self._state_dir_given else
                         "a directory of its own: another name= (each name has its own) "
                         "or state_dir=")
                remedy = f"stop the other node or give this Node {other}"
            else:
                remedy = "give this Node a directory this user can write with state_dir="
            raise exc.with_remedy(remedy) from exc.__cause__

    def _running(self) -> tuple[Endpoint, ControlChannel]:
        if self._endpoint is None or self._control is None:
            raise LocalError("the node is not started; use `async with Node(...)`")
        return self._endpoint, self._control

    def _agreed_group(self, type_name: str) -> str | None:
        if self._control is None:
            return None
        group = self._control.groups().get(type_name)
        return None if group is None else str(group)

    def _wanted_remotely(self, type_name: str) -> bool:
        if self._control is None or not self._matching:
            return True
        interest = self._control.membership.interest()
        return interest is None or type_name in interest

    def _start_matching(self) -> None:
        self._matching_timer = None
        self._matching = True
        self._update_interest()
        self._refresh_bus()

    def _update_interest(self) -> None:
        """Tell the endpoint, per type, whether a live peer wants it now."""
        if self._endpoint is None or self._control is None or not self._matching:
            return  # still warming up: everything is sent
        interest = self._control.membership.interest()
        for name in self._endpoint.remote_interest():
            self._endpoint.set_remote_interest(name, interest is None or name in interest)
        self._refresh_bus()

    def _subscribed(self) -> list[str]:
        return [] if self._endpoint is None else sorted(self._endpoint.subscribed())

    def _on_subscriptions(self, type_name: str, subscribed: bool) -> None:
        if self._control is not None:
            self._control.heartbeat_soon()
        self._refresh_bus()

    def _on_map_change(self, change: MapChange) -> None:
        if change.new is None:
            self._on_retired(change.type_name, change.old)
            return
        if change.old is None:
            _log.info("type %s uses group %s", change.type_name, change.new)
        else:
            _log.info("type %s moves from %s to %s", change.type_name, change.old, change.new)
        if self._endpoint is not None:
            # Every node learns a decision from the same broadcast Commit; holding the
            # first messages of a new type back briefly lets their subscribers join.
            self._endpoint.set_group(change.type_name, change.new,
                                     release_after=NEW_TYPE_SETTLE_SECONDS
                                     if change.old is None else 0.0)
        event = self._decided.pop(change.type_name, None)
        if event is not None:
            event.set()
        for watcher in list(self._type_watchers):
            try:
                watcher(change.type_name, str(change.new))
            except Exception:
                _log.exception("a type watcher failed on %s", change.describe())

    def _on_retired(self, type_name: str, old: object) -> None:
        if self._endpoint is not None:
            self._endpoint.clear_group(type_name)
        if type_name in self._publishes:
            # Only a forger or a race retires a published type (a request is refused
            # while a live node lists it): ask for it again; its old group is reserved.
            # Later, not now: this runs inside the control channel's pump, between
            # ready() and advance(), where proposing would pump again.
            _log.warning("type %s was retired but this node publishes it: asking for it again",
                         type_name)
            asyncio.get_running_loop().call_soon(self._propose_again, type_name)
        else:
            _log.info("type %s retired (it left group %s)", type_name, old)

    def _propose_again(self, type_name: str) -> None:
        if self._control is not None and type_name in self._publishes:
            self._control.propose(type_name)

    def _last_value(self, type_name: str) -> list[LastValue]:
        """The answers to a LastValueRequest: one per key of the type, oldest first."""
        ep = self._endpoint
        if ep is None:
            return []
        return [LastValue(to=0, type_name=type_name, fingerprint=fingerprint, seq=seq,
                          boot=ep.boot, sent_ns=sent_ns, payload=payload,
                          clock_synced=ep.clock_synced)
                for payload, fingerprint, seq, sent_ns in ep.last_values(type_name)]

    def _on_last_value(self, lv: LastValue, info: MessageInfo) -> None:
        if self._endpoint is not None:
            self._endpoint.deliver_last_value(
                lv.type_name, lv.payload, sender=info.sender, fingerprint=lv.fingerprint,
                seq=lv.seq, boot=lv.boot, sent_ns=lv.sent_ns, source=info.source,
                clock_synced=lv.clock_synced)

    async def _start_bus(self) -> None:
        from ganglion.plugin_frames import STATE_DIR_BUS_NAME
        from ganglion.runtime.bus import PluginBus

        ipc: Path | None = None
        if self._bus_ipc is True:
            if self._state is None:
                raise LocalError("bus_ipc=True needs a state directory; give a path instead")
            ipc = self._state.path / STATE_DIR_BUS_NAME
        elif self._bus_ipc:
            ipc = Path(self._bus_ipc)
        secret = None
        if self._bus_secret_file is not None:
            from ganglion.runtime._bus_auth import load_or_create_secret

            secret = load_or_create_secret(Path(self._bus_secret_file))
        self._bus = PluginBus(ipc_path=ipc, tcp_port=self._bus_tcp_port,
                              on_publish=self._on_bus_publish,
                              on_subscribe=self._on_bus_subscribe,
                              on_unsubscribe=self._on_bus_unsubscribe,
                              node_wants=self._bus_node_wants, node_id=self.node_id,
                              secret=secret)
        await self._bus.start()

    def _on_bus_publish(self, type_name: str, payload: bytes) -> None:
        # The bus already forwarded it to its plugin subscribers: the bus's own
        # subscription must not send it to them a second time.
        self._from_bus = True
        try:
            self._publish_checked(type_name, payload)  # the bus checked it
        finally:
            self._from_bus = False

    def _bus_node_wants(self, type_name: str) -> bool:
        """Whether the node must see a plugin's messages of ``type_name`` now.

        It must while some other node or an in-process subscriber (other than the
        bus's own subscription, which serves the plugins) wants the type, during the
        matching warm-up (interest not known yet), and for a type's first message (it
        makes the node advertise the type and agree its group). Otherwise the bus
        passes the plugins' messages between plugins only; :meth:`_refresh_bus`
        makes it ask again whenever one of these may have changed.
        """
        endpoint = self._endpoint
        if endpoint is None or type_name not in self._publishes or not self._matching:
            return True
        if self._wanted_remotely(type_name):
            return True
        own = 1 if type_name in self._bus_subs else 0
        return endpoint.subscriber_count(type_name) > own

    def _refresh_bus(self) -> None:
        if self._bus is not None:
            self._bus.refresh_interest()

    def _on_bus_subscribe(self, type_name: str) -> None:
        if type_name in self._bus_subs:
            return
        from ganglion.types import encode_payload

        def to_plugins(msg: Any, info: MessageInfo) -> None:
            if (info.local and self._from_bus) or self._bus is None:
                return
            if type(msg) is bytes:  # a payload from the network, undecoded (sub.raw)
                self._bus.deliver_info(type_name, msg, info, check=True)
                return
            self._bus.deliver_info(type_name, encode_payload(msg), info)

        sub = self.subscribe(type_name, callback=to_plugins)
        sub.raw = True  # plugins take payloads as they are: no decoding to re-encode
        self._bus_subs[type_name] = sub

    def _on_bus_unsubscribe(self, type_name: str) -> None:
        sub = self._bus_subs.pop(type_name, None)
        if sub is not None:
            sub.close()

    async def _start_discovery(self) -> None:
        from ganglion.runtime.discovery import Discovery

        self._discovery = Discovery(
            interface=self.interface, node_id=self.node_id, name=self.name, port=self.port,
            publishes=sorted(self._publishes), role="observer" if self.observer else "member")
        try:
            await self._discovery.start()
            await self._discovery.update_types(sorted(self._publishes))
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._discovery.close()
            self._discovery = None
            raise
        except Exception:
            # mDNS is for people and tools; the node works without it
            _log.warning("mDNS discovery could not start; continuing without it", exc_info=True)
            self._discovery = None
        finally:
            self._discovery_ready.set()

    async def _advertise(self) -> None:
        if self._discovery is not None:
            await self._discovery_ready.wait()  # update_types needs a started Discovery
            if self._discovery is not None:
                await self._discovery.update_types(sorted(self._publishes))

    def _clock_flag(self) -> bool:
        """What the data endpoint's datagrams say of the clock (checked every
        :data:`CLOCK_CHECK_SECONDS`): heartbeats and repairs say the same, without a
        system call each (a heartbeat is most of what an idle node does)."""
        return True if self._endpoint is None else self._endpoint.clock_synced

    async def _watch_clock(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            # On the heartbeats' wall-clock grid (ganglion.wallgrid): no wake-up of its own.
            now = loop.time()
            await asyncio.sleep(next_multiple(loop, CLOCK_CHECK_SECONDS,
                                              now + CLOCK_CHECK_SECONDS / 2) - now)
            if self._endpoint is not None:
                self._endpoint.set_clock_synced(clock_synchronized())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("node background task failed: %r", task.exception())


_clock_warning_given = False


def _local_schema(type_name: str) -> TypeSchema | None:
    """The schema of a type this program has the class of (what the node announces)."""
    mtype = lookup(type_name)
    return None if mtype is None else type_schema(mtype)


def _say_clock_unsynced_once() -> None:
    """Warn that readings carry a doubtful time: once per process, and only from a node
    that publishes (a subscriber's or a CLI observer's clock stamps nothing anyone reads;
    a replay sends the log's own times)."""
    global _clock_warning_given
    if not _clock_warning_given:
        _clock_warning_given = True
        _log.warning("this machine's clock is not synchronised (no NTP yet?): readings "
                     "are flagged so receivers know their timestamps may be off")
