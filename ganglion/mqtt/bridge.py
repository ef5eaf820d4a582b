"""The bridge as a state machine: readings, peers and broker events in, MQTT messages out.

Theory of operation (STYLE.md section 9; zigbee2mqtt's ``homeassistant.ts``):
discovery is a lifecycle, not a message.

* **Readings.** Each reading of a (node, type, sensor) goes to its state topic as
  JSON (:mod:`.topics`), retained by default. The first reading of a stream, a new
  schema for its type (announced after the first reading arrived) and a change of
  its ``expire_after`` step make the node's discovery config be published again.
* **Availability.** The bridge's birth ``online`` and last will ``offline`` on
  ``<prefix>/bridge/state``; per node ``online`` / ``offline`` on
  ``<prefix>/<node>/availability`` as ganglion's membership gains and loses the
  node (:meth:`BridgeCore.peers`). Every entity lists both topics with
  ``availability_mode: all``, so it is unavailable when either says offline.
* **expire_after** from the observed interval of each stream (an average of the
  gaps between live readings): the smallest step of :data:`EXPIRE_STEPS` at least
  ``3 x interval + 2 s``. It grows at once and shrinks only when a step a quarter
  of the current one would do, so a jittery sensor does not re-publish configs.
* **No ghosts.** Configs of this bridge found on the broker (retained, read back at
  start: :meth:`BridgeCore.retained_config`) that name no live node or sensor are
  cleared once ``forget_after`` seconds have passed since the bridge started; a
  node gone (or a sensor silent) for ``forget_after`` seconds has its configs,
  availability and retained readings cleared too (:meth:`BridgeCore.tick`).
  :meth:`BridgeCore.purge` clears everything found.
* **Re-publishing.** On every (re)connect (:meth:`BridgeCore.connected`) and when
  Home Assistant says ``online`` on its status topic, every config and
  availability is published again.

Each :class:`Publish` says whether it may wait in the outbox while the broker is
away (readings) or is state the bridge re-derives on reconnect (configs,
availability). Pure: time is an argument; nothing here touches a socket.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from ganglion.mqtt import discovery as ha
from ganglion.mqtt.topics import (
    availability_topic,
    bridge_state_topic,
    reading_payload,
    reading_topic,
)
from ganglion.types import FieldSchema, TypeSchema
from ganglion.types._meta import guessed_field

__all__ = ["EXPIRE_STEPS", "BridgeCore", "BridgeSettings", "Publish"]

#: The values ``expire_after`` takes (seconds).
EXPIRE_STEPS = (10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
#: Weight of the newest gap in the interval average.
_ALPHA = 0.3
_TOPIC_PREFIX = re.compile(r"^[^#+\0]+$")
_ONLINE, _OFFLINE = b"online", b"offline"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BridgeSettings:
    """What the bridge publishes, and where.

    Attributes:
        prefix: the first topic level(s) of readings and availability.
        ha: publish Home Assistant discovery configs.
        ha_prefix: Home Assistant's discovery prefix.
        ha_mode: ``device`` (one config per node, Home Assistant 2024.12 and later)
            or ``component`` (one config per entity, every version).
        qos: QoS of readings (0 or 1); configs and availability use 1.
        retain: retain readings (the latest per topic), as ganglion's last values.
        forget_after: seconds a node or sensor is gone before its configs are
            cleared; also the grace period for configs found at start.
        version: the bridge's ganglion version (the ``origin`` block).
    """

    prefix: str = "ganglion"
    ha: bool = True
    ha_prefix: str = "homeassistant"
    ha_mode: str = "device"
    qos: int = 0
    retain: bool = True
    forget_after: float = 3600.0
    version: str = ""

    def __post_init__(self) -> None:
        for name in ("prefix", "ha_prefix"):
            value = getattr(self, name)
            if not _TOPIC_PREFIX.match(value) or value.startswith("/") or value.endswith("/"):
                raise ValueError(f"{name} {value!r} must be topic levels without + # or an "
                                 f"outer /")
        if self.ha_mode not in ("device", "component"):
            raise ValueError(f"ha_mode must be device or component, not {self.ha_mode!r}")
        if self.qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, not {self.qos}")
        if not self.forget_after > 0:
            raise ValueError("forget_after must be > 0 seconds")


class Publish(NamedTuple):
    """One MQTT message to send (a NamedTuple: the bridge makes one per reading).

    Attributes:
        topic: the topic.
        payload: the payload (empty: clear a retained message).
        qos: 0 or 1.
        retain: retain it.
        queue: a reading, which waits in the outbox while the broker is away; False
            for configs and availability, which :meth:`BridgeCore.connected`
            re-derives.
    """

    topic: str
    payload: bytes
    qos: int
    retain: bool
    queue: bool = False


class _Stream:
    __slots__ = ("band", "expire", "fields", "interval", "last", "schema", "topic")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.last: float | None = None
        self.interval: float | None = None
        self.expire: int | None = None
        self.band = (0.0, -1.0)  # intervals for which ``expire`` stays (see _observe)
        self.schema: TypeSchema | bool | None = False  # False: not seen yet
        self.fields: list[FieldSchema] = []


class _Node:
    __slots__ = ("device", "last_seen", "online", "published", "removed", "streams")

    def __init__(self, device: ha.NodeDevice, now: float) -> None:
        self.device = device
        self.online = False
        self.last_seen = now
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.removed: set[str] = set()  # component ids to remove in the next config
        self.published: set[str] = set()  # component ids in the last config sent


class BridgeCore:
    """The bridge's state: nodes, their streams and entities, and what was found on the broker.

    Args:
        settings: the bridge's settings.
        now: the time the bridge starts (monotonic seconds).
    """

    def __init__(self, settings: BridgeSettings, *, now: float) -> None:
        self.settings = settings
        self._started = now
        self._nodes: dict[bytes, _Node] = {}
        self._found: dict[str, set[str]] = {}  # our configs on the broker: topic -> ids
        self._state_topic = bridge_state_topic(settings.prefix)
        #: Counters (``readings``, ``configs``, ``forgotten``, ``unencodable``, ...).
        self.counts: dict[str, int] = {"readings": 0, "configs": 0, "forgotten": 0,
                                       "stale_cleared": 0, "unencodable": 0}

    # -- inputs ------------------------------------------------------------------------

    def reading(self, type_name: str, fields: Mapping[str, Any], *, sender: bytes, seq: int,
                sent_ns: int, sensor: str, node: ha.NodeDevice, schema: TypeSchema | None,
                now: float, last_value: bool = False) -> list[Publish]:
        """A reading arrived: its state message, and configs or availability it changes.

        Args:
            type_name: its type.
            fields: its fields as plain data.
            sender: the publishing node's id.
            seq: its sequence number.
            sent_ns: the sender's timestamp.
            sensor: its sensor label (:func:`.topics.sensor_label`).
            node: the sender as a device (its name, version).
            schema: the type's self-description, if known (else fields are guessed
                from the values).
            now: the time.
            last_value: a publisher's latest reading fetched at start (not counted in
                the interval).
        """
        out: list[Publish] = []
        entry = self._nodes.get(sender)
        if entry is None:
            entry = self._nodes[sender] = _Node(node, now)
        elif entry.device is not node and entry.device != node \
                and node.name != node.node_id.hex():
            entry.device = node  # a new name or version (never back to the bare id)
        entry.last_seen = now
        if not entry.online:
            entry.online = True
            out.append(self._availability(entry))
        stream = entry.streams.get((type_name, sensor))
        changed = False
        if stream is None:
            stream = entry.streams[(type_name, sensor)] = _Stream(
                reading_topic(self.settings.prefix, node.name, type_name, sensor))
            changed = True
        if not last_value:
            changed |= _observe(stream, now)
        if self.settings.ha and stream.schema is not schema and stream.schema != schema:
            stream.schema = schema
            stream.fields = ha.entity_fields(schema.fields if schema is not None
                                             else _guess(fields))
            changed = True
        if changed and self.settings.ha:
            out.extend(self._configs(entry))
        try:
            payload = reading_payload(fields, sent_ns=sent_ns, seq=seq)
        except (ValueError, TypeError):
            self.counts["unencodable"] += 1
            return out
        self.counts["readings"] += 1
        out.append(Publish(stream.topic, payload, self.settings.qos, self.settings.retain,
                           queue=True))
        return out

    def peers(self, live: Mapping[bytes, str], now: float) -> list[Publish]:
        """The nodes ganglion's membership holds now (id -> name): availability changes."""
        out = []
        for node_id, entry in self._nodes.items():
            alive = node_id in live
            if alive:
                entry.last_seen = now
            if alive != entry.online:
                entry.online = alive
                out.append(self._availability(entry))
        return out

    def connected(self) -> list[Publish]:
        """The broker (re)connected: birth, every availability and every config."""
        out = [Publish(self._state_topic, _ONLINE, 1, True)]
        out.extend(self._everything())
        return out

    def ha_status(self, payload: bytes) -> list[Publish]:
        """Home Assistant's status topic said ``payload``: on ``online``, re-publish."""
        return self._everything() if payload.strip() == _ONLINE else []

    def retained_config(self, topic: str, payload: bytes) -> None:
        """A discovery config read back from the broker; this bridge's own are noted."""
        if not payload:
            self._found.pop(topic, None)
            return
        ids = self._ours(topic, payload)
        if ids is not None:
            self._found[topic] = ids

    def tick(self, now: float) -> list[Publish]:
        """Forget nodes and sensors gone for ``forget_after``; clear stale configs found."""
        out: list[Publish] = []
        limit = self.settings.forget_after
        for node_id in [n for n, e in self._nodes.items()
                        if not e.online and now - e.last_seen >= limit]:
            out.extend(self._forget_node(self._nodes.pop(node_id)))
        for entry in self._nodes.values():
            gone = [k for k, s in entry.streams.items()
                    if s.last is not None and now - s.last >= limit]
            if gone:
                for key in gone:
                    stream = entry.streams.pop(key)
                    entry.removed.update(_ids(entry, key, stream))
                    out.append(Publish(stream.topic, b"", 1, True))
                    self.counts["forgotten"] += 1
                if self.settings.ha:
                    out.extend(self._configs(entry))
        if self._found and now - self._started >= limit:
            out.extend(self._clear_found())
        return out

    def purge(self) -> list[Publish]:
        """Clear every config of this bridge found on the broker (``ganglion mqtt --purge``)."""
        out = [Publish(topic, b"", 1, True) for topic in sorted(self._found)]
        self.counts["stale_cleared"] += len(out)
        self._found.clear()
        return out

    def stats(self) -> dict[str, int]:
        """Counters, and the sizes of the tables."""
        return {**self.counts, "nodes": len(self._nodes),
                "nodes_online": sum(e.online for e in self._nodes.values()),
                "entities": sum(len(s.fields) for e in self._nodes.values()
                                for s in e.streams.values()),
                "found_configs": len(self._found)}

    @property
    def state_topic(self) -> str:
        """The bridge's birth / last-will topic."""
        return self._state_topic

    # -- outputs -------------------------------------------------------------------------

    def _availability(self, entry: _Node) -> Publish:
        return Publish(availability_topic(self.settings.prefix, entry.device.name),
                       _ONLINE if entry.online else _OFFLINE, 1, True)

    def _everything(self) -> list[Publish]:
        out = []
        for entry in self._nodes.values():
            out.append(self._availability(entry))
            if self.settings.ha:
                out.extend(self._configs(entry))
        return out

    def _entities(self, entry: _Node) -> list[ha.Entity]:
        return [ha.Entity(entry.device.node_id, type_name, sensor, f, stream.topic,
                          stream.expire)
                for (type_name, sensor), stream in sorted(entry.streams.items())
                for f in stream.fields]

    def _configs(self, entry: _Node) -> list[Publish]:
        s = self.settings
        avail = [self._state_topic, availability_topic(s.prefix, entry.device.name)]
        entities = self._entities(entry)
        current = {e.unique_id for e in entities}
        removed = (entry.removed | (entry.published - current)) - current
        entry.removed = set()
        entry.published = current
        self.counts["configs"] += 1
        if s.ha_mode == "device":
            config = ha.device_config(entry.device, entities, avail, version=s.version,
                                      removed=sorted(removed))
            return [Publish(ha.device_topic(s.ha_prefix, entry.device.node_id), _json(config),
                            1, True)]
        out = [Publish(ha.component_topic(s.ha_prefix, uid), b"", 1, True)
               for uid in sorted(removed)]
        out.extend(Publish(ha.component_topic(s.ha_prefix, e.unique_id),
                           _json(ha.component_config(entry.device, e, avail, version=s.version)),
                           1, True) for e in entities)
        return out

    def _forget_node(self, entry: _Node) -> list[Publish]:
        s = self.settings
        out = [Publish(stream.topic, b"", 1, True) for stream in entry.streams.values()]
        out.append(Publish(availability_topic(s.prefix, entry.device.name), b"", 1, True))
        if s.ha:
            if s.ha_mode == "device":
                out.append(Publish(ha.device_topic(s.ha_prefix, entry.device.node_id), b"",
                                   1, True))
            else:
                out.extend(Publish(ha.component_topic(s.ha_prefix, uid), b"", 1, True)
                           for uid in sorted(entry.published))
        self.counts["forgotten"] += 1
        return out

    def _clear_found(self) -> list[Publish]:
        s = self.settings
        out: list[Publish] = []
        live_devices = {ha.device_topic(s.ha_prefix, n): e for n, e in self._nodes.items()}
        live_components = {ha.component_topic(s.ha_prefix, uid)
                           for e in self._nodes.values() for uid in e.published}
        for topic, ids in sorted(self._found.items()):
            entry = live_devices.get(topic)
            if entry is not None and s.ha_mode == "device":
                extra = ids - entry.published
                if extra:
                    entry.removed |= extra
                    out.extend(self._configs(entry))
                    self.counts["stale_cleared"] += len(extra)
            elif topic not in live_components:
                out.append(Publish(topic, b"", 1, True))
                self.counts["stale_cleared"] += 1
        self._found.clear()
        return out

    def _ours(self, topic: str, payload: bytes) -> set[str] | None:
        """The component ids of a config this bridge made, or None for somebody else's."""
        try:
            doc = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(doc, dict) or (doc.get("origin") or {}).get("name") != "ganglion":
            return None
        mine = self.settings.prefix + "/"
        cmps = doc.get("cmps")
        if isinstance(cmps, dict):
            found = {uid for uid, c in cmps.items() if isinstance(c, dict)
                     and str(c.get("state_topic", "")).startswith(mine)}
            markers = [c for c in cmps.values() if isinstance(c, dict) and len(c) == 1]
            return found if found or markers else None
        if str(doc.get("state_topic", "")).startswith(mine):
            return {str(doc.get("unique_id", ""))}
        return None


