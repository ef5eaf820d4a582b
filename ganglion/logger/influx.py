"""Export a log as InfluxDB line protocol (InfluxDB, QuestDB, VictoriaMetrics read it).

Theory of operation: one line per reading,
``measurement,tag=value field=value timestamp``: the measurement is the type
name, the tags are ``node`` (the sender's 16 hex digits) and ``sensor`` (the
reading's ``sensor`` field, when it is text), the fields are its numbers, text
and booleans (nested maps and lists flattened with dots, ``position.lat``,
``samples.0``), the timestamp the sender's time in ns.

Escaping (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/):
in the measurement, commas and spaces get a backslash; in tag keys, tag values
and field keys, commas, equals signs and spaces do. String field values are
double-quoted, with ``"`` and ``\\`` escaped. Line protocol has no way to carry
a newline in a tag or key, so one is written as the two characters ``\\n``
there (and in string values, where some parsers stop at a raw newline).

What line protocol cannot hold is left out, never written malformed: integers
outside int64 become floats (``i`` marks int64), NaN and infinities and None are
dropped, bytes are dropped (they are not text); a reading left with no field,
or with a sender time at or beyond 2**63 ns, is skipped and counted.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from ganglion.logger import datajson
from ganglion.logger.query import select_readings

__all__ = ["escape_key", "escape_measurement", "export_influx", "line", "string_value"]

_INT64 = 1 << 63


def escape_measurement(text: str) -> str:
    """Escape a measurement name: ``,`` and space (and newlines)."""
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ")
            .replace("\n", "\\n"))


def escape_key(text: str) -> str:
    """Escape a tag key, tag value or field key: ``,``, ``=`` and space (and newlines)."""
    return (text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")
            .replace(" ", "\\ ").replace("\n", "\\n"))


def string_value(text: str) -> str:
    """A string field value: double-quoted, ``"`` and ``\\`` escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _fields(prefix: str, value: Any) -> Iterator[tuple[str, str]]:
    """(key, encoded value) for every field line protocol can carry."""
    if isinstance(value, bool):
        yield prefix, "true" if value else "false"
    elif isinstance(value, int):
        if -_INT64 <= value < _INT64:
            yield prefix, f"{value}i"
        else:
            yield prefix, repr(float(value))
    elif isinstance(value, float):
        if math.isfinite(value):
            yield prefix, repr(value)
    elif isinstance(value, str):
        yield prefix, string_value(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _fields(f"{prefix}.{key}", inner)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from _fields(f"{prefix}.{index}", inner)


def line(type_name: str, node: str, fields: dict[str, Any], sent_ns: int) -> str | None:
    """One reading as a line (no newline), or None when nothing of it fits the protocol."""
    if not 0 <= sent_ns < _INT64:
        return None
    sensor = fields.get("sensor")
    tags = f",node={escape_key(node)}"
    if isinstance(sensor, str) and sensor:
        tags += f",sensor={escape_key(sensor)}"
    encoded = [f"{escape_key(key)}={value}"
               for name, inner in fields.items() if not (name == "sensor" and isinstance(inner, str))
               for key, value in _fields(name, inner)]
    if not encoded:
        return None
    return f"{escape_measurement(type_name)}{tags} {','.join(encoded)} {sent_ns}"


def export_influx(conn: sqlite3.Connection, out: TextIO, *, patterns: Iterable[str] = (),
                  since_ns: int | None = None, until_ns: int | None = None) -> tuple[int, int]:
    """Write the selected readings as line protocol.

    Returns:
        (readings selected, lines written): the difference was skipped (no field the
        protocol carries, or a sender time it cannot hold).
    """
    selected = written = 0
    for r in select_readings(conn, patterns=patterns, since_ns=since_ns, until_ns=until_ns):
        selected += 1
        text = line(r.type, r.node, datajson.loads(r.data), r.sent_ns)
        if text is not None:
            out.write(text + "\n")
            written += 1
    return selected, written
