"""The dashboard's live state: latest readings, ring buffers and the event backlog.

Theory of operation (sans-IO: no sockets, no clock reads; the caller passes time
and readings in): every reading the node delivers becomes one :class:`LiveReading`
(plain JSON-ready data). :class:`LiveState` keeps

* the latest reading per (type, node, sensor) -- ``/api/latest`` and the page's table;
* a ring buffer of the last :data:`DEFAULT_RING` readings per (type, node, sensor),
  the *live* plot window a newly connected browser starts from (memory is bounded:
  at most ``max_series`` series of ``ring`` readings each; readings of a series
  beyond ``max_series`` still update nothing and are counted as ``refused``);
* the readings taken since the last :meth:`LiveState.flush`, which the server turns
  into one ``readings`` event every flush interval (one JSON encoding shared by all
  browsers), and a bounded backlog of recent events so a browser that reconnects
  with ``Last-Event-ID`` gets exactly what it missed, or a fresh snapshot when its
  id is from another server run (``epoch``) or already out of the backlog.

A reading's *sensor* is the value of its ``sensor`` field (ganglion's reading types
name their sensor there, and it is the key of keyed types), or ``""`` without one.
"""

from __future__ import annotations

import collections
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ganglion.logger.datajson import plain

__all__ = [
    "DEFAULT_BACKLOG",
    "DEFAULT_MAX_SERIES",
    "DEFAULT_RING",
    "Event",
    "LiveReading",
    "LiveState",
    "numeric_fields",
    "sensor_of",
]

#: Readings kept per (type, node, sensor) for the live plot (20 min at 1 Hz).
DEFAULT_RING = 1200
#: Series (type, node, sensor) held at most; more are counted and not kept.
DEFAULT_MAX_SERIES = 500
#: ``readings`` events kept for ``Last-Event-ID`` catch-up.
DEFAULT_BACKLOG = 600

SeriesKey = tuple[str, str, str]


def sensor_of(data: Mapping[str, Any]) -> str:
    """A reading's sensor: its ``sensor`` field as text, ``""`` without one."""
    value = data.get("sensor")
    return "" if value is None else str(value)


def numeric_fields(data: Mapping[str, Any]) -> dict[str, float]:
    """The plottable fields of a reading: finite ints and floats (not bools)."""
    return {k: v for k, v in data.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
            and (isinstance(v, int) or math.isfinite(v))}


@dataclass(frozen=True, slots=True)
class LiveReading:
    """One reading as the dashboard shows and sends it.

    Attributes:
        type: the dotted type name.
        node: the sender's node id, 16 hex digits.
        sensor: see :func:`sensor_of`.
        seq: the sender's sequence number.
        sent_ns: the sender's timestamp (ns since the epoch).
        received_ns: this node's timestamp at receipt.
        data: every field, JSON-ready (:func:`ganglion.logger.datajson.plain`).
        clock_synced: False when the sender flagged its clock unsynchronised.
        replayed: True when sent by ``ganglion replay``.
        last_value: True for a publisher's latest reading fetched on subscribing.
    """

    type: str
    node: str
    sensor: str
    seq: int
    sent_ns: int
    received_ns: int
    data: dict[str, Any]
    clock_synced: bool = True
    replayed: bool = False
    last_value: bool = False

    @classmethod
    def build(cls, type_name: str, node: str, fields: Mapping[str, Any], *, seq: int,
              sent_ns: int, received_ns: int, clock_synced: bool = True,
              replayed: bool = False, last_value: bool = False) -> LiveReading:
        """A reading from a message's fields (converted to JSON-ready data)."""
        data = plain(dict(fields))
        return cls(type_name, node, sensor_of(data), seq, sent_ns, received_ns, data,
                   clock_synced, replayed, last_value)

    @property
    def key(self) -> SeriesKey:
        """(type, node, sensor): the series this reading belongs to."""
        return (self.type, self.node, self.sensor)

    def as_json(self) -> dict[str, Any]:
        """The reading as the API and the event stream send it."""
        return {"type": self.type, "node": self.node, "sensor": self.sensor, "seq": self.seq,
                "sent_ns": self.sent_ns, "received_ns": self.received_ns, "data": self.data,
                "clock_synced": self.clock_synced, "replayed": self.replayed,
                "last_value": self.last_value}


