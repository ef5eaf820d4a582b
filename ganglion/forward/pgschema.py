"""The central PostgreSQL schema: tables, its version, TimescaleDB, typed views.

Theory of operation: the first forwarder to connect creates the schema, under a
transaction-scoped advisory lock so that many Pis connecting at once create it
once. ``ganglion_schema`` holds the version (:data:`SCHEMA_VERSION`); a database
made by a newer ganglion is refused with one clear error rather than written
in a layout this code does not know.

``readings`` has the columns of the SQLite log's ``readings`` view under the
same names (``data`` as JSONB) plus ``time`` (the sender's time, ``sent_ns``
to the microsecond, what Grafana plots), ``boot`` and the flags. Its natural
identity is (type, time, node, boot, seq): a reading is sent once per
(sender, boot, type) sequence number, and ``time`` (the same reading always
has the same sent time) is in the key because TimescaleDB requires the
partitioning column in every unique index. It is the primary key, and the only
index: every index costs every insert (the server's work per row is what
bounds forwarding), and in this order it also serves what Grafana asks, a
type's time range (one sensor's is that range with ``node`` checked in the
index). Rows arrive roughly in time order, so inserts land at the right edge
of each type's part of the index. Every insert is ``ON CONFLICT DO NOTHING``
on it, which is what makes re-sending a batch harmless.

u64 values (``seq``, ``sent_ns``, ``boot``) are stored as in the SQLite log:
as signed two's complement, unchanged below 2**63 (docs/logging.md).

Where the ``timescaledb`` extension is available, ``readings`` becomes a
hypertable with one-day chunks (:data:`CHUNK_INTERVAL`); otherwise it is a
plain table; the same primary key either way.

Versions: 1 had a unique index (node, type, time, boot, seq) and a second index
(type, time); 2 has the primary key alone, which costs the server less than
half as much per row. :func:`ensure_schema` upgrades a version 1 database in
place (:func:`_upgrade_1_to_2`).

One view per type gives its fields as typed columns (``sensors.Temperature``
-> ``sensors_temperature(time, node, sensor, celsius)``), from the union of the
fields of every version of the type that any forwarder sent; it is rebuilt when
a new version arrives. Casts check the JSON type first, so a view never fails
on a row of an odd version (that column is NULL there).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

__all__ = ["CHUNK_INTERVAL", "SCHEMA_VERSION", "ensure_schema", "view_name", "view_sql"]

_log = logging.getLogger(__name__)

#: The central schema version this code writes. 2: the identity is the primary key
#: (the only index); 3: ``readings.repaired`` (a reading lost on the network and got
#: back by repair or history; the log's flag 16).
SCHEMA_VERSION = 3

#: TimescaleDB chunk interval: a day of a network's readings (some GB at 100/s with
#: indexes) keeps the chunk being written in a small server's memory, and retention by
#: ``drop_chunks`` works in whole days.
CHUNK_INTERVAL = "1 day"

#: The advisory lock key (``GNLG``) that serialises schema creation and view rebuilds.
LOCK_KEY = 0x474E4C47

#: Names the typed views must not take.
_RESERVED = {"readings", "types", "nodes", "gaps", "ganglion_schema"}

_TABLES = [
    """CREATE TABLE ganglion_schema (
        version    integer NOT NULL,
        hypertable boolean NOT NULL,
        created    timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE readings (
        time         timestamptz NOT NULL,
        type         text NOT NULL,
        node         text NOT NULL,
        seq          bigint NOT NULL,
        sent_ns      bigint NOT NULL,
        received_ns  bigint NOT NULL,
        data         jsonb NOT NULL,
        boot         bigint NOT NULL,
        fingerprint  text,
        last_value   boolean NOT NULL,
        replayed     boolean NOT NULL,
        clock_synced boolean NOT NULL,
        local        boolean NOT NULL,
        forwarded    timestamptz NOT NULL DEFAULT now(),
        repaired     boolean NOT NULL DEFAULT false,
        PRIMARY KEY (type, time, node, boot, seq))""",
    """CREATE TABLE types (
        name        text NOT NULL,
        fingerprint text NOT NULL,
        fields      jsonb NOT NULL,
        units       jsonb,
        meta        jsonb NOT NULL,
        first_ns    bigint,
        updated     timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, fingerprint, fields))""",
    """CREATE TABLE nodes (
        node     text PRIMARY KEY,
        name     text,
        first_ns bigint,
        last_ns  bigint)""",
    """CREATE TABLE gaps (
        type          text NOT NULL,
        node          text NOT NULL,
        boot          bigint NOT NULL,
        first_missing bigint NOT NULL,
        last_missing  bigint NOT NULL,
        missing       numeric NOT NULL,
        detected_ns   bigint NOT NULL,
        PRIMARY KEY (type, node, boot, first_missing, last_missing))""",
]
#: Version 1's indexes, replaced by the primary key in version 2.
_V1_INDEXES = ("readings_identity", "readings_type_time")


class NewerSchemaError(Exception):
    """The database was set up by a newer ganglion."""


def ensure_schema(conn: Any) -> bool:
    """Create the schema if missing, check its version; return whether it is a hypertable.

    Args:
        conn: a psycopg connection (not in autocommit mode, no transaction open).

    Raises:
        NewerSchemaError: the database has a newer schema version.
        psycopg.errors.DuplicateTable: a table of ours exists without ganglion_schema
            (an unrelated ``readings`` table): the caller reports it.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        exists = conn.execute("SELECT to_regclass('ganglion_schema') IS NOT NULL").fetchone()[0]
        if exists:
            row = conn.execute("SELECT max(version), bool_or(hypertable) FROM ganglion_schema"
                               ).fetchone()
            if row[0] is not None and row[0] > SCHEMA_VERSION:
                raise NewerSchemaError(
                    f"the database has ganglion schema version {row[0]}; this ganglion writes "
                    f"version {SCHEMA_VERSION}: upgrade ganglion on this host")
            if row[0] == 1:
                _upgrade_1_to_2(conn)
            if row[0] is not None and row[0] < 3:
                _upgrade_2_to_3(conn)
            return bool(row[1])
        for statement in _TABLES:
            conn.execute(statement)
        hypertable = _make_hypertable(conn)
        conn.execute("INSERT INTO ganglion_schema (version, hypertable) VALUES (%s, %s)",
                     (SCHEMA_VERSION, hypertable))
        _log.info("created the ganglion schema (version %d) in the database, readings %s",
                  SCHEMA_VERSION, "a TimescaleDB hypertable" if hypertable else "a plain table")
        return hypertable


