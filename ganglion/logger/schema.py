"""The log database's schema, its version, and opening a database safely.

Theory of operation: a log is one SQLite file in WAL mode. Readings go to the
compact table ``samples`` (integer references to ``types`` and ``nodes``, the
fields as JSON text in ``data``); the view ``readings`` joins them back into
the columns people query (``type``, ``node``, ``seq``, ``sent_ns``,
``received_ns``, ``data``, ...), so the plain ``sqlite3`` tool and
``json_extract`` work on it directly. ``types`` holds one row per *version* of a
type (name + fingerprint + fields): when a type's schema changes, a new row is
added and both versions' readings stay readable. ``gap_spans`` (view ``gaps``)
holds the runs of sequence numbers the logger saw missing; ``streams`` the
highest sequence number logged per (type, sender), so the next run records
what it missed meanwhile as a gap; ``sessions`` one row per logger run.
docs/logging.md documents every column.

u64 values (``seq``, ``sent_ns``, ``boot``, gap bounds) are stored as signed
two's complement (:mod:`ganglion.logger.u64`): unchanged below ``2**63``,
negative above it.

Versioning: ``PRAGMA application_id`` marks the file as a ganglion log and
``PRAGMA user_version`` holds :data:`SCHEMA_VERSION`. :func:`open_log` creates
the schema in an empty file, upgrades an older one with the steps in
:data:`MIGRATIONS` (each in its own transaction, so a crash mid-upgrade leaves
the old version intact), and refuses a newer one or a foreign SQLite file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from ganglion.errors import LogDatabaseError

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Flags",
    "open_log",
]

#: ``PRAGMA application_id`` of a ganglion log ("GNLG").
APPLICATION_ID = 0x474E4C47

#: The schema version this code writes. 2: u64 values >= 2**63 stored as negative
#: numbers (an older ganglion would misread them, so it must refuse the file), the
#: ``streams`` table, and the ``rejected``/``refused``/``evicted`` session counters.
#: 3: ``types.schema``, the type's self-description (units, kinds, descriptions).
#: 4: the ``repaired`` flag (bit 16 of ``samples.flags``) and its column in ``readings``:
#: an older ganglion would show a repaired reading as an ordinary one, which is harmless,
#: but its ``readings`` view would lack the column that queries of a newer log use.
SCHEMA_VERSION = 4


class Flags:
    """Bits of ``samples.flags``."""

    LAST_VALUE = 1  # a publisher's latest reading, fetched when the logger joined
    REPLAYED = 2  # sent by ``ganglion replay``
    CLOCK_UNSYNCED = 4  # the sender's clock was not synchronised
    LOCAL = 8  # published on the logger's own node
    REPAIRED = 16  # lost on the network and got back by repair or a history answer


_STREAMS = """
CREATE TABLE streams (
    type     TEXT NOT NULL,          -- dotted type name
    node_id  INTEGER NOT NULL REFERENCES nodes(id),
    boot     INTEGER NOT NULL,       -- the sender's boot of the newest reading logged
    last_seq INTEGER NOT NULL,       -- the highest seq logged in that boot (u64 as stored)
    last_ns  INTEGER NOT NULL,       -- when the newest reading of the stream was received
    PRIMARY KEY (type, node_id)
) WITHOUT ROWID;
"""

# A gap across 2**63 has bounds of opposite signs as stored: its size is then a REAL
# (SQLite has no integer that large); ganglion info sums the sizes exactly.
_GAPS_VIEW = """
CREATE VIEW gaps AS
SELECT g.type AS type, n.node AS node, g.boot AS boot, g.first_missing AS first_missing,
       g.last_missing AS last_missing,
       CASE WHEN g.last_missing >= g.first_missing THEN g.last_missing - g.first_missing + 1
            ELSE g.last_missing - g.first_missing + 1 + 18446744073709551616.0 END AS missing,
       g.detected_ns AS detected_ns
FROM gap_spans g JOIN nodes n ON n.id = g.node_id;
"""

_READINGS_VIEW = """
CREATE VIEW readings AS
SELECT s.id AS id, t.name AS type, n.node AS node, s.seq AS seq, s.sent_ns AS sent_ns,
       s.received_ns AS received_ns, s.data AS data, s.boot AS boot,
       t.fingerprint AS fingerprint, n.name AS node_name,
       (s.flags & 1) != 0 AS last_value, (s.flags & 2) != 0 AS replayed,
       (s.flags & 4) = 0 AS clock_synced, (s.flags & 8) != 0 AS local,
       (s.flags & 16) != 0 AS repaired