# -- helpers ------------------------------------------------------------------------


def _observe(stream: _Stream, now: float) -> bool:
    """Note a live reading's time; True when the stream's ``expire_after`` step changed."""
    last, stream.last = stream.last, now
    if last is None:
        return False
    gap = max(0.0, now - last)
    interval = stream.interval = gap if stream.interval is None else (
        (1 - _ALPHA) * stream.interval + _ALPHA * gap)
    low, high = stream.band
    if low < interval <= high:
        return False  # the common case: the step stays (two comparisons per reading)
    before = stream.expire
    wanted = expire_step(interval)
    if before is None or wanted > before or wanted * 4 <= before:
        stream.expire = wanted
    current = stream.expire
    assert current is not None
    # The step stays while expire_step(interval) <= current, i.e. 3 x interval + 2 <=
    # current, and a quarter of it would not do: 3 x interval + 2 > the largest step
    # at most current / 4.
    quarter = max((s for s in EXPIRE_STEPS if s * 4 <= current), default=0)
    stream.band = ((quarter - 2) / 3 if quarter else -math.inf, (current - 2) / 3)
    return current != before


def expire_step(interval: float) -> int:
    """The ``expire_after`` for a stream read every ``interval`` seconds."""
    needed = 3 * interval + 2
    return next((step for step in EXPIRE_STEPS if step >= needed), EXPIRE_STEPS[-1])


def _guess(fields: Mapping[str, Any]) -> list[FieldSchema]:
    """Fields of a type nobody described: numbers by their values, units by their names."""
    return [guessed_field(name, "int" if isinstance(v, int) else "float")
            for name, v in fields.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
            and not (isinstance(v, float) and math.isnan(v))]


def _ids(entry: _Node, key: tuple[str, str], stream: _Stream) -> Iterable[str]:
    return (ha.unique_id(entry.device.node_id, key[0], key[1], f.name) for f in stream.fields)


def _json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