def _upgrade_1_to_2(conn: Any) -> None:
    """Version 1 -> 2: the identity becomes the primary key, in (type, time, node, boot,
    seq) order, and the two indexes of version 1 go (in the caller's transaction, under
    the advisory lock: the first forwarder of version 2 to connect does it, once). The
    key is built from the rows there, which takes a while on a big table; the rows and
    their identities are unchanged."""
    conn.execute("ALTER TABLE readings ADD PRIMARY KEY (type, time, node, boot, seq)")
    for index in _V1_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    conn.execute("UPDATE ganglion_schema SET version = 2")
    _log.info("upgraded the ganglion schema in the database from version 1 to 2")


def _upgrade_2_to_3(conn: Any) -> None:
    """Version 2 -> 3: ``readings.repaired``. Every reading forwarded before was not
    repaired (the default); an older forwarder still writing leaves it at its default."""
    conn.execute("ALTER TABLE readings ADD COLUMN IF NOT EXISTS repaired boolean "
                 "NOT NULL DEFAULT false")
    conn.execute("UPDATE ganglion_schema SET version = 3")
    _log.info("upgraded the ganglion schema in the database from version 2 to 3")


def _make_hypertable(conn: Any) -> bool:
    """Turn ``readings`` into a hypertable where TimescaleDB can be had (else keep it plain)."""
    available = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
                             ).fetchone()
    if available is None:
        return False
    try:
        with conn.transaction():  # a savepoint: a failure here leaves the plain table
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            # No default (time) index: the primary key serves the queries, and every
            # index costs every insert.
            conn.execute("SELECT create_hypertable('readings', 'time', "
                         f"chunk_time_interval => INTERVAL '{CHUNK_INTERVAL}', "
                         "create_default_indexes => false)")
    except Exception as exc:
        _log.warning("TimescaleDB is installed but cannot be used (%s); readings is a plain "
                     "table", str(exc).splitlines()[0])
        return False
    return True


