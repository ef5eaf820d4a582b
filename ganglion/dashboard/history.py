"""History from the SQLite log, downsampled in SQL to min/max/mean per time bucket.

Theory of operation: a history request names a type, one numeric field, a time
range (by ``received_ns``, the logging node's clock) and at most ``points``
buckets. Bucket ``b`` of a reading received at ``t`` is ``(t - since) // width``;
per (node, sensor, bucket) SQLite returns min, max, sum and count of the field
(``json_extract``, numbers only), so a week of readings leaves the database as a
few thousand rows.

Reading 12 M JSON rows takes SQLite tens of seconds, so long ranges come from a
*rollup*: per (type version, node, sensor, field, minute) the min, max, sum and
count, and the same per 10 minutes (:data:`LEVELS`), kept in a cache database of
the dashboard's own (:class:`Rollup`; the log
itself is only read, so a log on read-only media works too). It is filled in
chunks by ``samples.id`` (new rows only), from a worker thread, in SQL
(``json_each``). A request whose buckets are whole slots of a level (buckets of a
minute or more, and every bucket of a range of 3 h or more; ``since`` and
``until`` are then aligned to the slot) reads that level for the rows it covers
and the log for the rows newer than it, and merges the two: since buckets are
whole slots, a slot's aggregate falls in exactly the bucket its readings do, so
the answer equals the one computed from the raw rows. Rows the log's retention
deleted drop out of the rollup at its next refresh (minutes older than the
oldest reading left).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganglion.errors import LogDatabaseError
from ganglion.logger.schema import open_log, read_only_uri

__all__ = ["MINUTE_NS", "HistoryQuery", "Rollup", "Series", "logged_types", "query_history",
           "type_units"]

_log = logging.getLogger(__name__)

MINUTE_NS = 60_000_000_000
#: Ranges at least this long are answered in whole minutes (from the rollup) even when
#: more, shorter buckets were asked for: reading their raw rows would take seconds.
ROLLUP_SPAN_NS = 3 * 3600 * 10**9
#: Rollup levels: slot length in minutes -> table. A bucket of at least a level's
#: slot reads that level (the coarsest that fits): a week in 10-minute slots is
#: 20,160 rows for 20 sensors instead of 201,600.
LEVELS: dict[int, str] = {1: "rollup", 10: "rollup10"}
#: samples rows aggregated per rollup transaction.
ROLLUP_CHUNK = 200_000
_CACHE_VERSION = 2

_SENSOR = "coalesce(CAST(json_extract(s.data, '$.sensor') AS TEXT), '')"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """One validated history request (see :mod:`ganglion.dashboard.params`).

    Attributes:
        type: the dotted type name.
        field: the numeric field.
        since_ns: start of the range, inclusive (ns since the epoch).
        until_ns: end of the range, exclusive.
        points: buckets at most.
    """

    type: str
    field: str
    since_ns: int
    until_ns: int
    points: int

    def buckets(self) -> tuple[int, int, int, int]:
        """``(since, until, width, level)``: the range and bucket width in ns, and the
        rollup level (slot length in minutes, a key of :data:`LEVELS`) that answers it,
        0 for none.

        Buckets of a minute or more, and every bucket of a range of
        :data:`ROLLUP_SPAN_NS` or more, are whole slots of the coarsest level that
        fits, and the range is widened to whole slots (so the rollup answers exactly);
        shorter buckets of shorter ranges divide the range as asked.
        """
        span = self.until_ns - self.since_ns
        width = max(1, -(-span // self.points))
        if width < MINUTE_NS and span < ROLLUP_SPAN_NS:
            return self.since_ns, self.until_ns, width, 0
        level = max(m for m in LEVELS if m == 1 or width >= m * MINUTE_NS)
        slot = level * MINUTE_NS
        since = self.since_ns - self.since_ns % slot
        until = -(-self.until_ns // slot) * slot
        width = -(-(until - since) // self.points)
        width = -(-width // slot) * slot
        return since, until, width, level


@dataclass(slots=True)
class Series:
    """The buckets of one (node, sensor), in time order.

    Attributes:
        node: the sender's node id (16 hex digits).
        node_name: its name as the log knows it, or None.
        sensor: the sensor (see :func:`ganglion.dashboard.live.sensor_of`).
        t_ms: each bucket's start, ms since the epoch.
        min, max, mean: the field's statistics per bucket.
        count: readings per bucket.
    """

    node: str
    node_name: str | None
    sensor: str
    t_ms: list[int] = field(default_factory=list)
    min: list[float] = field(default_factory=list)
    max: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The series as ``/api/history`` sends it."""
        return {"node": self.node, "node_name": self.node_name, "sensor": self.sensor,
                "t": self.t_ms, "min": self.min, "max": self.max, "mean": self.mean,
                "count": self.count}


