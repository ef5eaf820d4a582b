"""The forwarder: readings from a local SQLite log into PostgreSQL, exactly once.

Theory of operation: the log is the buffer. The forwarder reads the readings
after its position (``forward_positions``, :mod:`ganglion.logger.outbox`) in
``samples.id`` order, up to ``batch`` at a time, and sends each batch in one
PostgreSQL transaction, with the batch's nodes and gaps: a binary ``COPY`` (the
fastest way into PostgreSQL; written by the compiled encoder where it is built,
:mod:`ganglion.forward._copy_accel`, else rendered by SQLite,
:mod:`ganglion.forward.pgcopy`) straight into ``readings`` in a savepoint, or, when a row
of it is already there, into a temporary staging table and then ``INSERT ...
SELECT ... ON CONFLICT DO NOTHING`` (:meth:`Forwarder._send`). Only after that
commit does it advance its position in the log. So:

* a crash before the commit loses nothing: the batch is read and sent again;
* a crash (or a lost acknowledgement) after the commit and before the position
  is stored sends the batch again, and the server ignores every row it already
  has (its natural identity, :mod:`ganglion.forward.pgschema`): no duplicate;
* a position never moves past a row that was not committed: nothing skipped.

It never touches the logger's ingest: it has its own SQLite connection (WAL
readers do not block the writer; its position update is one small
transaction) and runs in its own thread (``ganglion log --forward``, the
``log`` plugin) or process (``ganglion forward``).

Faults. A database that cannot be reached, or goes away mid-batch, is logged
once (one line), then retried with a backoff doubling from 0.5 s up to
``max_backoff``; attempts are counted, and the log keeps the readings until it
returns. A wrong password, a missing database or role, an unreadable URL, or a
schema made by a newer ganglion raise :class:`ForwardError` (one line, and the
commands exit non-zero). A row the server refuses (a string holding ``\\u0000``,
which JSONB cannot store) fails its whole batch; the batch is then sent row by
row, each in a savepoint, the refused rows are logged with their identity and
counted (``rejected``), and the position moves past them: never retried forever,
never holding up the others.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import fnmatch
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ganglion.errors import LogDatabaseError
from ganglion.forward import pgcopy, pgschema
from ganglion.forward.target import ForwardError, Target, is_fatal_connect_error
from ganglion.logger import outbox
from ganglion.logger.schema import open_log, read_only_uri
from ganglion.logger.u64 import from_sql

__all__ = ["DEFAULT_BATCH", "DEFAULT_INTERVAL", "ForwardStats", "Forwarder"]

_log = logging.getLogger(__name__)

DEFAULT_BATCH = 10_000
DEFAULT_INTERVAL = 1.0
DEFAULT_MAX_BACKOFF = 30.0
_FIRST_BACKOFF = 0.5
_GAP_BATCH = 10_000
#: At most this many refused rows are logged one by one per batch (then a count).
_REJECT_LINES = 10

_READINGS_COLUMNS = pgcopy.COLUMNS
_STAGE = """CREATE TEMP TABLE IF NOT EXISTS fwd_stage (
    time timestamptz, type text, node text, seq bigint, sent_ns bigint, received_ns bigint,
    data jsonb, boot bigint, fingerprint text, last_value boolean, replayed boolean,
    clock_synced boolean, local boolean, repaired boolean
) ON COMMIT DELETE ROWS"""
#: The fast path: straight into ``readings`` (in a savepoint: a row already there fails it).
#: Binary: the log renders the tuples itself (:mod:`ganglion.forward.pgcopy`).
_COPY_DIRECT = f"COPY readings ({_READINGS_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_STAGE = f"COPY fwd_stage ({_READINGS_COLUMNS}) FROM STDIN (FORMAT BINARY)"
#: The idempotent path. Sorted by the identity (the primary key's order), so that two
#: forwarders inserting the same readings take their locks in the same order (no deadlock).
_INSERT_READINGS = (
    f"INSERT INTO readings ({_READINGS_COLUMNS}) SELECT {_READINGS_COLUMNS} FROM fwd_stage "
    "ORDER BY type, time, node, boot, seq ON CONFLICT DO NOTHING")
_INSERT_ONE = (f"INSERT INTO readings ({_READINGS_COLUMNS}) VALUES "
               "(%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s) "
               "ON CONFLICT DO NOTHING")
_UPSERT_NODE = (
    "INSERT INTO nodes (node, name, first_ns, last_ns) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (node) DO UPDATE SET name = coalesce(excluded.name, nodes.name), "
    "first_ns = least(nodes.first_ns, excluded.first_ns), "
    "last_ns = greatest(nodes.last_ns, excluded.last_ns)")
#: Batches sent the idempotent way after the fast path met a row already on the server
#: (a batch re-sent after a crash, or readings another logger forwarded too).
_SLOW_BATCHES = 16
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_UPSERT_TYPE = (
    "INSERT INTO types (name, fingerprint, fields, units, meta, first_ns) "
    "VALUES (%s, %s, %s::jsonb, %s::jsonb, %s::jsonb, %s) "
    "ON CONFLICT (name, fingerprint, fields) DO UPDATE SET units = excluded.units, "
    "meta = excluded.meta, first_ns = least(types.first_ns, excluded.first_ns), updated = now() "
    "WHERE types.meta IS DISTINCT FROM excluded.meta OR types.first_ns > excluded.first_ns "
    "RETURNING name, xmax = 0")
_INSERT_GAP = ("INSERT INTO gaps (type, node, boot, first_missing, last_missing, missing, "
               "detected_ns) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING")
#: Whole log rows, for a batch sent row by row (and the benchmark's baseline).
_READ = ("SELECT s.id, t.name, n.node, n.name, s.seq, s.sent_ns, s.received_ns, s.data, s.boot, "
         "t.fingerprint, s.flags FROM samples s JOIN types t ON t.id = s.type_id "
         "JOIN nodes n ON n.id = s.node_id WHERE s.id > ? ORDER BY s.id LIMIT ?")
_READ_RANGE = ("SELECT s.id, t.name, n.node, n.name, s.seq, s.sent_ns, s.received_ns, s.data, "
               "s.boot, t.fingerprint, s.flags FROM samples s JOIN types t ON t.id = s.type_id "
               "JOIN nodes n ON n.id = s.node_id WHERE s.id > ? AND s.id <= ? {types}"
               "ORDER BY s.id")
#: A batch's senders, with their first and last receive times (for ``nodes``).
_READ_NODES = ("SELECT n.node, n.name, min(s.received_ns), max(s.received_ns) FROM samples s "
               "JOIN nodes n ON n.id = s.node_id WHERE s.id > ? AND s.id <= ? {types}"
               "GROUP BY s.node_id ORDER BY n.node")
#: Restricts the two above to the wanted types (a JSON array of ``types.id``).
_OF_TYPES = "AND s.type_id IN (SELECT value FROM json_each(?)) "


@dataclasses.dataclass(frozen=True, slots=True)
class ForwardStats:
    """Counters of one forwarder.

    Attributes:
        forwarded: readings in committed batches (new on the server or already there).
        inserted: readings that were new on the server.
        rejected: readings the server refused (logged with their identity, skipped).
        skipped: readings not matching the ``--type`` patterns (not sent).
        batches: committed batches.
        position: the ``samples.id`` delivered through.
        pending: readings in the log after the position (ids, so an upper bound).
        attempts: failed connection attempts and lost connections.
        outages: times the database became unreachable.
        connected: whether a connection is open now.
    """

    forwarded: int
    inserted: int
    rejected: int
    skipped: int
    batches: int
    position: int
    pending: int
    attempts: int
    outages: int
    connected: bool


@dataclasses.dataclass(frozen=True, slots=True)
class _Batch:
    """A batch read from the log (:meth:`Forwarder._read_batch`).

    Attributes:
        read: log rows read, of every type.
        last_id: the ``samples.id`` read through (the position when none).
        type_ids: the ``types.id`` of the rows encoded in ``data``.
        data: binary COPY of the rows of every type not left out when read (``b""``
            when none); None for a batch read by the Python path, made from ``rows``.
        rows: the Python path's ``(id, type id, tuple in hex)`` rows (the compiled
            path's: empty).
        encoded: the rows in ``data`` (the compiled path leaves out the types known to
            be unwanted when it reads).
        senders: the compiled path's ``(nodes.id, first, last received_ns)`` of the
            encoded rows (the Python path's: None, :data:`_READ_NODES` asks the log).
    """

    read: int
    last_id: int
    type_ids: frozenset[int]
    data: bytes | None
    rows: list[tuple[Any, ...]]
    encoded: int = 0
    senders: list[tuple[int, int, int]] | None = None


class _Transient(Exception):
    """The connection failed or was lost: retry after a backoff."""


class Forwarder:
    """Forwards one log to one PostgreSQL database (see the module docstring).

    Args:
        db: the log database (must exist).
        target: where to.
        patterns: glob patterns of type names; empty forwards every type.
        batch: readings per transaction at most.
        interval: seconds between looks at the log once caught up.
        max_backoff: the longest wait between reconnection attempts.

    Raises:
        LogDatabaseError: the log cannot be opened.
    """

    def __init__(self, db: Path | str, target: Target, *, patterns: Iterable[str] = (),
                 batch: int = DEFAULT_BATCH, interval: float = DEFAULT_INTERVAL,
                 max_backoff: float = DEFAULT_MAX_BACKOFF) -> None:
        if batch < 1 or interval <= 0 or max_backoff <= 0:
            raise ValueError("batch must be >= 1, interval and max_backoff > 0")
        self.db = Path(db)
        if not self.db.is_file():
            raise LogDatabaseError(f"{self.db}: no such log database")
        self.target = target
        self.patterns = tuple(patterns)
        self.batch = batch
        self.interval = interval
        self.max_backoff = max_backoff
        self._sqlite = open_log(self.db)
        encoding = self._sqlite.execute("PRAGMA encoding").fetchone()[0]
        if encoding != "UTF-8":  # pgcopy takes a text's bytes as its UTF-8 (ganglion's logs)
            self._sqlite.close()
            raise LogDatabaseError(f"{self.db}: the log's text encoding is {encoding}; "
                                   "forwarding needs a UTF-8 log (as ganglion makes them)")
        try:
            self._position, self._gap_position = outbox.ensure_table(self._sqlite, target.name)
        except sqlite3.Error as exc:
            self._sqlite.close()
            raise LogDatabaseError(f"cannot write {self.db}: {exc}") from None
        self._pg: Any = None
        self._types_sent: tuple[Any, ...] | None = None
        self._wanted: dict[str, bool] = {}
        self._type_names: dict[int, str] = {}  # types.id -> name, for --type
        self._lock = threading.Lock()
        self._forwarded = self._inserted = self._rejected = self._skipped = 0
        self._batches = self._attempts = self._outages = 0
        self._down_since: float | None = None
        self._slow = 0  # batches still to send the idempotent way (see _send)
        # Reading ahead while catching up: (position, future rows), its thread and connection.
        self._ahead: tuple[int, concurrent.futures.Future[_Batch]] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._reader: sqlite3.Connection | None = None
        # The compiled encoder's reader (ganglion/_c/copyfast.c), None for the Python path.
        self._fast: Any = _fast_reader(self.db)
        self._newest = self._sqlite.execute("SELECT max(id) FROM samples").fetchone()[0] or 0
        self.error: ForwardError | None = None

    # -- running ---------------------------------------------------------------------

    def check(self, *, report: bool = True) -> bool:
        """Connect once (creating the schema if needed); False when unreachable now.

        Args:
            report: log the outage line (and count the attempt) when unreachable.

        Raises:
            ForwardError: a fatal error (wrong password, no such database, newer schema).
        """
        try:
            self._connect()
        except _Transient as exc:
            if report:
                self._note_down(str(exc))
            return False
        return True

    def run(self, stop: threading.Event, *, once: bool = False,
            finish: threading.Event | None = None) -> None:
        """Forward until ``stop`` is set (or, with ``once``/``finish`` set, until caught up).

        Raises:
            ForwardError: a fatal error; also stored in :attr:`error`.
        """
        backoff = _FIRST_BACKOFF
        try:
            while not stop.is_set():
                try:
                    if self._pg is None:
                        self._connect()
                        self._note_up()
                        backoff = _FIRST_BACKOFF
                    moved = self._cycle()
                except _Transient as exc:
                    self._close_pg()
                    if once:  # one line: the caller's error
                        raise ForwardError(f"cannot reach {self.target.name}: {exc}") from None
                    self._note_down(str(exc))
                    self._refresh_newest()  # so that stats() shows the backlog growing
                    stop.wait(backoff)
                    backoff = min(self.max_backoff, backoff * 2)
                    continue
                if moved >= self.batch:
                    continue  # catching up: no wait
                if once or (finish is not None and finish.is_set()):
                    return
                stop.wait(self.interval)
        except ForwardError as exc:
            self.error = exc
            raise
        finally:
            self._close_pg()

    def close(self) -> None:
        """Close the connections (and the read-ahead thread)."""
        self._close_pg()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._fast is not None:
            self._fast.close()
            self._fast = None
        self._sqlite.close()

    def stats(self) -> ForwardStats:
        """A snapshot of the counters (from any thread: it does not touch the log)."""
        with self._lock:
            return ForwardStats(self._forwarded, self._inserted, self._rejected, self._skipped,
                                self._batches, self._position,
                                max(0, self._newest - self._position), self._attempts,
                                self._outages, self._pg is not None)

    # -- connection --------------------------------------------------------------------

    def _connect(self) -> None:
        import psycopg

        try:
            conn = psycopg.connect(self.target.url, **self.target.connect_kwargs())  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            message = _first_line(exc)
            if is_fatal_connect_error(message):
                raise ForwardError(f"cannot forward to {self.target.name}: {message}") from None
            raise _Transient(message) from None
        except psycopg.Error as exc:  # ProgrammingError: libpq cannot read the URL
            raise ForwardError(f"cannot forward to {self.target.name}: {_first_line(exc)}"
                               ) from None
        try:
            pgschema.ensure_schema(conn)
            conn.execute(_STAGE)
            conn.commit()
        except pgschema.NewerSchemaError as exc:
            conn.close()
            raise ForwardError(f"cannot forward to {self.target.name}: {exc}") from None
        except psycopg.errors.DuplicateTable as exc:
            conn.close()
            raise ForwardError(f"cannot forward to {self.target.name}: the database has a "
                               f"table of that name not made by ganglion ({_first_line(exc)}); "
                               "use an empty database") from None
        except psycopg.OperationalError as exc:
            conn.close()
            raise _Transient(_first_line(exc)) from None
        except psycopg.Error as exc:
            conn.close()
            raise ForwardError(f"cannot forward to {self.target.name}: {_first_line(exc)}"
                               ) from None
        self._pg = conn
        self._types_sent = None  # send the types again on every new connection

    def _close_pg(self) -> None:
        conn, self._pg = self._pg, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _note_down(self, reason: str) -> None:
        with self._lock:
            self._attempts += 1
            if self._down_since is not None:
                return  # one line per outage; the attempts are counted
            self._down_since = time.monotonic()
            self._outages += 1
        _log.warning("forwarding to %s: the database is unreachable (%s); readings wait in "
                     "%s, retrying with backoff up to %g s", self.target.name, reason,
                     self.db, self.max_backoff)

    def _note_up(self) -> None:
        with self._lock:
            since, self._down_since = self._down_since, None
            attempts = self._attempts
        if since is not None:
            _log.warning("forwarding to %s: connected again after %.1f s (%d failed attempts "
                         "so far); catching up", self.target.name, time.monotonic() - since,
                         attempts)

    # -- one cycle ---------------------------------------------------------------------

    def _cycle(self) -> int:
        """Send the types if changed and the next batch; return the readings read."""
        import psycopg

        try:
            batch = self._read_batch()
            # After the batch is read: a type version committed with a reading of the batch
            # is then visible too (one writer, in order), so its view exists with it.
            self._send_types()
            if batch.last_id == self._position:
                self._send_gaps_only()
                return 0
            wanted = self._wanted_ids(batch.type_ids)
            if wanted is not None and batch.data is not None and not batch.type_ids <= wanted:
                # compiled, with a type not known to be unwanted when read: the Python way
                batch = self._python_batch(self._position)
                wanted = self._wanted_ids(batch.type_ids)
            if batch.data is not None:
                count, data = batch.encoded, batch.data
            elif wanted is None:
                count, data = batch.read, pgcopy.payload(row[2] for row in batch.rows)
            else:
                tuples = [row[2] for row in batch.rows if row[1] in wanted]
                count, data = len(tuples), pgcopy.payload(tuples) if tuples else b""
            last_id, read = batch.last_id, batch.read
            if last_id == self._position:
                return 0  # the rows went (retention) between the two reads
            inserted, rejected, gap_position = self._send(data, count, last_id, wanted,
                                                          batch.senders)
        except psycopg.errors.TransactionRollback as exc:  # a deadlock: again, in order
            self._pg.rollback()
            self._slow = _SLOW_BATCHES
            _log.info("forwarding to %s: %s; sending the batch again", self.target.name,
                      _first_line(exc))
            return 0
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise _Transient(_first_line(exc)) from None
        except psycopg.Error as exc:
            raise ForwardError(f"forwarding to {self.target.name} failed: {_first_line(exc)}"
                               ) from None
        self._gap_position = gap_position
        self._advance(last_id, count - rejected, rejected)
        with self._lock:
            self._forwarded += count - rejected
            self._inserted += inserted
            self._rejected += rejected
            self._skipped += read - count
            self._batches += 1
        return read

    def _wants(self, type_name: str) -> bool:
        if not self.patterns:
            return True
        wanted = self._wanted.get(type_name)
        if wanted is None:
            if len(self._wanted) > 10_000:
                self._wanted.clear()  # bounded: names come from senders
            wanted = any(fnmatch.fnmatchcase(type_name, p) for p in self.patterns)
            self._wanted[type_name] = wanted
        return wanted

    def _wanted_ids(self, type_ids: frozenset[int]) -> set[int] | None:
        """Which of a batch's ``types.id`` are wanted; None when every type is wanted."""
        if not self.patterns:
            return None
        unknown = type_ids - self._type_names.keys()
        if unknown:  # committed after the types were last read
            self._type_names.update(self._sqlite.execute(
                "SELECT id, name FROM types WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(sorted(unknown)),)).fetchall())
        return {i for i in type_ids if self._wants(self._type_names.get(i, ""))}

    def _unwanted_ids(self) -> frozenset[int]:
        """The ``types.id`` known to be unwanted (the compiled path leaves them out)."""
        if not self.patterns:
            return frozenset()
        return frozenset(i for i, name in self._type_names.items() if not self._wants(name))

    def _read_batch(self) -> _Batch:
        """The next readings after the position (see :class:`_Batch`).

        While catching up (a full batch), the batch after it is read at once in a
        helper thread (by the compiled reader, or a second read-only connection), so
        that reading the log (SQLite and the encoder release the GIL) overlaps the
        server's work on this one.
        """
        ahead, self._ahead = self._ahead, None
        batch = None
        if ahead is not None:
            done = ahead[1].result()  # (a batch read for a position that did not come: dropped)
            if ahead[0] == self._position:
                batch = done
        if batch is None:
            batch = self._read_at(self._position, self._unwanted_ids())
        if batch.read == self.batch:
            self._ahead = (batch.last_id, self._pool().submit(
                self._read_at, batch.last_id, self._unwanted_ids(), ahead=True))
        newest = self._refresh_newest()
        if not batch.read and newest is not None and newest < self._position:
            # Ids started over (the log was emptied by a tool that does not keep the
            # newest row): send it all again; the server keeps what it has.
            _log.warning("forwarding to %s: %s starts below the forwarded position %d; "
                         "sending it again from the start", self.target.name, self.db,
                         self._position)
            self._position = 0
            outbox.reset(self._sqlite, self.target.name)
            batch = self._read_at(0, self._unwanted_ids())
        return batch

    def _read_at(self, after: int, left_out: frozenset[int], *, ahead: bool = False) -> _Batch:
        """Read the batch after ``after``: compiled when it can, else the Python way (the
        read-ahead thread with a connection of its own)."""
        if self._fast is not None:
            try:
                done = self._fast.read(after, self.batch, left_out)
            except OSError as exc:  # the Python path reports what it meets too
                _log.debug("forwarding: the compiled reader failed (%s)", exc)
                done = None
            if done is not None:
                data, read, encoded, last_id, type_ids, senders = done
                return _Batch(read, last_id, frozenset(type_ids), data, [], encoded, senders)
        return self._python_batch(after, ahead=ahead)

    def _python_batch(self, after: int, *, ahead: bool = False) -> _Batch:
        """The batch after ``after`` read the Python way (:data:`pgcopy.SELECT_TUPLES`)."""
        if ahead:
            if self._reader is None:
                self._reader = open_log(self.db, write=False)
            conn = self._reader
        else:
            conn = self._sqlite
        rows = conn.execute(pgcopy.SELECT_TUPLES, (after, self.batch)).fetchall()
        return _Batch(len(rows), int(rows[-1][0]) if rows else after,
                      frozenset(int(row[1]) for row in rows), None, rows)

    def _refresh_newest(self) -> int | None:
        """The log's newest id, kept for :meth:`stats` (which other threads call)."""
        try:
            newest = self._sqlite.execute("SELECT max(id) FROM samples").fetchone()[0]
        except sqlite3.Error:
            return None
        with self._lock:
            self._newest = newest or 0
        return None if newest is None else int(newest)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="forward-read")
        return self._executor

    def _in_batch(self, sql: str, last_id: int,
                  wanted: set[int] | None) -> list[tuple[Any, ...]]:
        """Run :data:`_READ_RANGE` or :data:`_READ_NODES` over the batch's wanted rows."""
        if wanted is None:
            return self._sqlite.execute(sql.format(types=""),
                                        (self._position, last_id)).fetchall()
        return self._sqlite.execute(sql.format(types=_OF_TYPES), (
            self._position, last_id, json.dumps(sorted(wanted)))).fetchall()

    def _send(self, data: bytes, count: int, last_id: int, wanted: set[int] | None,
              senders: list[tuple[int, int, int]] | None = None) -> tuple[int, int, int]:
        """Send one batch in one transaction; return (inserted, rejected, gap position).

        The batch is the ``count`` readings after the position through ``last_id`` of
        the ``wanted`` types (None: all), as binary COPY ``data`` (empty when none), sent
        by ``senders`` (as :class:`_Batch` has them; None: asked of the log).
        The fast path COPYs them straight into ``readings``, in a savepoint: when a row
        is already there (a unique violation: the batch is being sent again, or another
        logger forwarded the same readings), the savepoint is rolled back and the batch
        goes the idempotent way: COPY into the staging table, then INSERT ... ON
        CONFLICT DO NOTHING; the next :data:`_SLOW_BATCHES` batches go that way at once.
        Both give the same rows: the fast path only ever succeeds when no row of the
        batch was there. A batch the server refuses (a row it cannot store) is sent
        again row by row (:meth:`_send_one_by_one`).
        """
        import psycopg

        conn = self._pg
        gaps = self._read_gaps()
        try:
            with conn.transaction(), conn.cursor() as cur:
                inserted = None
                if data and self._slow == 0:
                    try:
                        with conn.transaction(), cur.copy(_COPY_DIRECT) as copy:
                            copy.write(data)
                        inserted = count
                    except (psycopg.errors.UniqueViolation, psycopg.errors.TransactionRollback):
                        self._slow = _SLOW_BATCHES
                if data and inserted is None:
                    self._slow = max(0, self._slow - 1)
                    with cur.copy(_COPY_STAGE) as copy:
                        copy.write(data)
                    cur.execute(_INSERT_READINGS)
                    inserted = max(0, cur.rowcount)
                if not data:
                    nodes = []
                elif senders is not None:
                    nodes = self._sender_rows(senders)
                else:
                    nodes = self._in_batch(_READ_NODES, last_id, wanted)
                if nodes:  # in node order: no deadlock between forwarders
                    cur.executemany(_UPSERT_NODE, nodes)
                gap_position = self._insert_gaps(cur, gaps)
            return inserted or 0, 0, gap_position
        except (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.InternalError_):
            return self._send_one_by_one(self._in_batch(_READ_RANGE, last_id, wanted), gaps)

    def _sender_rows(self, senders: list[tuple[int, int, int]]) -> list[tuple[Any, ...]]:
        """What :data:`_READ_NODES` gives, from the compiled path's senders (the names
        as the log has them now)."""
        known = {int(row[0]): (row[1], row[2]) for row in self._sqlite.execute(
            "SELECT id, node, name FROM nodes WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(node_id for node_id, _, _ in senders)),))}
        return sorted((*known[node_id], first, last) for node_id, first, last in senders
                      if node_id in known)

    @staticmethod
    def _upsert_nodes(cur: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """The senders of some log rows into ``nodes`` (in node order: no deadlock
        between forwarders)."""
        nodes: dict[str, list[Any]] = {}
        for row in rows:
            node, name, received = row[2], row[3], row[6]
            known = nodes.get(node)
            if known is None:
                nodes[node] = [name, received, received]
            else:
                known[0] = known[0] or name
                known[1] = min(known[1], received)
                known[2] = max(known[2], received)
        if nodes:
            cur.executemany(_UPSERT_NODE, [(node, *nodes[node]) for node in sorted(nodes)])

    def _send_one_by_one(self, rows: Sequence[tuple[Any, ...]],
                         gaps: list[tuple[Any, ...]]) -> tuple[int, int, int]:
        """Send a batch the server refused as a whole (log rows, as :data:`_READ` gives
        them), row by row, skipping the bad ones."""
        import psycopg

        conn = self._pg
        inserted = rejected = 0
        with conn.transaction(), conn.cursor() as cur:
            good = []
            for row in rows:
                try:
                    with conn.transaction():
                        cur.execute(_INSERT_ONE, _convert(row))
                        inserted += max(0, cur.rowcount)
                    good.append(row)
                except (psycopg.DataError, psycopg.IntegrityError,
                        psycopg.errors.InternalError_) as exc:
                    rejected += 1
                    if rejected <= _REJECT_LINES:
                        _log.warning(
                            "forwarding to %s: the database refused a reading of %s from %s "
                            "(boot %d, seq %d; log row %d): %s; skipped", self.target.name,
                            row[1], row[2], from_sql(row[8]), from_sql(row[4]), row[0],
                            _first_line(exc))
            if rejected > _REJECT_LINES:
                _log.warning("forwarding to %s: %d more refused readings in this batch skipped",
                             self.target.name, rejected - _REJECT_LINES)
            self._upsert_nodes(cur, good)
            gap_position = self._insert_gaps(cur, gaps)
        return inserted, rejected, gap_position

    def _advance(self, last_id: int, forwarded: int, rejected: int) -> None:
        """Store the new position (after the server's commit: see the module docstring)."""
        self._position = last_id
        try:
            outbox.forwarded_through(self._sqlite, self.target.name, last_id,
                                     self._gap_position, forwarded, rejected)
        except sqlite3.Error as exc:  # busy for longer than the timeout: stored next time
            _log.warning("forwarding to %s: cannot store the position in %s (%s); will retry",
                         self.target.name, self.db, exc)

    # -- types, gaps ---------------------------------------------------------------------

    def _send_types(self) -> None:
        """Upsert every row of the log's ``types`` table when it changed (all its columns:
        new columns reach ``types.meta`` without a change here); rebuild the typed views of
        types that got a new version."""
        cursor = self._sqlite.execute("SELECT * FROM types ORDER BY id")
        columns = [d[0] for d in cursor.description]
        rows = tuple(cursor.fetchall())
        if rows == self._types_sent:
            return
        id_at, name_at = columns.index("id"), columns.index("name")
        self._type_names = {int(row[id_at]): str(row[name_at]) for row in rows}
        new_versions: set[str] = set()
        with self._pg.transaction(), self._pg.cursor() as cur:
            for row in rows:
                record = dict(zip(columns, row, strict=True))
                name = str(record["name"])
                if not self._wants(name):
                    continue
                meta = {k: _json_or_text(v) for k, v in record.items() if k != "id"}
                cur.execute(_UPSERT_TYPE, (
                    name, record.get("fingerprint") or "", record.get("fields") or "[]",
                    record.get("units"), json.dumps(meta, ensure_ascii=False),
                    record.get("first_ns")))
                for returned_name, was_inserted in cur.fetchall():
                    if was_inserted:
                        new_versions.add(returned_name)
            if new_versions:
                pgschema.rebuild_views(self._pg, new_versions)
        self._types_sent = rows

    def _read_gaps(self) -> list[tuple[Any, ...]]:
        rows = self._sqlite.execute(
            "SELECT g.id, g.type, n.node, g.boot, g.first_missing, g.last_missing, g.detected_ns "
            "FROM gap_spans g JOIN nodes n ON n.id = g.node_id WHERE g.id > ? ORDER BY g.id "
            "LIMIT ?", (self._gap_position, _GAP_BATCH)).fetchall()
        if not rows:
            newest = self._sqlite.execute("SELECT max(id) FROM gap_spans").fetchone()[0]
            if newest is not None and newest < self._gap_position:
                self._gap_position = 0  # ids started over (the table was emptied)
        return rows

    def _insert_gaps(self, cur: Any, gaps: list[tuple[Any, ...]]) -> int:
        """Insert the gaps (of wanted types); return the gap position once committed."""
        wanted = [g for g in gaps if self._wants(g[1])]
        if wanted:
            cur.executemany(_INSERT_GAP, [
                (type_name, node, boot, first, last,
                 (from_sql(last) - from_sql(first)) % (1 << 64) + 1, detected)
                for _, type_name, node, boot, first, last, detected in wanted])
        return int(gaps[-1][0]) if gaps else self._gap_position

    def _send_gaps_only(self) -> None:
        gaps = self._read_gaps()
        if not gaps:
            return
        with self._pg.transaction(), self._pg.cursor() as cur:
            position = self._insert_gaps(cur, gaps)
        self._gap_position = position
        self._advance(self._position, 0, 0)


class ForwarderThread:
    """A :class:`Forwarder` in a thread of its own, beside a logger (``ganglion log
    --forward``, the ``log`` plugin): the logger's ingest never waits for it.

    A fatal error ends the thread, logged once as an error; it stays in :attr:`error`.
    """

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self._stop = threading.Event()
        self._finish = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"forwarder {forwarder.target.name}")

    @property
    def error(self) -> ForwardError | None:
        return self.forwarder.error

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.forwarder.run(self._stop, finish=self._finish)
        except ForwardError as exc:
            _log.error("%s; forwarding stops (readings are still logged)", exc)
        except Exception as exc:  # a bug: say so loudly, the logger carries on
            _log.error("forwarding to %s failed", self.forwarder.target.name, exc_info=exc)
            self.forwarder.error = ForwardError(f"forwarder failed: {type(exc).__name__}: {exc}")

    def stop(self, drain: float = 15.0) -> None:
        """Send what the log holds (for up to ``drain`` seconds), then stop and close.

        Blocks: call it after the writer's ``close`` (so its last commit is sent), from
        a worker thread when on an event loop.
        """
        self._finish.set()
        if self._thread.is_alive():
            self._thread.join(drain)
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30.0)
        self.forwarder.close()


def _fast_reader(db: Path) -> Any:
    """A compiled reader of the log (:mod:`ganglion.forward._copy_accel`), or None."""
    from ganglion.forward import _copy_accel

    module = _copy_accel.load()
    if module is None:
        return None
    try:
        return module.Reader(read_only_uri(db), pgcopy.READ_ROWS)
    except (OSError, ValueError, LogDatabaseError) as exc:
        if os.environ.get("GANGLION_COPY_FAST", "").strip().lower() == "require":
            raise ImportError(f"GANGLION_COPY_FAST=require, but {exc}") from None
        _log.debug("forwarding: no compiled reader (%s)", exc)
        return None


def _convert(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A log row (as :data:`_READ` gives it) -> a ``readings`` row.

    ``time`` is ``sent_ns`` truncated to the microsecond (toward zero, on the stored
    signed value), computed here once so that both paths give the same value.
    """
    _, type_name, node, _, seq, sent_ns, received_ns, data, boot, fingerprint, flags = row
    micros = abs(sent_ns) // 1000
    return (_EPOCH + dt.timedelta(microseconds=micros if sent_ns >= 0 else -micros), type_name,
            node, seq, sent_ns, received_ns, data, boot, fingerprint, bool(flags & 1),
            bool(flags & 2), not flags & 4, bool(flags & 8), bool(flags & 16))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    text = text.removeprefix("connection failed: ")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # libpq: 'connection to server at "h", port p failed: FATAL:  password ...'
    return lines[0] if lines else type(exc).__name__


def _json_or_text(value: Any) -> Any:
    """A ``types`` cell for ``meta``: JSON text (fields, units, ...) as JSON, else as is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if isinstance(value, bytes):
        return value.hex()
    return value