def view_name(type_name: str) -> str:
    """The typed view of a type: ``sensors.Temperature`` -> ``sensors_temperature``."""
    name = re.sub(r"[^a-z0-9_]+", "_", type_name.lower()).strip("_") or "type"
    if name[0].isdigit() or name in _RESERVED:
        name = f"type_{name}"
    return name[:63]


def _kind(kind: str) -> str:
    """A field kind (``float``, ``int | None``, ``list[float]``) -> its SQL family."""
    base = kind.replace(" ", "").removeprefix("Optional[").removesuffix("]")
    base = base.removesuffix("|None").removeprefix("None|")
    if base in ("float", "f32", "f64"):
        return "float"
    if base in ("int", "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64"):
        return "int"
    if base in ("bool", "str"):
        return base
    return "json"


def _column(field: str, family: str) -> str:
    """SQL for one typed column; NULL where the row's JSON value has another type."""
    literal = "'" + field.replace("'", "''") + "'"
    value, text = f"data->{literal}", f"data->>{literal}"
    if family == "float":  # NaN and the infinities are stored as {"$float": "NaN"}
        return (f"CASE jsonb_typeof({value}) WHEN 'number' THEN ({text})::double precision "
                f"WHEN 'object' THEN ({value}->>'$float')::double precision END")
    if family == "int":
        return f"CASE jsonb_typeof({value}) WHEN 'number' THEN ({text})::numeric END"
    if family == "bool":
        return f"CASE jsonb_typeof({value}) WHEN 'boolean' THEN ({text})::boolean END"
    if family == "str":
        return f"CASE jsonb_typeof({value}) WHEN 'string' THEN {text} END"
    return value


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def view_sql(type_name: str, versions: list[list[dict[str, str]]]) -> str:
    """The ``CREATE VIEW`` of a type from the fields of its versions (oldest first).

    A field whose kinds differ between versions is a ``jsonb`` column; a field named
    ``time`` or ``node`` is ``data_time``/``data_node``.
    """
    families: dict[str, str] = {}
    for fields in versions:
        for spec in fields:
            name, family = str(spec.get("name")), _kind(str(spec.get("kind", "")))
            if families.setdefault(name, family) != family:
                families[name] = "json"
    columns = ["time", "node"]
    for field, family in families.items():
        alias = f"data_{field}" if field in ("time", "node") else field
        columns.append(f"{_column(field, family)} AS {_ident(alias[:63])}")
    literal = "'" + type_name.replace("'", "''") + "'"
    return (f"CREATE VIEW {_ident(view_name(type_name))} AS SELECT {', '.join(columns)} "
            f"FROM readings WHERE type = {literal}")


def rebuild_views(conn: Any, names: set[str]) -> None:
    """(Re)create the typed view of each type name, from every version the server has.

    Runs in the caller's transaction, under the advisory lock. A name whose view name
    is taken by something that is not a view is skipped, with a warning.
    """
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    for type_name in sorted(names):
        versions = [fields if isinstance(fields, list) else json.loads(fields)
                    for (fields,) in conn.execute(
                        "SELECT fields FROM types WHERE name = %s ORDER BY first_ns, fingerprint",
                        (type_name,)).fetchall()]
        view = view_name(type_name)
        kind = conn.execute("SELECT c.relkind FROM pg_class c JOIN pg_namespace n "
                            "ON n.oid = c.relnamespace WHERE c.relname = %s "
                            "AND n.nspname = current_schema()", (view,)).fetchone()
        if kind is not None and kind[0] != "v":
            _log.warning("no typed view for %s: %s is taken by a table", type_name, view)
            continue
        conn.execute(f"DROP VIEW IF EXISTS {_ident(view)}")
        conn.execute(view_sql(type_name, versions))
