"""The plugin bus's routing core: which plugin gets what, which publish is valid, the counters.

Theory of operation. This is the sans-IO half of :class:`~ganglion.runtime.bus.PluginBus`:
it owns no socket and reads no clock. The bus feeds it what zmq reported and asks it
what to do:

* **Subscriptions** (:meth:`BusRoutes.on_subscription`). zmq's XPUB, without
  ``XPUB_VERBOSE``, reports a topic's subscribe (``\\x01name``) only when the first
  subscriber of it appears and its unsubscribe (``\\x00name``) only when the last one
  leaves (unsubscribing, or its process dying): exactly the reference count the node
  needs to join a group with the first subscriber and leave with the last. Topics that
  are not valid type names (the empty prefix, ``sensors.``) still match messages but
  name no group: they are kept as prefixes and not reported.
* **Routes** (:attr:`BusRoutes.routes`). A raw type name already checked maps to
  ``(name, flags)``: :data:`FORWARD` sends its messages on to plugin subscribers,
  :data:`TO_NODE` hands them to the node. The drain loop (Python or compiled) reads
  this dict directly, so a known type costs one lookup per message. Flags are
  recomputed (:meth:`BusRoutes.reroute`) whenever subscriptions or the node's interest
  change; at most :data:`MAX_ROUTES` names are kept (more still work, checked one by one).
* **Validation** (:func:`judge`). A publish the drain loop was not sure of is judged
  here: exactly two frames, a valid type name, one plain CBOR map payload
  (:func:`~ganglion.types._payload.payload_problem`). The verdict names the counter
  to raise and a bounded description for the log.
* **Counters** (:class:`BusStats`), kept in one dict the shell raises.

The same calls in the same order give the same answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ganglion.runtime._bus_report import clip, excerpt
from ganglion.types import is_valid_type_name
from ganglion.types._payload import payload_problem

#: Type names remembered as checked, with what to do with them; a bus that sees more
#: distinct names still works, checking the others message by message.
MAX_ROUTES = 4096

#: Route flags: send on to plugin subscribers; hand to the node.
FORWARD, TO_NODE = 1, 2

_SUBSCRIBE = 1
_UNSUBSCRIBE = 0


@dataclasses.dataclass(frozen=True, slots=True)
class BusStats:
    """Counters of a :class:`~ganglion.runtime.bus.PluginBus` (a snapshot).

    Attributes:
        received: multipart messages read from plugin publishers.
        published: valid ones (well-formed, whatever the node then makes of them).
        to_node: valid ones handed to ``on_publish`` (the node wanted their type).
        forwarded: valid ones sent on to plugin subscribers by the bus itself.
        delivered: messages sent to plugin subscribers by ``PluginBus.deliver``.
        dropped: sends refused because a subscriber's queue was full.
        bad_frames: publishes without exactly two frames.
        bad_type_names: publishes whose first frame is not a valid type name.
        bad_payloads: publishes whose payload is not a CBOR map.
        rejected: valid publishes ``on_publish`` refused with a ganglion error
            (e.g. too large for a datagram, or not matching the registered class).
        callback_errors: other exceptions raised by the on_* callbacks (logged).
        bad_deliveries: payloads from the network, passed on undecoded, that were not
            one plain CBOR map: not sent to plugins (another node's bug, or no key).
        refused_connections: handshakes refused on a bus with a secret (no or wrong key).
        unlogged: bad messages and refusals only counted, not logged on their own line.
        subscriptions: the topics plugins are subscribed to now, sorted.
        compiled: whether the compiled drain loop (``ganglion._busfast``) is in use.
    """

    received: int = 0
    published: int = 0
    to_node: int = 0
    forwarded: int = 0
    delivered: int = 0
    dropped: int = 0
    bad_frames: int = 0
    bad_type_names: int = 0
    bad_payloads: int = 0
    rejected: int = 0
    callback_errors: int = 0
    bad_deliveries: int = 0
    refused_connections: int = 0
    unlogged: int = 0
    subscriptions: tuple[str, ...] = ()
    compiled: bool = False

    @property
    def malformed(self) -> int:
        """Publishes dropped as malformed: bad frames, type names or payloads."""
        return self.bad_frames + self.bad_type_names + self.bad_payloads

    @property
    def refused(self) -> int:
        """Well-formed publishes the node refused (:attr:`rejected`)."""
        return self.rejected


#: The counters the bus raises itself (the rest of :class:`BusStats` is filled in).
COUNTERS = tuple(f.name for f in dataclasses.fields(BusStats)
                 if f.name not in ("subscriptions", "unlogged", "compiled"))


@dataclasses.dataclass(frozen=True, slots=True)
class Bad:
    """A publish to drop: the counter to raise and what to log (bounded)."""

    reason: str
    what: str


def judge(frames: list[bytes], frame_count: int,
          routes: dict[bytes, tuple[str, int]]) -> Bad | str:
    """Validate one publish: its type name when it is good, else why it is not.

    Args:
        frames: its frames (the first few, when there were many).
        frame_count: how many frames it had.
        routes: the names already checked (a name found there is not checked again).

    Returns:
        The type name, or a :class:`Bad` naming the counter (``bad_frames``,
        ``bad_type_names``, ``bad_payloads``) and a description of at most a few
        hundred characters.
    """
    if frame_count != 2:
        return Bad("bad_frames", f"{frame_count} frames, not 2; the first is "
                   f"{excerpt(frames[0]) if frames else 'absent'}")
    raw_name, payload = frames
    route = routes.get(raw_name)
    if route is not None:
        name = route[0]
    else:
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            name = ""
        if not is_valid_type_name(name):
            return Bad("bad_type_names", f"type name {excerpt(raw_name)}")
    problem = payload_problem(payload)
    if problem is not None:
        return Bad("bad_payloads", f"{name}: {clip(problem)}; payload {excerpt(payload)}")
    return name


class BusRoutes:
    """Subscriptions, routes and forward numbers of one bus (no I/O)."""

    def __init__(self, *, forward: bool, node_wants: Callable[[str], bool] | None) -> None:
        """Start with no subscriber and no route.

        Args:
            forward: whether the bus sends plugin publishes on to plugin subscribers.
            node_wants: whether the node wants a type's messages now (must not raise;
                the shell wraps the user's callback); None: it wants every one.
        """
        self._forward_on = forward
        self._node_wants = node_wants
        # Topics with at least one subscriber: valid type names apart, so the
        # common exact-name check in subscribed() is one set lookup.
        self.names: set[str] = set()
        self.prefixes: set[bytes] = set()
        #: raw type name -> (name, FORWARD|TO_NODE): the names checked so far and what
        #: to do with their messages; the compiled loop reads the same dict.
        self.routes: dict[bytes, tuple[str, int]] = {}
        #: raw type name -> the last forward's meta seq (the compiled loop updates it too).
        self.forward_seq: dict[bytes, int] = {}

    def subscribed(self, type_name: str) -> bool:
        """Return True if some plugin's subscription matches ``type_name``."""
        if type_name in self.names:
            return True
        if not self.prefixes:
            return False
        raw = type_name.encode()
        return any(raw.startswith(prefix) for prefix in self.prefixes)

    def topics(self) -> tuple[str, ...]:
        """The live topics: type names sorted, then prefixes sorted."""
        return tuple(sorted(self.names)
                     + sorted(p.decode(errors="replace") for p in self.prefixes))

    def flags(self, name: str) -> int:
        """What to do with a valid publish of ``name`` now (FORWARD, TO_NODE)."""
        flags = FORWARD if self._forward_on and self.subscribed(name) else 0
        if self._node_wants is None or self._node_wants(name):
            flags |= TO_NODE
        return flags

    def remember(self, raw_name: bytes, name: str) -> None:
        """Keep a checked name's route (later messages take the drain loop), room allowing."""
        if raw_name not in self.routes and len(self.routes) < MAX_ROUTES:
            self.routes[raw_name] = (name, self.flags(name))

    def forget(self, raw_name: bytes) -> None:
        """Drop a name's route: its next message is judged one by one again."""
        self.routes.pop(raw_name, None)

    def reroute(self) -> None:
        """Recompute every remembered route (subscriptions or the node's interest changed)."""
        for raw, (name, _) in list(self.routes.items()):
            self.routes[raw] = (name, self.flags(name))

    def next_seq(self, raw_name: bytes) -> int:
        """Number the next message the bus forwards of this type itself (from 1)."""
        seq = self.forward_seq.get(raw_name, 0) + 1
        self.forward_seq[raw_name] = seq
        return seq

    def on_subscription(self, event: bytes) -> tuple[int, str] | None:
        """Apply one XPUB subscription event; say whom to tell.

        Args:
            event: ``\\x01topic`` (first subscriber) or ``\\x00topic`` (last one gone).

        Returns:
            ``(1, name)`` when a type's first subscriber appeared, ``(0, name)`` when
            its last one left, None otherwise (a prefix, a repeat, or data a plugin
            wrote to its SUB socket, which means nothing).
        """
        if not event or event[0] not in (_SUBSCRIBE, _UNSUBSCRIBE):
            return None
        topic = event[1:]
        name = topic.decode("ascii", errors="replace")
        valid = topic.isascii() and is_valid_type_name(name)
        told: tuple[int, str] | None = None
        if event[0] == _SUBSCRIBE:
            if valid and name not in self.names:
                self.names.add(name)
                told = (_SUBSCRIBE, name)
            elif not valid:
                self.prefixes.add(topic)
        elif valid and name in self.names:
            self.names.discard(name)
            self.forward_seq.pop(topic, None)
            told = (_UNSUBSCRIBE, name)
        elif not valid:
            self.prefixes.discard(topic)
        return told
