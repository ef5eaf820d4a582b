"""``ganglion info``: what a log holds, per type and node (and key, for keyed types).

Theory of operation: one grouped query over ``samples`` gives, per (type name,
node), the count, the first and last receive times and the newest row's id;
the newest row's ``data`` is the last value. Gaps come from ``gap_spans``,
summed here in Python rather than SQL: their bounds are u64 stored as signed
integers (:mod:`ganglion.logger.u64`), and a forged jump can make a gap of
nearly 2**64 numbers, which SQLite's ``sum()`` would refuse as an overflow.
Type versions (a fingerprint change) are counted per name. Rate is readings per
second over the stream's span: (count - 1) / span.

Keyed types (a type whose class declares key fields, ``@message(..., key="sensor")``:
every ``sensors.*`` reading type) are summarised per (type, node, key): a node with
three probes gives three rows, each with its own count, span, rate and last value.
The key is read from the stored fields (``json_extract``); which fields are a type's
key comes from the types registered in this program (``key_fields``). Sequence
numbers, and so gaps, are per (sender, type): a keyed stream's gaps are shown on
the row of its first key only, so that summing the rows counts them once. The sessions' ``rejected``,
``refused`` and ``evicted`` counters tell whether the logger met bad input or
hit its bounds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ganglion.logger import datajson, outbox
from ganglion.logger.retention import format_size, used_bytes
from ganglion.logger.u64 import from_sql

__all__ = ["LogSummary", "StreamSummary", "format_summary", "summarize", "summary_json"]


@dataclasses.dataclass(frozen=True, slots=True)
class StreamSummary:
    """One (type, node) stream in a log.

    Attributes:
        type: the type name.
        node: the sender's node id (16 hex digits).
        node_name: its name, when the logger heard it.
        count: readings logged.
        first_ns: when the first one was received.
        last_ns: when the last one was received.
        rate: readings per second over the span (0 for a single reading).
        gaps: runs of missing sequence numbers seen (permanent: repair gave up).
        missing: sequence numbers permanently lost in all (``LOST`` in the table).
        last_value: the newest reading's fields.
        key: for a keyed type, the key fields' values of this row (``{"sensor":
            "w1:28-..."}``); empty for a type without a key.
        repaired: readings lost on the network and got back (repair or history),
            counted in ``count`` too.
    """

    type: str
    node: str
    node_name: str | None
    count: int
    first_ns: int
    last_ns: int
    rate: float
    gaps: int
    missing: int
    last_value: dict[str, Any]
    key: dict[str, Any] = dataclasses.field(default_factory=dict)
    repaired: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class LogSummary:
    """A whole log.

    Attributes:
        path: the file.
        file_bytes: its size on disk (with the WAL).
        used_bytes: bytes in used pages.
        readings: readings in all.
        versions: type name -> number of versions (fingerprints) logged.
        sessions: logger runs recorded.
        dropped: readings the logger could not write (all sessions).
        streams: per (type, node), or (type, node, key) for a keyed type; sorted.
        rejected: readings the logger could not store (bad values; all sessions).
        refused: readings over the logger's budgets (too many new senders or
            type versions; all sessions).
        evicted: entries the logger evicted from its bounded caches (all sessions).
        forwarding: one entry per forwarding target (docs/forwarding.md): ``target``,
            ``forwarded``, ``waiting`` (readings after its position), ``rejected``,
            ``dropped`` (removed by the size limit before it got them).
    """

    path: Path
    file_bytes: int
    used_bytes: int
    readings: int
    versions: dict[str, int]
    sessions: int
    dropped: int
    streams: list[StreamSummary]
    rejected: int = 0
    refused: int = 0
    evicted: int = 0
    forwarding: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def summarize(conn: sqlite3.Connection, path: Path, *,
              key_fields: Callable[[str], tuple[str, ...]] | None = None) -> LogSummary:
    """Summarise an open log.

    Args:
        conn: the log (read-only is enough).
        path: its file, for the sizes.
        key_fields: a type name's key fields (empty for none); by default the
            types registered in this program (:attr:`MessageType.key_fields
            <ganglion.types.MessageType.key_fields>`).

    Returns:
        The :class:`LogSummary`.
    """
    if key_fields is None:
        key_fields = _registered_key_fields
    gaps: dict[tuple[str, int], tuple[int, int]] = {}
    for t, n, first, last in conn.execute(
            "SELECT type, node_id, first_missing, last_missing FROM gap_spans"):
        count, missing = gaps.get((t, n), (0, 0))
        gaps[(t, n)] = (count + 1, missing + from_sql(last) - from_sql(first) + 1)
    nodes = {nid: (node, name) for nid, node, name in conn.execute("SELECT id, node, name FROM nodes")}
    streams = []
    gaps_shown: set[tuple[str, int]] = set()
    for (name, keys, node_id, key_values, count, first, last, newest,
         repaired) in _stream_rows(conn, key_fields):
        data = conn.execute("SELECT data FROM samples WHERE id = ?", (newest,)).fetchone()[0]
        span = (last - first) / 1e9
        n_gaps, missing = (0, 0) if (name, node_id) in gaps_shown else gaps.get((name, node_id),
                                                                                  (0, 0))
        gaps_shown.add((name, node_id))
        node, node_name = nodes.get(node_id, ("?", None))
        streams.append(StreamSummary(name, node, node_name, count, first, last,
                                     (count - 1) / span if span > 0 else 0.0, n_gaps, missing or 0,
                                     datajson.loads(data), dict(zip(keys, key_values,
                                                                    strict=True)),
                                     int(repaired or 0)))
    for (name, node_id), (n_gaps, missing) in gaps.items():
        if not any(s.type == name and s.node == nodes.get(node_id, ("?",))[0] for s in streams):
            node, node_name = nodes.get(node_id, ("?", None))
            streams.append(StreamSummary(name, node, node_name, 0, 0, 0, 0.0, n_gaps, missing,
                                         {}))
    streams.sort(key=lambda s: (s.type, s.node, _sort_key(s.key)))
    versions = dict(conn.execute("SELECT name, count(*) FROM types GROUP BY name").fetchall())
    sessions, dropped, rejected, refused, evicted = conn.execute(
        "SELECT count(*), coalesce(sum(dropped), 0), coalesce(sum(rejected), 0), "
        "coalesce(sum(refused), 0), coalesce(sum(evicted), 0) FROM sessions").fetchone()
    file_bytes = sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
                     if p.exists())
    return LogSummary(path, file_bytes, used_bytes(conn), sum(s.count for s in streams), versions,
                      sessions, dropped, streams, rejected, refused, evicted, _forwarding(conn))


def _forwarding(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each forwarding target's counters and how many readings still wait for it."""
    if not outbox.has_table(conn):
        return []
    return [{"target": target, "forwarded": forwarded,
             "waiting": conn.execute("SELECT count(*) FROM samples WHERE id > ?",
                                     (last_id,)).fetchone()[0],
             "rejected": rejected, "dropped": dropped}
            for target, last_id, forwarded, rejected, dropped in conn.execute(
                "SELECT target, last_id, forwarded, rejected, dropped FROM forward_positions "
                "ORDER BY target").fetchall()]