Agg = dict[tuple[int, str, int], list[float]]  # (node_id, sensor, bucket) -> [min, max, sum, n]


def _merge(into: Agg, rows: list[Any]) -> None:
    for node_id, sensor, bucket, lo, hi, total, n in rows:
        key = (node_id, sensor, bucket)
        have = into.get(key)
        if have is None:
            into[key] = [lo, hi, total, n]
        else:
            have[0] = min(have[0], lo)
            have[1] = max(have[1], hi)
            have[2] += total
            have[3] += n


def _path(field_name: str) -> str:
    return '$."' + field_name + '"'


def _ids(type_ids: list[int]) -> str:
    return ",".join(str(int(i)) for i in type_ids)  # ids from the log itself: integers


def _raw(conn: sqlite3.Connection, schema: str, type_ids: list[int], q: HistoryQuery,
         since: int, until: int, width: int, after_id: int) -> list[Any]:
    # json_type, not typeof: JSON true/false come out of json_extract as 1/0.
    # The rows newer than the rollup are few and last by id: walk the rowid from there,
    # not the (type, time) index over the whole range.
    hint = "NOT INDEXED" if after_id else ""
    sql = (f"SELECT node_id, sensor, (received_ns - :since) / :width AS b, min(v), max(v), "
           f"sum(v), count(v) "
           f"FROM (SELECT s.node_id AS node_id, {_SENSOR} AS sensor, s.received_ns AS received_ns, "
           f"json_type(s.data, :path) AS kind, json_extract(s.data, :path) AS v "
           f"FROM {schema}.samples s {hint} WHERE s.type_id IN ({_ids(type_ids)}) "
           f"AND s.received_ns >= :since AND s.received_ns < :until AND s.id > :after) "
           f"WHERE kind IN ('integer', 'real') GROUP BY node_id, sensor, b")
    return conn.execute(sql, {"since": since, "width": width, "path": _path(q.field),
                              "until": until, "after": after_id}).fetchall()