FROM samples s JOIN types t ON t.id = s.type_id JOIN nodes n ON n.id = s.node_id;
"""

_SCHEMA = """
CREATE TABLE nodes (
    id       INTEGER PRIMARY KEY,
    node     TEXT NOT NULL UNIQUE,   -- 16 hex digits of the sender's node id
    name     TEXT,                   -- its human name, when the logger heard it
    first_ns INTEGER,
    last_ns  INTEGER
);
CREATE TABLE types (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,       -- dotted type name
    fingerprint TEXT,                -- 16 hex digits, NULL when unknown
    fields      TEXT NOT NULL,       -- JSON array of {"name", "kind"}
    units       TEXT,                -- JSON object field -> unit, NULL when none known
    source      TEXT NOT NULL,       -- 'class' (a registered class) or 'observed'
    first_ns    INTEGER NOT NULL,
    schema      TEXT                 -- JSON: the type's self-description, NULL when unknown
);
CREATE INDEX types_name ON types(name);
CREATE TABLE samples (
    id          INTEGER PRIMARY KEY,
    type_id     INTEGER NOT NULL REFERENCES types(id),
    node_id     INTEGER NOT NULL REFERENCES nodes(id),
    boot        INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    sent_ns     INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    flags       INTEGER NOT NULL DEFAULT 0,
    data        TEXT NOT NULL
);
CREATE INDEX samples_type_time ON samples(type_id, received_ns);
CREATE TABLE gap_spans (
    id            INTEGER PRIMARY KEY,
    type          TEXT NOT NULL,
    node_id       INTEGER NOT NULL REFERENCES nodes(id),
    boot          INTEGER NOT NULL,
    first_missing INTEGER NOT NULL,
    last_missing  INTEGER NOT NULL,
    detected_ns   INTEGER NOT NULL
);
CREATE TABLE sessions (
    id          INTEGER PRIMARY KEY,
    started_ns  INTEGER NOT NULL,
    ended_ns    INTEGER,
    logger_node TEXT,
    version     TEXT,
    patterns    TEXT,               -- JSON array of --type patterns ([] = every type)
    received    INTEGER NOT NULL DEFAULT 0,
    written     INTEGER NOT NULL DEFAULT 0,
    dropped     INTEGER NOT NULL DEFAULT 0,
    rejected    INTEGER NOT NULL DEFAULT 0,
    refused     INTEGER NOT NULL DEFAULT 0,
    evicted     INTEGER NOT NULL DEFAULT 0
);
""" + _READINGS_VIEW + _STREAMS + _GAPS_VIEW


def _upgrade_1_to_2(conn: sqlite3.Connection) -> None:
    """Version 1 -> 2: session counters, the ``streams`` table (filled from the readings,
    one scan), and the ``gaps`` view that sizes gaps across 2**63. Version 1 stored no
    value >= 2**63 (the writer failed on one), so no stored number changes."""
    for column in ("rejected", "refused", "evicted"):
        conn.execute(f"ALTER TABLE sessions ADD COLUMN {column} INTEGER NOT NULL DEFAULT 0")
    for statement in _statements(_STREAMS):
        conn.execute(statement)
    conn.execute(
        "INSERT INTO streams (type, node_id, boot, last_seq, last_ns) "
        "SELECT t.name, s.node_id, s.boot, max(s.seq), max(s.received_ns) "
        "FROM samples s JOIN types t ON t.id = s.type_id WHERE (s.flags & 1) = 0 "
        "GROUP BY t.name, s.node_id, s.boot "
        "ON CONFLICT (type, node_id) DO UPDATE SET boot = excluded.boot, "
        "last_seq = excluded.last_seq, last_ns = excluded.last_ns "
        "WHERE excluded.last_ns > streams.last_ns")
    conn.execute("DROP VIEW gaps")
    for statement in _statements(_GAPS_VIEW):
        conn.execute(statement)


def _upgrade_2_to_3(conn: sqlite3.Connection) -> None:
    """Version 2 -> 3: ``types.schema`` (NULL for the versions logged before: their
    units stay in ``units``)."""
    conn.execute("ALTER TABLE types ADD COLUMN schema TEXT")


def _upgrade_3_to_4(conn: sqlite3.Connection) -> None:
    """Version 3 -> 4: ``readings.repaired`` (bit 16 of the flags; no stored row has it)."""
    conn.execute("DROP VIEW readings")
    for statement in _statements(_READINGS_VIEW):
        conn.execute(statement)


#: Upgrade steps: ``MIGRATIONS[v]`` turns a version-``v`` database into ``v + 1``.
MIGRATIONS: Mapping[int, Callable[[sqlite3.Connection], None]] = {
    1: _upgrade_1_to_2, 2: _upgrade_2_to_3, 3: _upgrade_3_to_4}


def read_only_uri(path: Path) -> str:
    """The URI that opens a log read-only, also from read-only media (a CD, an ro mount).

    A log is in WAL mode, and even a read-only reader of a WAL database needs the
    ``-shm`` file, which it creates when it is missing: in a directory it cannot
    write, that fails ("unable to open database file"). SQLite reads such a
    database when ``-shm`` and ``-wal`` already exist, or when it is opened
    ``immutable=1`` (https://sqlite.org/wal.html#readonly), which skips locking and
    the WAL. So: ``mode=ro`` where the directory is writable or both files exist;
    ``immutable=1`` where there is no WAL content to miss (a logger that stopped
    cleanly leaves none); otherwise readings would be missed, and that is refused.

    Args:
        path: the log file.

    Returns:
        A ``file:`` URI for :func:`sqlite3.connect` with ``uri=True``.

    Raises:
        LogDatabaseError: the directory cannot be written, the ``-wal`` file holds
            readings and there is no ``-shm`` file to read them with.
    """
    uri = path.resolve().as_uri()
    wal, shm = path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    if os.access(path.resolve().parent, os.W_OK | os.X_OK) or shm.exists():
        return f"{uri}?mode=ro"
    if wal.exists() and wal.stat().st_size > 0:
        raise LogDatabaseError(
            f"cannot read {path}: its directory is read-only and {wal.name} holds readings "
            f"not yet merged into it (the logger did not stop cleanly); copy {path.name} and "
            f"{wal.name} to a writable directory and read the copy")
    return f"{uri}?mode=ro&immutable=1"


def open_log(path: Path | str, *, write: bool = True,
             migrations: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None,
             version: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """Open (and for writing, create or upgrade) a log database.

    Args:
        path: the database file.
        write: True for the logger (creates the file and schema, sets WAL);
            False for the tools (the file must exist; opened read-only).
        migrations: upgrade steps (tests pass their own); :data:`MIGRATIONS` when None.
        version: the schema version to reach (tests pass their own).

    Returns:
        The connection (``check_same_thread=False``: the writer hands it to its thread).

    Raises:
        LogDatabaseError: the file cannot be opened or written, is not a ganglion
            log, or was written by a newer ganglion.
    """
    path = Path(path)
    steps = MIGRATIONS if migrations is None else migrations
    try:
        if write:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        else:
            if not path.is_file():
                raise LogDatabaseError(f"{path}: no such log database")
            conn = sqlite3.connect(read_only_uri(path), uri=True,
                                   check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise LogDatabaseError(f"cannot open {path}: {exc}") from None
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        _check_and_upgrade(conn, path, write=write, steps=steps, version=version)
    except sqlite3.Error as exc:
        conn.close()
        raise LogDatabaseError(f"cannot {'write' if write else 'read'} {path}: {exc}") from None
    except LogDatabaseError:
        conn.close()
        raise
    return conn


def _check_and_upgrade(conn: sqlite3.Connection, path: Path, *, write: bool,
                       steps: Mapping[int, Callable[[sqlite3.Connection], None]],
                       version: int) -> None:
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id != APPLICATION_ID and (tables or app_id):
        raise LogDatabaseError(f"{path} is an SQLite file but not a ganglion log")
    if current > version:
        raise LogDatabaseError(f"{path} has log schema version {current}; this ganglion reads "
                               f"up to {version}: upgrade ganglion")
    if not write:
        if current < version:
            raise LogDatabaseError(f"{path} has log schema version {current}; run `ganglion log` "
                                   f"on it once to upgrade it to {version}")
        return
    # WAL: readers (export, info) never block the writer, and a crash loses at most
    # the uncommitted transaction. NORMAL sync: no fsync per commit (SD cards), and
    # still never a corrupt file; only a power cut may lose the last commits.
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise LogDatabaseError(f"{path}: cannot switch to WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = NORMAL")
    if app_id != APPLICATION_ID:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _statements(_SCHEMA):
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
        current = SCHEMA_VERSION
    while current < version:
        step = steps.get(current)
        if step is None:
            raise LogDatabaseError(f"{path}: no upgrade from log schema version {current}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(conn)
            conn.execute(f"PRAGMA user_version = {current + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        current += 1


def _statements(script: str) -> list[str]:
    """Split the schema script into statements (it has no ';' inside literals)."""
    out, buf = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0].rstrip()
        if not code:
            continue
        buf.append(code)
        if code.endswith(";"):
            out.append("\n".join(buf))
            buf = []
    return out