def _registered_key_fields(type_name: str) -> tuple[str, ...]:
    from ganglion.types import lookup

    mtype = lookup(type_name)
    return () if mtype is None else mtype.key_fields


_Row = tuple[str, tuple[str, ...], int, tuple[Any, ...], int, int, int, int, int]


def _stream_rows(conn: sqlite3.Connection, key_fields: Callable[[str], tuple[str, ...]]
                 ) -> list[_Row]:
    """(type, key fields, node id, key values, count, first_ns, last_ns, newest row id,
    repaired) per stream.

    Unkeyed types in one grouped query, as before keys existed; each keyed type in
    one query grouped by node and the key fields' values too.
    """
    rows: list[_Row] = []
    keyed: dict[str, tuple[str, ...]] = {}
    for (name,) in conn.execute("SELECT DISTINCT name FROM types"):
        fields = key_fields(name)
        if fields:
            keyed[name] = fields
    for name, node_id, count, first, last, newest, repaired in conn.execute(
            "SELECT t.name, s.node_id, count(*), min(s.received_ns), max(s.received_ns), "
            f"max(s.id), {_REPAIRED} FROM samples s JOIN types t ON t.id = s.type_id "
            "GROUP BY t.name, s.node_id"):
        if name not in keyed:
            rows.append((name, (), node_id, (), count, first, last, newest, repaired))
    for name, fields in keyed.items():
        # json_extract paths take the field names as bound parameters: no quoting here
        keys = ", ".join("json_extract(s.data, ?)" for _ in fields)
        paths = [f'$."{field}"' for field in fields]
        for row in conn.execute(
                f"SELECT s.node_id, {keys}, count(*), min(s.received_ns), max(s.received_ns), "
                f"max(s.id), {_REPAIRED} FROM samples s JOIN types t ON t.id = s.type_id "
                f"WHERE t.name = ? GROUP BY s.node_id, {keys}", (*paths, name, *paths)):
            node_id, values, (count, first, last, newest, repaired) = row[0], row[1:-5], row[-5:]
            rows.append((name, fields, node_id, tuple(values), count, first, last, newest,
                         repaired))
    return rows


