"""Export a log as a wide table: one row per time bucket, one column per (node, sensor, field).

Theory of operation: the long CSV (:mod:`ganglion.logger.export`) has a row per
reading, which a spreadsheet cannot plot as "the three probes over the day"
without a pivot table. The wide form does the pivot:

* **Rows** are time buckets (``bucket`` seconds, 60 by default) of the sender's
  time (``sent_ns``, the reading's own timestamp, as the long CSV's ``time``);
  only buckets holding a reading get a row, in time order. The ``time`` cell is
  the bucket's start in ISO 8601 UTC.
* **Columns** are (node, sensor, type, field). The sensor is the reading's
  ``sensor`` field (the key of ganglion's reading types), shown by the name a
  ``sensors.SensorInfo`` in the log gave it (``[sensors."ID"] name``) where there
  is one. A ``sensors.Reading`` (``quantity``, ``value``, ``unit``) becomes one
  column per quantity. Nested fields are flattened as in the long CSV
  (``position.lat``). The header reads ``node/sensor/field (unit)``; a type
  without a ``sensor`` field puts the type name in the sensor's place; two
  columns whose headers would be the same get the type name before the field
  (``sensors.Temperature.celsius``). Columns are sorted by their headers.
* **Units** come from the log's ``types`` table (what the logger knew of each
  type), else from field-name conventions (:func:`ganglion.logger.catalog.unit_of`:
  ``celsius`` -> °C, ``percent`` -> %, ``hpa`` -> hPa).
* **Cells** aggregate the bucket's numbers with ``agg`` (``mean``, ``min``,
  ``max`` or ``last``); a value that is not a number (text, a boolean) is the
  bucket's last. A column without readings in a bucket is empty. Last-value
  answers (a repeat of a reading already logged) are left out, so they do not
  weigh twice; ``sensors.SensorInfo`` (names and calibrations) is not a reading
  and gets no columns.

Memory is one aggregate per filled cell, i.e. the size of the table written;
the log itself is streamed once.
"""

from __future__ import annotations

import csv
import json
import math
import sqlite3
from collections import Counter
from collections.abc import Iterable
from typing import Any, TextIO

from ganglion.logger import datajson
from ganglion.logger.catalog import unit_of
from ganglion.logger.export import cell_text, iso_time
from ganglion.logger.query import select_readings
from ganglion.logger.schema import Flags

__all__ = ["AGGREGATES", "DEFAULT_BUCKET", "export_wide"]

#: Ways to sum a bucket's numbers into one cell.
AGGREGATES = ("mean", "min", "max", "last")

#: Seconds per row by default.
DEFAULT_BUCKET = 60.0

#: The type whose readings name sensors (hardware/messages.py); it gets no columns.
SENSOR_INFO = "sensors.SensorInfo"

_Column = tuple[str, str, str, str]  # node id, sensor ("" for none), type, field


