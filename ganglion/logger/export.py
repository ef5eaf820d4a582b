"""Export a log as CSV (one column per field, nested fields flattened) or JSON lines.

Theory of operation: CSV is for spreadsheets, so every field gets its own
column: nested maps are flattened with dots (``position.lat``) and lists with
indices (``samples.0``). Different types (or versions) have different fields,
so the header is the union of every selected reading's columns, in the order
first seen; a reading leaves the columns it lacks empty. That needs the columns
before the first row is written: the selection is read twice (streamed both
times), never held in memory.

Values are written so that they read back exactly: floats with ``repr``
precision (``0.1`` stays ``0.1``, ``1/3`` keeps all 17 digits), booleans as
``true``/``false``, bytes as hex, datetimes in ISO 8601, None as an empty cell.

JSON lines carry the stored ``data`` JSON verbatim (see
:mod:`ganglion.logger.datajson` for its three tagged kinds), with the reading's
metadata around it.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from collections.abc import Iterable
from typing import Any, TextIO

from ganglion.logger import datajson
from ganglion.logger.query import select_readings
from ganglion.logger.schema import Flags

__all__ = ["META_COLUMNS", "export_csv", "export_jsonl", "flatten"]

#: The columns every CSV row starts with.
META_COLUMNS = ("type", "node", "node_name", "boot", "seq", "time", "sent_ns", "received_ns",
                "last_value", "replayed", "repaired")


def flatten(fields: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Flatten a reading's fields into CSV cells: ``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``.

    Args:
        fields: the fields (as :func:`ganglion.logger.datajson.loads` gives them).
        prefix: prepended to every column name.

    Returns:
        Column name -> cell text.
    """
    out: dict[str, str] = {}
    for key, value in fields.items():
        _flatten_into(out, f"{prefix}{key}", value)
    return out


def export_csv(conn: sqlite3.Connection, out: TextIO, *, patterns: Iterable[str] = (),
               since_ns: int | None = None, until_ns: int | None = None) -> int:
    """Write the selected readings as CSV with a header row.

    Args:
        conn: an open log.
        out: a text stream opened with ``newline=""``.
        patterns, since_ns, until_ns: the selection (see
            :func:`ganglion.logger.query.select_readings`).

    Returns:
        The number of readings written.
    """
    pats = tuple(patterns)
    columns: dict[str, None] = {}
    for reading in select_readings(conn, patterns=pats, since_ns=since_ns, until_ns=until_ns):
        for name in flatten(datajson.loads(reading.data)):
            columns.setdefault(name, None)
    field_columns = [c for c in columns if c not in META_COLUMNS]
    # A field named like a metadata column is written under "data.<name>".
    renamed = {c: f"data.{c}" for c in columns if c in META_COLUMNS}
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*META_COLUMNS, *field_columns, *renamed.values()])
    order = {name: i for i, name in enumerate([*field_columns, *renamed])}
    # The id identifies a sender for sure; its name (when the logger heard one) is what
    # a person reads, so both columns are there.
    names = dict(conn.execute("SELECT node, name FROM nodes WHERE name IS NOT NULL"))
    count = 0
    for r in select_readings(conn, patterns=pats, since_ns=since_ns, until_ns=until_ns):
        cells = [""] * len(order)
        for name, text in flatten(datajson.loads(r.data)).items():
            cells[order[name]] = text
        writer.writerow([r.type, r.node, names.get(r.node, ""), r.boot, r.seq, iso_time(r.sent_ns),
                         r.sent_ns, r.received_ns,
                         _bool(r.flags & Flags.LAST_VALUE), _bool(r.flags & Flags.REPLAYED),
                         _bool(r.flags & Flags.REPAIRED), *cells])
        count += 1
    return count


def export_jsonl(conn: sqlite3.Connection, out: TextIO, *, patterns: Iterable[str] = (),
                 since_ns: int | None = None, until_ns: int | None = None) -> int:
    """Write the selected readings as one JSON object per line.

    Each line: ``{"type", "node", "boot", "seq", "sent_ns", "received_ns", "data"}``,
    plus ``"last_value": true`` / ``"replayed": true`` / ``"repaired": true`` /
    ``"clock_synced": false`` when so.

    Returns:
        The number of readings written.
    """
    count = 0
    for r in select_readings(conn, patterns=patterns, since_ns=since_ns, until_ns=until_ns):
        extra = ""
        if r.flags & Flags.LAST_VALUE:
            extra += ',"last_value":true'
        if r.flags & Flags.REPLAYED:
            extra += ',"replayed":true'
        if r.flags & Flags.REPAIRED:
            extra += ',"repaired":true'
        if r.flags & Flags.CLOCK_UNSYNCED:
            extra += ',"clock_synced":false'
        out.write(f'{{"type":{json.dumps(r.type)},"node":"{r.node}","boot":{r.boot},'
                  f'"seq":{r.seq},"sent_ns":{r.sent_ns},"received_ns":{r.received_ns}{extra},'
                  f'"data":{r.data}}}\n')
        count += 1
    return count


def _flatten_into(out: dict[str, str], name: str, value: Any) -> None:
    if isinstance(value, dict):
        if not value:
            out[name] = "{}"
        for key, inner in value.items():
            _flatten_into(out, f"{name}.{key}", inner)
    elif isinstance(value, list):
        if not value:
            out[name] = "[]"
        for i, inner in enumerate(value):
            _flatten_into(out, f"{name}.{i}", inner)
    else:
        out[name] = cell_text(value)


def cell_text(value: Any) -> str:
    """A field value as CSV text: empty for None, true/false, hex bytes, ISO datetimes."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return _bool(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _bool(value: object) -> str:
    return "true" if value else "false"


def iso_time(ns: int) -> str:
    """Nanoseconds since the epoch as ISO 8601 UTC with microseconds and a Z."""
    seconds, rest = divmod(ns, 1_000_000_000)
    when = dt.datetime.fromtimestamp(seconds, dt.UTC).replace(microsecond=rest // 1000)
    return when.isoformat().replace("+00:00", "Z")