#: Readings flagged repaired (bit 16, :class:`~ganglion.logger.schema.Flags`) in a group.
_REPAIRED = "sum((s.flags & 16) != 0)"


def _sort_key(key: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(v) for v in key.values())


def format_summary(summary: LogSummary) -> str:
    """The summary as a plain-text table for a terminal."""
    lines = [f"{summary.path}: {summary.readings} readings, {len(summary.streams)} streams, "
             f"{format_size(summary.file_bytes)} on disk, {summary.sessions} logger session(s)"
             + (f", {summary.dropped} readings dropped by the logger" if summary.dropped else "")
             + (f", {summary.rejected} rejected (bad values)" if summary.rejected else "")
             + (f", {summary.refused} refused (over budget)" if summary.refused else "")
             + (f", {summary.evicted} cache evictions" if summary.evicted else "")]
    for f in summary.forwarding:
        lines.append(f"forwarded to {f['target']}: {f['forwarded']} readings, {f['waiting']} "
                     "waiting" + (f", {f['rejected']} refused by the database"
                                  if f["rejected"] else "")
                     + (f", {f['dropped']} removed unforwarded by the size limit"
                        if f["dropped"] else ""))
    keyed = any(s.key for s in summary.streams)  # a KEY column only when a row has a key
    header = ("TYPE", "NODE", *(("KEY",) if keyed else ()), "COUNT", "FIRST", "LAST", "RATE/S",
              "REPAIRED", "GAPS", "LOST", "LAST VALUE")
    table: list[tuple[str, ...]] = [header]
    for s in summary.streams:
        node = s.node if not s.node_name else f"{s.node[:8]} ({s.node_name})"
        versions = summary.versions.get(s.type, 1)
        key = (" ".join(str(v) for v in s.key.values()) or "-",) if keyed else ()
        table.append((s.type + (f" [{versions} versions]" if versions > 1 else ""), node, *key,
                      str(s.count), _time(s.first_ns), _time(s.last_ns), f"{s.rate:.3g}",
                      str(s.repaired), str(s.gaps), str(s.missing), _short(s.last_value)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    for row in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  "
                     + row[-1])
    return "\n".join(lines)


def summary_json(summary: LogSummary) -> str:
    """The summary as JSON text (for scripts)."""
    obj = dataclasses.asdict(summary)
    obj["path"] = str(summary.path)
    for stream in obj["streams"]:
        stream["last_value"] = datajson.plain(stream["last_value"])
    return json.dumps(obj, ensure_ascii=False)


def _time(ns: int) -> str:
    if not ns:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def _short(fields: dict[str, Any], limit: int = 60) -> str:
    text = " ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in fields.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."