class _Cell:
    """One bucket's values of one column."""

    __slots__ = ("count", "last", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.last: Any = None

    def add(self, value: Any) -> None:
        self.last = value
        if _is_number(value):
            self.count += 1
            self.total += value
            self.minimum = min(self.minimum, value)
            self.maximum = max(self.maximum, value)

    def text(self, agg: str) -> str:
        if agg == "last" or not self.count or not _is_number(self.last):
            return cell_text(self.last)
        if agg == "min":
            return cell_text(self.minimum)
        if agg == "max":
            return cell_text(self.maximum)
        return cell_text(round(self.total / self.count, 6))


def export_wide(conn: sqlite3.Connection, out: TextIO, *, bucket: float = DEFAULT_BUCKET,
                agg: str = "mean", patterns: Iterable[str] = (), since_ns: int | None = None,
                until_ns: int | None = None) -> tuple[int, int]:
    """Write the selected readings as a wide CSV table (see the module's docstring).

    Args:
        conn: an open log.
        out: a text stream opened with ``newline=""``.
        bucket: seconds per row, > 0.
        agg: how a bucket's numbers make a cell: one of :data:`AGGREGATES`.
        patterns, since_ns, until_ns: the selection (see
            :func:`ganglion.logger.query.select_readings`).

    Returns:
        (rows written, readings used).

    Raises:
        ValueError: ``bucket`` is not a positive number or ``agg`` is unknown.
    """
    if not bucket > 0 or not math.isfinite(bucket):
        raise ValueError(f"the bucket must be a positive number of seconds, not {bucket!r}")
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregate {agg!r}; use one of {', '.join(AGGREGATES)}")
    bucket_ns = max(1, int(bucket * 1e9))
    units = _known_units(conn)
    cells: dict[int, dict[_Column, _Cell]] = {}
    column_units: dict[_Column, str | None] = {}
    used = 0
    for r in select_readings(conn, patterns=patterns, since_ns=since_ns, until_ns=until_ns):
        if r.flags & Flags.LAST_VALUE or r.type == SENSOR_INFO:
            continue
        used += 1
        row = cells.setdefault(r.sent_ns // bucket_ns, {})
        for column, value, unit in _values(r.node, r.type, datajson.loads(r.data), units):
            row.setdefault(column, _Cell()).add(value)
            if column not in column_units or unit is not None:
                column_units[column] = unit
    # Columns in the order a person looks for them: by node, sensor and field as shown.
    labelled = sorted(zip(_headers(conn, list(column_units), column_units), column_units,
                          strict=True))
    headers = [text for text, _ in labelled]
    columns = [column for _, column in labelled]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["time", *headers])
    for start in sorted(cells):
        row = cells[start]
        writer.writerow([iso_time(start * bucket_ns),
                         *(row[c].text(agg) if c in row else "" for c in columns)])
    return len(cells), used


def _values(node: str, type_name: str, fields: dict[str, Any],
            units: dict[str, dict[str, str]]) -> Iterable[tuple[_Column, Any, str | None]]:
    """The (column, value, unit) of each field of one reading."""
    sensor = fields.pop("sensor", None)
    key = sensor if isinstance(sensor, str) else ""
    quantity, value = fields.get("quantity"), fields.get("value")
    if isinstance(quantity, str) and quantity and "value" in fields:
        unit = fields.get("unit")  # sensors.Reading: the unit travels with the value
        if not isinstance(unit, str) or not unit:
            unit = unit_of(quantity)
        yield (node, key, type_name, quantity), value, unit
        return
    known = units.get(type_name, {})
    for path, leaf in _leaves(fields, ""):
        yield (node, key, type_name, path), leaf, known.get(path) or unit_of(path.split(".")[-1])


def _leaves(value: Any, prefix: str) -> Iterable[tuple[str, Any]]:
    if isinstance(value, dict):
        for k, inner in value.items():
            yield from _leaves(inner, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield from _leaves(inner, f"{prefix}.{i}")
    else:
        yield prefix, value


def _known_units(conn: sqlite3.Connection) -> dict[str, dict[str, str]]:
    """Type name -> field -> unit, from every version the logger stored."""
    units: dict[str, dict[str, str]] = {}
    for name, text in conn.execute("SELECT name, units FROM types WHERE units IS NOT NULL "
                                   "ORDER BY id"):
        try:
            known = json.loads(text)
        except ValueError:
            continue
        if isinstance(known, dict):
            units.setdefault(name, {}).update(
                {str(k): v for k, v in known.items() if isinstance(v, str)})
    return units


def _headers(conn: sqlite3.Connection, columns: list[_Column],
             column_units: dict[_Column, str | None]) -> list[str]:
    nodes = _node_labels(conn)
    sensors = _sensor_names(conn)

    def label(column: _Column, qualified: bool) -> str:
        node, sensor, type_name, field = column
        where = sensors.get((node, sensor), sensor) if sensor else type_name
        what = f"{type_name}.{field}" if qualified else field
        unit = column_units.get(column)
        return f"{nodes.get(node, node[:8])}/{where}/{what}" + (f" ({unit})" if unit else "")

    plain = [label(c, False) for c in columns]
    clashes = {text for text, n in Counter(plain).items() if n > 1}
    return [label(c, True) if text in clashes else text for c, text in zip(columns, plain,
                                                                          strict=True)]


def _node_labels(conn: sqlite3.Connection) -> dict[str, str]:
    """Node id -> its name, with the short id too where two nodes share a name."""
    named = dict(conn.execute("SELECT node, name FROM nodes WHERE name IS NOT NULL AND name != ''"))
    uses = Counter(named.values())
    return {node: f"{name} ({node[:8]})" if uses[name] > 1 else name
            for node, name in named.items()}


def _sensor_names(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """(node id, sensor id) -> the latest name a SensorInfo in the log gave it."""
    names: dict[tuple[str, str], str] = {}
    for r in select_readings(conn, patterns=(SENSOR_INFO,)):
        fields = datajson.loads(r.data)
        sensor, name = fields.get("sensor"), fields.get("name")
        if isinstance(sensor, str) and isinstance(name, str):
            if name:
                names[(r.node, sensor)] = name
            else:
                names.pop((r.node, sensor), None)
    return names


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and (
        not isinstance(value, float) or math.isfinite(value))