@dataclass(frozen=True, slots=True)
class Event:
    """One server-sent event, encoded once for every browser.

    Attributes:
        id: ``<epoch>-<number>``, or "" for events without an id (status).
        name: the event name (``snapshot``, ``readings``, ``status``).
        payload: the wire bytes (``id:``/``event:``/``data:`` lines and the blank line).
    """

    id: str
    name: str
    payload: bytes


def encode_event(name: str, data: Any, event_id: str = "") -> bytes:
    """The text/event-stream bytes of one event (JSON data on one line)."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {name}\ndata: {text}\n\n".encode()


class LiveState:
    """Latest values, ring buffers and the ``readings`` event backlog (see the module doc).

    Args:
        epoch: tells this server run's event ids from another's (a random token).
        ring: readings kept per series.
        max_series: series kept at most.
        backlog: ``readings`` events kept for catch-up.
    """

    def __init__(self, epoch: str, *, ring: int = DEFAULT_RING,
                 max_series: int = DEFAULT_MAX_SERIES, backlog: int = DEFAULT_BACKLOG) -> None:
        if ring < 1 or max_series < 1 or backlog < 1:
            raise ValueError("ring, max_series and backlog must be at least 1")
        if "-" in epoch or not epoch:
            raise ValueError("epoch must be a non-empty token without '-'")
        self.epoch = epoch
        self.ring = ring
        self.max_series = max_series
        self._series: dict[SeriesKey, collections.deque[LiveReading]] = {}
        self._pending: list[LiveReading] = []
        self._backlog: collections.deque[Event] = collections.deque(maxlen=backlog)
        self._number = 0
        self.received = 0
        self.refused = 0
        #: Numeric field names seen per type, in the order first seen.
        self.fields: dict[str, dict[str, None]] = {}

    # -- in -----------------------------------------------------------------------------

    def add(self, reading: LiveReading) -> None:
        """Take one reading (latest value, ring buffer, next ``readings`` event)."""
        self.received += 1
        ring = self._series.get(reading.key)
        if ring is None:
            if len(self._series) >= self.max_series:
                self.refused += 1
                return
            ring = self._series[reading.key] = collections.deque(maxlen=self.ring)
        ring.append(reading)
        known = self.fields.setdefault(reading.type, {})
        for name in numeric_fields(reading.data):
            if name not in known:
                known[name] = None
        self._pending.append(reading)

    def flush(self) -> Event | None:
        """The ``readings`` event of everything taken since the last flush (None if nothing)."""
        if not self._pending:
            return None
        batch, self._pending = self._pending, []
        self._number += 1
        event_id = f"{self.epoch}-{self._number}"
        event = Event(event_id, "readings",
                      encode_event("readings", [r.as_json() for r in batch], event_id))
        self._backlog.append(event)
        return event

    # -- out ----------------------------------------------------------------------------

    @property
    def last_id(self) -> str:
        """The id of the newest ``readings`` event (``<epoch>-0`` before the first)."""
        return f"{self.epoch}-{self._number}"

    def latest(self) -> list[LiveReading]:
        """The latest reading of every series, sorted by (type, node, sensor)."""
        return [self._series[key][-1] for key in sorted(self._series)]

    def window(self) -> list[list[Any]]:
        """Every series' ring buffer, compactly: ``[type, node, sensor, [[t_ms, {field: v}], ...]]``.

        Time is the reading's ``received_ns`` in milliseconds (this node's clock, so an
        unsynchronised sender's readings still plot at the right place)."""
        out: list[list[Any]] = []
        for key in sorted(self._series):
            points = [[r.received_ns // 1_000_000, numeric_fields(r.data)]
                      for r in self._series[key]]
            out.append([*key, points])
        return out

    def since(self, last_event_id: str) -> list[Event] | None:
        """The events a browser that saw ``last_event_id`` missed, or None for a snapshot.

        None when the id is from another run (its epoch differs), malformed, or older
        than the backlog holds: the browser then needs the whole state again.
        """
        epoch, _, number = last_event_id.partition("-")
        if epoch != self.epoch or not number.isdigit():
            return None
        seen = int(number)
        if seen > self._number:
            return None
        if seen == self._number:
            return []
        oldest = self._backlog[0].id if self._backlog else None
        if oldest is None or int(oldest.partition("-")[2]) > seen + 1:
            return None
        return [e for e in self._backlog if int(e.id.partition("-")[2]) > seen]

    def series_keys(self) -> Iterable[SeriesKey]:
        """The (type, node, sensor) series held."""
        return self._series.keys()
