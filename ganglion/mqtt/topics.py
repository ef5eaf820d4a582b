"""MQTT topic names and reading payloads.

A topic level must not hold ``/`` (it would split the level), ``+`` or ``#``
(wildcards) or NUL (MQTT 3.1.1 section 4.7); ganglion's sensor ids do hold ``/``
(``i2c:1/0x76``), so each of those characters becomes ``_`` in a level. A type
without a key publishes under the sensor level ``-``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import Any

__all__ = [
    "NO_SENSOR",
    "availability_topic",
    "bridge_state_topic",
    "level",
    "reading_payload",
    "reading_topic",
    "sensor_label",
]

#: The sensor level of a type without a key.
NO_SENSOR = "-"
_BAD = str.maketrans({"/": "_", "+": "_", "#": "_", "\0": "_"})


def level(text: str) -> str:
    """``text`` as one topic level (``/ + #`` and NUL replaced by ``_``; never empty)."""
    return text.translate(_BAD) or "_"


def sensor_label(key: tuple[Any, ...] | None) -> str:
    """The sensor level of a reading: its key's values joined by ``,``, or ``-``."""
    if not key:
        return NO_SENSOR
    return ",".join("" if v is None else str(getattr(v, "value", v)) for v in key)


def reading_topic(prefix: str, node: str, type_name: str, sensor: str) -> str:
    """``<prefix>/<node>/<type>/<sensor>``, each level made safe."""
    return f"{prefix}/{level(node)}/{level(type_name)}/{level(sensor)}"


def availability_topic(prefix: str, node: str) -> str:
    """Where a node's ``online`` / ``offline`` goes: ``<prefix>/<node>/availability``."""
    return f"{prefix}/{level(node)}/availability"


def bridge_state_topic(prefix: str) -> str:
    """The bridge's own birth and last will: ``<prefix>/bridge/state``."""
    return f"{prefix}/bridge/state"


def reading_payload(fields: Mapping[str, Any], *, sent_ns: int, seq: int) -> bytes:
    """A reading as JSON: every field, plus ``ts`` (ISO 8601, UTC) and ``seq``.

    Bytes become hex strings, datetimes ISO 8601, a NaN or infinite float ``null``
    (JSON has none), so any ganglion type maps to JSON. A field called ``ts`` or
    ``seq`` keeps its value (the reading's own wins).

    Raises:
        ValueError: a value nested in a list or map is NaN or infinite.
    """
    doc = {"ts": iso_time(sent_ns), "seq": seq, **fields}
    try:
        text = _ENCODER.encode(doc)
    except ValueError:
        doc = {k: None if isinstance(v, float) and not math.isfinite(v) else v
               for k, v in doc.items()}
        text = _ENCODER.encode(doc)
    return text.encode()


def iso_time(ns: int) -> str:
    """``ns`` since the epoch as ISO 8601 in UTC with microseconds (``...T12:00:00.000001+00:00``).

    The date and time up to the second are formatted once per second and kept: a
    bridge formats thousands of timestamps a second, mostly within the same one.
    """
    global _last_second, _last_prefix
    seconds, rest = divmod(ns, 1_000_000_000)
    if seconds != _last_second:
        _last_prefix = dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = seconds
    return f"{_last_prefix}.{rest // 1000:06d}+00:00"


_last_second = -1
_last_prefix = ""


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


#: One encoder for every payload: ``json.dumps`` with arguments builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                            default=_plain)