def _rolled(conn: sqlite3.Connection, type_ids: list[int], q: HistoryQuery, since: int,
            until: int, width: int, level: int) -> list[Any]:
    slot = level * MINUTE_NS
    sql = (f"SELECT node_id, sensor, (minute * {slot} - :since) / :width AS b, min(vmin), "
           f"max(vmax), sum(vsum), sum(n) FROM {LEVELS[level]} "
           f"WHERE type_id IN ({_ids(type_ids)}) "
           f"AND field = :field AND minute >= :first AND minute < :last "
           f"GROUP BY node_id, sensor, b")
    return conn.execute(sql, {"since": since, "width": width, "field": q.field,
                              "first": since // slot, "last": until // slot}).fetchall()


def query_history(conn: sqlite3.Connection, q: HistoryQuery, *, schema: str = "main",
                  rolled_up_to: int | None = None) -> list[Series]:
    """Downsample one field of one type over a time range.

    Args:
        conn: a connection where the log is attached as ``schema`` (and, with
            ``rolled_up_to``, the rollup cache is ``main``).
        q: the request.
        schema: the log's schema name on ``conn``.
        rolled_up_to: the highest ``samples.id`` the rollup holds; None to read
            only the log.

    Returns:
        One :class:`Series` per (node, sensor) with readings in range, sorted.

    Raises:
        KeyError: the log has no such type.
    """
    type_ids = [r[0] for r in conn.execute(f"SELECT id FROM {schema}.types WHERE name = ?",
                                           (q.type,))]
    if not type_ids:
        raise KeyError(q.type)
    since, until, width, level = q.buckets()
    agg: Agg = {}
    if level and rolled_up_to is not None:
        _merge(agg, _rolled(conn, type_ids, q, since, until, width, level))
        _merge(agg, _raw(conn, schema, type_ids, q, since, until, width, rolled_up_to))
    else:
        _merge(agg, _raw(conn, schema, type_ids, q, since, until, width, 0))
    nodes = {r[0]: (r[1], r[2]) for r in conn.execute(f"SELECT id, node, name FROM {schema}.nodes")}
    by_series: dict[tuple[str, str], Series] = {}
    for (node_id, sensor, bucket), (lo, hi, total, n) in sorted(agg.items()):
        node, name = nodes.get(node_id, (f"{node_id:016x}", None))
        series = by_series.get((node, sensor))
        if series is None:
            series = by_series[(node, sensor)] = Series(node, name, sensor)
        series.t_ms.append((since + bucket * width) // 1_000_000)
        series.min.append(lo)
        series.max.append(hi)
        series.mean.append(total / n)
        series.count.append(int(n))
    return [by_series[k] for k in sorted(by_series)]


def type_units(conn: sqlite3.Connection, type_name: str, *, schema: str = "main") -> dict[str, str]:
    """The units the log recorded for a type's fields (its newest version's), if any."""
    row = conn.execute(f"SELECT units FROM {schema}.types WHERE name = ? ORDER BY id DESC LIMIT 1",
                       (type_name,)).fetchone()
    if row is None or not row[0]:
        return {}
    units = json.loads(row[0])
    return {str(k): str(v) for k, v in units.items()} if isinstance(units, dict) else {}


_NUMERIC_KIND = re.compile(r"^(int|float|[iuf][0-9]+)\??$")


def logged_types(conn: sqlite3.Connection, *, schema: str = "main") -> dict[str, dict[str, str | None]]:
    """The numeric fields of every type in the log, with their recorded units (or None).

    Fields of every version of a type count; units come from the newest version that
    has one.
    """
    out: dict[str, dict[str, str | None]] = {}
    for name, fields, units in conn.execute(
            f"SELECT name, fields, units FROM {schema}.types ORDER BY id"):
        known = out.setdefault(name, {})
        try:
            specs = json.loads(fields)
            unit_map = json.loads(units) if units else {}
        except ValueError:
            continue  # a row this version cannot read: skip it, not the page
        for spec in specs if isinstance(specs, list) else []:
            if isinstance(spec, dict) and _NUMERIC_KIND.match(str(spec.get("kind", ""))):
                field_name = str(spec.get("name"))
                unit = unit_map.get(field_name) if isinstance(unit_map, dict) else None
                known[field_name] = str(unit) if unit is not None else known.get(field_name)
    return out


_ROLLUP_SCHEMA = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);\n" + "".join(
    f"""CREATE TABLE IF NOT EXISTS {table} (
    type_id INTEGER NOT NULL, field TEXT NOT NULL, minute INTEGER NOT NULL,
    node_id INTEGER NOT NULL, sensor TEXT NOT NULL,
    vmin REAL NOT NULL, vmax REAL NOT NULL, vsum REAL NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (type_id, field, minute, node_id, sensor)
) WITHOUT ROWID;
""" for table in LEVELS.values())  # ``minute``: the slot's number (time // slot length)
_MERGE = ("ON CONFLICT DO UPDATE SET vmin = min(vmin, excluded.vmin), "
          "vmax = max(vmax, excluded.vmax), vsum = vsum + excluded.vsum, n = n + excluded.n")


def default_cache_path(log: Path) -> Path:
    """Where the rollup of ``log`` is kept: the user's cache dir, one file per log path."""
    import platformdirs

    digest = hashlib.sha256(str(log.resolve()).encode()).hexdigest()[:16]
    return Path(platformdirs.user_cache_dir("ganglion", appauthor=False)) / "dashboard" / f"{digest}.db"


class Rollup:
    """Per-minute aggregates of a log, in a cache database (see the module doc).

    Args:
        log: the log database (only read).
        cache: the cache database file (created).

    Raises:
        LogDatabaseError: the log cannot be read (missing, not a ganglion log, too new).
    """

    def __init__(self, log: Path, cache: Path) -> None:
        self.log = Path(log)
        self.cache = Path(cache)
        open_log(self.log, write=False).close()  # a clear error now, not at the first query
        self._lock = threading.Lock()
        self.rolled_up_to = 0
        self.cache.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                for statement in _ROLLUP_SCHEMA.strip().split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                self._check_identity(conn)
                row = conn.execute("SELECT value FROM meta WHERE key = 'rolled_up_to'").fetchone()
                self.rolled_up_to = int(row[0]) if row else 0
            finally:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.cache, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("ATTACH DATABASE ? AS log", (read_only_uri(self.log),))
        return conn

    def connect(self) -> sqlite3.Connection:
        """A connection for queries: the cache as ``main``, the log as ``log``."""
        return self._connect()

    def _identity(self, conn: sqlite3.Connection) -> str:
        row = conn.execute("SELECT min(started_ns) FROM log.sessions").fetchone()
        return f"v{_CACHE_VERSION}:{self.log.resolve()}:{row[0]}"

    def _check_identity(self, conn: sqlite3.Connection) -> None:
        """Start over when the cache was made from another log (or by another version)."""
        ident = self._identity(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'identity'").fetchone()
        newest = conn.execute("SELECT coalesce(max(id), 0) FROM log.samples").fetchone()[0]
        done = conn.execute("SELECT value FROM meta WHERE key = 'rolled_up_to'").fetchone()
        if row is None or row[0] != ident or (done is not None and int(done[0]) > newest):
            conn.execute("BEGIN IMMEDIATE")
            for table in LEVELS.values():
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM meta")
            conn.execute("INSERT INTO meta VALUES ('identity', ?), ('rolled_up_to', '0')", (ident,))
            conn.execute("COMMIT")

    def refresh(self, *, max_rows: int | None = None) -> int:
        """Aggregate the log's rows newer than the rollup (at most ``max_rows``).

        Each chunk of :data:`ROLLUP_CHUNK` rows is its own transaction, so an
        interrupted refresh keeps what it did. Thread-safe (one refresh at a time).

        Returns:
            The rows aggregated.
        """
        done = 0
        with self._lock:
            conn = self._connect()
            try:
                newest = conn.execute("SELECT coalesce(max(id), 0) FROM log.samples").fetchone()[0]
                while self.rolled_up_to < newest and (max_rows is None or done < max_rows):
                    upto = min(newest, self.rolled_up_to + ROLLUP_CHUNK)
                    self._aggregate(conn, self.rolled_up_to, upto)
                    done += upto - self.rolled_up_to
                    self.rolled_up_to = upto
                self._forget_deleted(conn)
            except sqlite3.Error as exc:
                raise LogDatabaseError(f"dashboard rollup of {self.log}: {exc}") from None
            finally:
                conn.close()
        return done

    def _aggregate(self, conn: sqlite3.Connection, after: int, upto: int) -> None:
        """Rows ``after < id <= upto`` into every level: the JSON is read once, into
        per-minute aggregates of the chunk, which then merge into each level."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DROP TABLE IF EXISTS temp.chunk")
            conn.execute(
                f"CREATE TEMP TABLE chunk AS "
                f"SELECT s.type_id AS type_id, j.key AS field, s.received_ns / {MINUTE_NS} AS minute, "
                f"s.node_id AS node_id, {_SENSOR} AS sensor, min(j.value) AS vmin, "
                f"max(j.value) AS vmax, sum(j.value) AS vsum, count(*) AS n "
                f"FROM log.samples s, json_each(s.data) j "
                f"WHERE s.id > ? AND s.id <= ? AND j.type IN ('integer', 'real') "
                f"GROUP BY 1, 2, 3, 4, 5", (after, upto))
            for level, table in LEVELS.items():
                conn.execute(
                    f"INSERT INTO {table} (type_id, field, minute, node_id, sensor, vmin, vmax, "
                    f"vsum, n) SELECT type_id, field, minute / {level}, node_id, sensor, "
                    f"min(vmin), max(vmax), sum(vsum), sum(n) FROM temp.chunk "
                    f"GROUP BY 1, 2, 3, 4, 5 {_MERGE}")
            conn.execute("DROP TABLE temp.chunk")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'rolled_up_to'", (str(upto),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _forget_deleted(self, conn: sqlite3.Connection) -> None:
        """Drop minutes older than the oldest reading the log still holds (retention)."""
        row = conn.execute("SELECT received_ns FROM log.samples ORDER BY id LIMIT 1").fetchone()
        if row is not None:
            for level, table in LEVELS.items():
                conn.execute(f"DELETE FROM {table} WHERE minute < ?",
                             (row[0] // (level * MINUTE_NS),))

