"""The log writer: readings in on the event loop, batched SQLite commits in a thread.

Theory of operation: :meth:`Writer.add` is a subscription callback and the hot
path: it appends ``(msg, info)`` to a list and nothing else. The list is handed
to the writer thread when it holds ``batch_rows`` readings, or when the owner
calls :meth:`Writer.hand_off` (the recorder does every ``interval`` seconds), so
a commit happens at most every ``interval`` seconds or ``batch_rows`` readings,
never per reading (an SD card wears with every commit).

The thread turns readings into rows (fields as JSON text, type and node ids,
flags, gaps) and writes each batch -- or every batch waiting, merged up to
:data:`MAX_ROWS_PER_COMMIT` -- in one transaction. Why a thread: a commit in WAL
mode with ``synchronous=NORMAL`` costs little, but a WAL checkpoint writes and
fsyncs the database, which takes tens of milliseconds on an SD card; on the
event loop that would stall receiving. SQLite releases the GIL while it works,
so the thread's I/O overlaps the loop. The queue between them is bounded
(``max_batches``): when the disk cannot keep up, whole batches are dropped and
counted (``dropped``, also in the ``sessions`` row), rather than memory growing
without end or the event loop blocking and the kernel dropping datagrams unseen.

Errors: a reading that cannot be stored (a value outside u64, a field that is
not plain data) is *rejected*: counted, logged at most every 10 s, and the rest
of its batch is written. Any other failure -- an ``sqlite3.Error`` (disk full,
read-only file, I/O error) or anything unexpected (logged here as an error
with its traceback) -- stops the thread: :attr:`Writer.error` holds a
:class:`LogDatabaseError` naming the file and the cause, ``on_error`` is called
(from the thread), and everything added afterwards is counted as dropped; the
recorder then raises it, so ``ganglion log`` exits non-zero. A crash (SIGKILL)
loses only readings not yet committed: WAL makes every commit atomic.

Bounds: senders choose node ids, boots and field names, so the thread's caches
(node ids, type versions, the gap tracker's streams, node names) are LRU maps of
at most ``max_senders`` entries each (:mod:`ganglion.logger.budget`); evictions
are counted (``evicted``). A row in ``nodes`` for a sender never seen before
costs a token from a bucket (``max_senders`` at once, then
``new_senders_per_second``), and a type name gets at most ``max_type_versions``
rows in ``types``; a reading beyond either budget is *refused* (counted, not
stored). Retention removes ``nodes`` rows whose readings are all gone.

Replayed readings (``ganglion replay``) arrive with their original sender, boot,
seq and sent time in their :class:`MessageInfo`, and are stored as such, flagged
``replayed``; one that is already stored as replayed (same type version, sender,
boot, seq and flags: the same log replayed again) is not stored twice.

Gaps across restarts: the ``streams`` table holds each (type, sender)'s boot and
highest sequence number logged, updated with every commit. When a stream the gap
tracker does not know (a new run, or one it evicted) shows up, its stored
position is resumed, so numbers missed while no logger ran become a gap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ganglion.errors import LogDatabaseError
from ganglion.logger import datajson
from ganglion.logger.budget import DEFAULT_MAX_ENTRIES, LruMap
from ganglion.logger.catalog import SchemaLookup, describe, fingerprint_of
from ganglion.logger.gaps import Gap, GapTracker, StreamKey
from ganglion.logger.retention import Retention, apply_retention
from ganglion.logger.schema import Flags, open_log
from ganglion.logger.u64 import from_sql, to_sql
from ganglion.ratelimit import TokenBucket
from ganglion.repair import RequesterConfig
from ganglion.runtime.subscription import MessageInfo
from ganglion.types import Record, as_dict

__all__ = ["DEFAULT_BATCH_ROWS", "DEFAULT_GAP_SETTLE", "DEFAULT_INTERVAL", "MAX_ROWS_PER_COMMIT",
           "Writer", "WriterStats", "repair_horizon", "repaired_flag", "replayed_flag"]

_log = logging.getLogger(__name__)

DEFAULT_BATCH_ROWS = 5_000
DEFAULT_INTERVAL = 1.0
DEFAULT_MAX_BATCHES = 16
MAX_ROWS_PER_COMMIT = 50_000
#: New senders per second that may get a ``nodes`` row once the first burst is spent.
DEFAULT_NEW_SENDERS_PER_SECOND = 1.0
#: Rows in ``types`` per type name (versions: fingerprint and field names).
DEFAULT_MAX_TYPE_VERSIONS = 64
def repair_horizon(config: RequesterConfig | None = None) -> float:
    """Seconds from a gap's detection until repair gives up on it at the latest: the
    requester's first delay and every attempt's wait (backing off up to ``max_retry``)."""
    cfg = config or RequesterConfig()
    return float(cfg.delay + sum(min(cfg.retry * 2.0**i, cfg.max_retry) for i in range(cfg.attempts)))


#: Seconds a gap may still be filled before it is recorded. Only *permanent* gaps
#: belong in the log: a reading that repair gets back is not a gap. So this must
#: exceed repair's give-up horizon (:func:`repair_horizon`: about 8 s with the
#: defaults of :class:`ganglion.repair.RequesterConfig`), plus a rate-limited
#: request's wait and the arrival of a history answer at start: twice the horizon,
#: at least 15 s. A gap repair gives up on is written that long after it was seen,
#: or when the logger stops. Why not take the node's permanent-gap events instead:
#: the tracker also finds gaps no node ever saw (numbers published while no logger
#: ran, from the ``streams`` table), and it works the same for a logger fed by replay.
DEFAULT_GAP_SETTLE = max(15.0, 2 * repair_horizon())
#: Seconds between two warnings about rejected or refused readings.
_WARN_EVERY = 10.0
_REFUSED = -1  # a cached type id: this version is over its name's budget

_INSERT = ("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, flags, data) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
#: Replayed readings' natural key: a replayed row is the same reading as another
#: replayed row with the same type version, original sender, boot, seq and flags, so
#: replaying one log twice stores it once. Partial (live rows are not in it, and an
#: index on every row would cost every live insert); made at the first replayed
#: reading, so a log that never sees one never pays for it.
_REPLAYED_INDEX = ("CREATE UNIQUE INDEX IF NOT EXISTS samples_replayed "
                   "ON samples(type_id, node_id, boot, seq, flags) WHERE flags & 2")
_INSERT_DEDUP = _INSERT.replace("INSERT INTO", "INSERT OR IGNORE INTO")


def replayed_flag(info: MessageInfo) -> bool:
    """Whether a reading was sent by ``ganglion replay`` (``MessageInfo.replayed``)."""
    return info.replayed


def repaired_flag(info: MessageInfo) -> bool:
    """Whether a reading was lost and got back by repair or history (``MessageInfo.repaired``).

    ``getattr``: a :class:`MessageInfo` made by code older than repair has no such field.
    """
    return bool(getattr(info, "repaired", False))


@dataclasses.dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of one writer.

    Attributes:
        received: readings handed to the writer.
        written: readings committed.
        dropped: readings lost because the queue was full or the database failed.
        commits: transactions committed.
        commit_seconds_max: the longest write transaction (conversion + insert + commit).
        commit_seconds_total: all of them together.
        queued_batches: batches waiting for the thread now.
        gaps: gaps written.
        removed: readings removed by retention.
        rejected: readings that could not be stored (a value out of range, a field
            that is not plain data).
        refused: readings over a budget (a new sender or type version too many).
        evicted: entries evicted from the bounded caches (senders, type versions,
            streams, names).
        senders: node ids cached now (at most ``max_senders``).
        streams: streams the gap tracker remembers now (at most ``max_senders``).
        repaired: readings committed with the ``repaired`` flag.
        missing: sequence numbers in the gaps written (readings permanently lost).
    """

    received: int
    written: int
    dropped: int
    commits: int
    commit_seconds_max: float
    commit_seconds_total: float
    queued_batches: int
    gaps: int
    removed: int
    rejected: int = 0
    refused: int = 0
    evicted: int = 0
    senders: int = 0
    streams: int = 0
    repaired: int = 0
    missing: int = 0


class Writer:
    """Writes readings to a log database from a thread, in batches.

    Args:
        path: the database file (created if missing).
        patterns: the ``--type`` patterns, recorded in the session row.
        batch_rows: hand a batch to the thread when it holds this many readings.
        max_batches: batches that may wait for the thread before new ones are dropped.
        retention: the age and size limits; None keeps everything.
        gap_settle: seconds a gap may still be filled by late (reordered or repaired)
            readings before it is recorded (:data:`DEFAULT_GAP_SETTLE`).
        max_pages: cap the file at this many pages (``PRAGMA max_page_count``):
            a full disk on demand, for tests.
        on_error: called once, from the writer thread, when the database fails
            (also settable later as the attribute ``on_error``).
        max_senders: entries kept in each in-memory cache keyed by what senders
            choose (node ids, type versions, streams, names), and the burst of
            new ``nodes`` rows.
        new_senders_per_second: new ``nodes`` rows allowed per second after the burst.
        max_type_versions: rows in ``types`` allowed per type name.

    Raises:
        LogDatabaseError: the database cannot be opened or written.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        patterns: Iterable[str] = (),
        batch_rows: int = DEFAULT_BATCH_ROWS,
        max_batches: int = DEFAULT_MAX_BATCHES,
        retention: Retention | None = None,
        gap_settle: float = DEFAULT_GAP_SETTLE,
        max_pages: int | None = None,
        on_error: Callable[[LogDatabaseError], None] | None = None,
        max_senders: int = DEFAULT_MAX_ENTRIES,
        new_senders_per_second: float = DEFAULT_NEW_SENDERS_PER_SECOND,
        max_type_versions: int = DEFAULT_MAX_TYPE_VERSIONS,
    ) -> None:
        if batch_rows < 1 or max_batches < 1:
            raise ValueError("batch_rows and max_batches must be at least 1")
        if max_senders < 1 or max_type_versions < 1 or new_senders_per_second < 0:
            raise ValueError("max_senders and max_type_versions must be at least 1 and "
                             "new_senders_per_second >= 0")
        self.path = Path(path)
        _make_directory(self.path.parent)
        self._conn = open_log(self.path)
        self._batch_rows = batch_rows
        self._retention = retention
        self.on_error = on_error
        #: Where a Record's announced schema is found (set by the recorder to the node's
        #: :meth:`~ganglion.Node.type_schema`; called from the writer thread, it only reads).
        self.schemas: SchemaLookup | None = None
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=max_batches)
        self._batch: list[tuple[Any, Any]] = []
        self._tracker = GapTracker(settle_ns=int(gap_settle * 1e9), max_streams=max_senders,
                                   max_open_total=max_senders)
        # The thread's caches (only the writer thread touches them).
        self._type_ids: LruMap[tuple[str, str | None, tuple[str, ...]], int] = LruMap(max_senders)
        self._node_ids: LruMap[bytes, int] = LruMap(max_senders)
        self._thread_names: LruMap[bytes, str] = LruMap(max_senders)
        # Made at the first new sender: the readings' receive times are its clock.
        self._new_nodes: TokenBucket | None = None
        self._new_nodes_budget = (new_senders_per_second, max_senders)
        self._max_versions = max_type_versions
        # Whether samples_replayed exists (then every insert ignores a replayed duplicate);
        # None until a replayed reading makes the thread look.
        self._dedup: bool | None = None
        # The event loop's copy, to send only changed names to the thread.
        self._names: LruMap[bytes, str] = LruMap(max_senders)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the counters the thread updates
        self.error: LogDatabaseError | None = None
        self._received = self._written = self._dropped = self._commits = 0
        self._gaps = self._removed = self._rejected = self._refused = 0
        self._repaired = self._missing = 0
        self._commit_max = self._commit_total = 0.0
        self._drop_logged = self._reject_logged = 0.0
        try:
            if max_pages is not None:
                self._conn.execute(f"PRAGMA max_page_count = {int(max_pages)}")
            from ganglion import __version__

            # Writing the session row at once proves the file is writable before the
            # logger joins the network: a read-only file fails here, with one message.
            self._session = self._conn.execute(
                "INSERT INTO sessions (started_ns, version, patterns) VALUES (?, ?, ?)",
                (time.time_ns(), __version__, json.dumps(list(patterns)))).lastrowid
        except sqlite3.Error as exc:
            self._conn.close()
            raise LogDatabaseError(f"cannot write {self.path}: {exc}") from None

    # -- the event loop's side -------------------------------------------------------

    def start(self) -> None:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"log writer {self.path.name}",
                                            daemon=True)
            self._thread.start()

    def add(self, msg: Any, info: Any) -> None:
        """Take one reading (a subscription callback: ``add(msg, info)``)."""
        batch = self._batch
        batch.append((msg, info))
        if len(batch) >= self._batch_rows:
            self.hand_off()

    def hand_off(self) -> None:
        """Pass the readings taken so far to the writer thread (one commit's worth)."""
        batch = self._batch
        if not batch:
            return
        self._batch = []
        with self._lock:
            self._received += len(batch)
        self._put(("rows", batch), len(batch))

    def set_node_names(self, names: Mapping[bytes, str]) -> None:
        """Record the human names of nodes (by node id) in the ``nodes`` table."""
        changed = {k: v for k, v in names.items() if self._names.get(k) != v}
        if changed:
            for sender, name in changed.items():
                self._names.put(sender, name)
            self._put(("names", changed), 0)

    def set_logger_node(self, node_id: bytes) -> None:
        """Record which node this logger runs on in its session row."""
        self._put(("logger", node_id.hex()), 0)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is left, settle every gap, end the session and close the database.

        Blocks (up to ``timeout`` seconds for the thread): call it from a worker
        thread (``asyncio.to_thread``) when on an event loop.
        """
        self.hand_off()
        thread = self._thread
        if thread is not None:
            if thread.is_alive():
                deadline = time.monotonic() + timeout
                while thread.is_alive() and time.monotonic() < deadline:
                    try:
                        self._queue.put(("stop", None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
            if self.error is not None:
                self._count_stranded()  # put while the thread was failing
        else:  # never started: write here, in the caller's thread
            self._drain_inline()

    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        with self._lock:
            return WriterStats(self._received, self._written, self._dropped, self._commits,
                               self._commit_max, self._commit_total, self._queue.qsize(),
                               self._gaps, self._removed, self._rejected, self._refused,
                               self._evicted(), len(self._node_ids), self._tracker.streams,
                               self._repaired, self._missing)

    # -- the writer thread ---------------------------------------------------------------

    def _put(self, item: tuple[str, Any], rows: int) -> None:
        if self.error is None:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                pass
        if rows:
            with self._lock:
                self._dropped += rows
            now = time.monotonic()
            if self.error is None and now - self._drop_logged > 10.0:
                self._drop_logged = now
                _log.warning("log writer for %s cannot keep up: dropped %d readings so far",
                             self.path, self._dropped)

    def _run(self) -> None:
        next_retention = time.monotonic()
        try:
            while True:
                wait = 1.0 if self._retention is None else max(
                    0.0, min(1.0, next_retention - time.monotonic()))
                items = self._take(wait)
                stop = any(kind == "stop" for kind, _ in items)
                self._write(items, final=stop)
                if self._retention is not None and (stop or time.monotonic() >= next_retention):
                    next_retention = time.monotonic() + self._retention.every
                    removed = apply_retention(self._conn, self._retention, time.time_ns())
                    if removed:
                        self._node_ids.clear()  # retention may have removed nodes rows
                    with self._lock:
                        self._removed += removed
                if stop:
                    self._end_session()
                    return
        except Exception as exc:  # any failure must stop the logger, loudly
            self._fail(exc)
        finally:
            self._conn.close()

    def _drain_inline(self) -> None:
        try:
            items: list[tuple[str, Any]] = []
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            self._write(items, final=True)
            self._end_session()
        except Exception as exc:  # as in _run
            self._fail(exc)
        finally:
            self._conn.close()

    def _take(self, wait: float) -> list[tuple[str, Any]]:
        """The next items: one (waiting up to ``wait`` s), then whatever else is queued."""
        try:
            items = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return []
        rows = len(items[0][1]) if items[0][0] == "rows" else 0
        while rows < MAX_ROWS_PER_COMMIT:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            if item[0] == "rows":
                rows += len(item[1])
        return items

    def _write(self, items: list[tuple[str, Any]], *, final: bool) -> None:
        started = time.perf_counter()
        conn = self._conn
        now_ns = time.time_ns()
        # IMMEDIATE: take the write lock before reading. A forwarder (ganglion forward)
        # writes its position into the log from another connection; a deferred
        # transaction that read before that commit could not write after it (SQLite
        # answers "database is locked" at once, without waiting).
        conn.execute("BEGIN IMMEDIATE")
        try:
            count = repaired = 0
            for kind, value in items:
                if kind == "rows":
                    written, fixed = self._insert(value)
                    count += written
                    repaired += fixed
                elif kind == "names":
                    self._store_names(value)
                elif kind == "logger":
                    conn.execute("UPDATE sessions SET logger_node = ? WHERE id = ?",
                                 (value, self._session))
            gaps = self._tracker.flush() if final else self._tracker.settled(now_ns)
            self._store_gaps(gaps)
            with self._lock:
                received, dropped = self._received, self._dropped
                rejected, refused = self._rejected, self._refused
            conn.execute("UPDATE sessions SET ended_ns = ?, received = ?, written = written + ?, "
                         "dropped = ?, rejected = ?, refused = ?, evicted = ? WHERE id = ?",
                         (now_ns, received, count, dropped, rejected, refused, self._evicted(),
                          self._session))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, Exception):  # this transaction's readings are lost
                with self._lock:
                    self._dropped += sum(len(v) for k, v in items if k == "rows")
            raise
        took = time.perf_counter() - started
        with self._lock:
            self._written += count
            self._repaired += repaired
            self._missing += sum(gap.last - gap.first + 1 for gap in gaps)
            self._gaps += len(gaps)
            self._commits += 1
            self._commit_total += took
            self._commit_max = max(self._commit_max, took)

    def _insert(self, batch: list[tuple[Any, Any]]) -> tuple[int, int]:
        """Store one batch; return (rows written, of which flagged repaired)."""
        tracker = self._tracker
        rows = []
        last_seen: dict[int, int] = {}
        # (type, node id) -> (boot, highest seq, received_ns) of the newest reading
        touched: dict[tuple[str, int], tuple[int, int, int]] = {}
        for msg, info in batch:
            try:
                fields, data, seq, sent_ns, boot = self._convert(msg, info)
            except Exception as exc:  # bad input is counted, never fatal
                self._reject(info, exc)
                continue
            # Database work, outside the try: its failures are the logger's, not the reading's.
            row = self._row(msg, info, fields, data, seq, sent_ns, boot)
            if row is None:
                continue  # refused: over a budget
            rows.append(row)
            node_id = row[1]
            last_seen[node_id] = info.received_ns
            if info.last_value:
                # held, so never part of a gap; not a baseline (it may be old)
                tracker.hold((info.type_name, info.sender, info.boot), info.seq)
            else:
                stream = (info.type_name, info.sender, info.boot)
                if not tracker.knows(stream):
                    self._resume(stream, node_id, touched)
                tracker.observe(stream, info.seq, info.received_ns)
                highest = tracker.highest(stream)  # known: it was just observed
                touched[(info.type_name, node_id)] = (
                    info.boot, info.seq if highest is None else highest, info.received_ns)
        if self._dedup is None and any(row[6] & Flags.REPLAYED for row in rows):
            self._dedup = self._replayed_index()
        before = self._conn.total_changes
        self._conn.executemany(_INSERT_DEDUP if self._dedup else _INSERT, rows)
        written = self._conn.total_changes - before
        self._conn.executemany("UPDATE nodes SET last_ns = max(coalesce(last_ns, 0), ?) WHERE id = ?",
                               [(ns, nid) for nid, ns in last_seen.items()])
        self._conn.executemany(
            "INSERT INTO streams (type, node_id, boot, last_seq, last_ns) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (type, node_id) DO UPDATE SET boot = excluded.boot, "
            "last_seq = excluded.last_seq, last_ns = excluded.last_ns",
            [(name, nid, boot, to_sql(seq), ns) for (name, nid), (boot, seq, ns) in touched.items()])
        return written, sum(1 for row in rows if row[6] & Flags.REPAIRED)

    def _replayed_index(self) -> bool:
        """Make the replayed readings' unique index; False when the log's rows prevent it."""
        try:
            self._conn.execute(_REPLAYED_INDEX)
        except sqlite3.IntegrityError:
            _log.warning("%s: already holds the same replayed reading twice; replayed "
                         "readings are stored without checking for duplicates", self.path)
            return False
        return True

    @staticmethod
    def _convert(msg: Any, info: Any) -> tuple[dict[str, Any], str, int, int, int]:
        """A reading's fields, ``data`` text and stored u64 values (no database work).

        Raises:
            Exception: the reading cannot be stored (the caller rejects it): a value
                outside u64, a field that is not plain data, nesting too deep for JSON.
        """
        fields = msg.fields if type(msg) is Record else as_dict(msg)
        return (fields, datajson.dumps(fields), to_sql(info.seq), to_sql(info.sent_ns),
                to_sql(info.boot))

    def _row(self, msg: Any, info: Any, fields: dict[str, Any], data: str, seq: int,
             sent_ns: int, boot: int) -> tuple[Any, ...] | None:
        """One ``samples`` row for a converted reading; None when it is over a budget."""
        name = info.type_name
        fingerprint = fingerprint_of(info)
        key = (name, fingerprint.hex() if fingerprint else None, tuple(fields))
        type_id = self._type_ids.get(key)
        if type_id is None:
            type_id = self._new_type(key, msg, fields, fingerprint, info.received_ns)
        sender = info.sender
        node_id = self._node_ids.get(sender)
        if node_id is None:
            node_id = self._new_node(sender, info.received_ns)
        if type_id == _REFUSED or node_id is None:
            self._refuse(info)
            return None
        flags = ((Flags.LAST_VALUE if info.last_value else 0)
                 | (Flags.REPLAYED if replayed_flag(info) else 0)
                 | (0 if info.clock_synced else Flags.CLOCK_UNSYNCED)
                 | (Flags.LOCAL if info.local else 0)
                 | (Flags.REPAIRED if repaired_flag(info) else 0))
        return (type_id, node_id, boot, seq, sent_ns, info.received_ns, flags, data)

    def _resume(self, stream: StreamKey, node_id: int,
                touched: Mapping[tuple[str, int], tuple[int, int, int]]) -> None:
        """Give the gap tracker where ``stream`` stood: in this batch, else in ``streams``."""
        name, _, boot = stream
        known = touched.get((name, node_id))
        if known is None:
            row = self._conn.execute("SELECT boot, last_seq, last_ns FROM streams "
                                     "WHERE type = ? AND node_id = ?", (name, node_id)).fetchone()
            if row is None:
                return
            known = (from_sql(row[0]), from_sql(row[1]), row[2])
        if known[0] == boot:  # a new boot restarts the numbering: nothing to compare
            self._tracker.resume(stream, known[1])

    def _new_type(self, key: tuple[str, str | None, tuple[str, ...]], msg: Any,
                  fields: dict[str, Any], fingerprint: bytes | None, now_ns: int) -> int:
        version = describe(key[0], msg, fields, fingerprint, self.schemas)
        row = self._conn.execute(
            "SELECT id FROM types WHERE name = ? AND fingerprint IS ? AND fields = ?",
            (version.name, version.fingerprint, version.fields)).fetchone()
        if row is None:
            versions = self._conn.execute("SELECT count(*) FROM types WHERE name = ?",
                                          (version.name,)).fetchone()[0]
            if versions >= self._max_versions:
                row = (_REFUSED,)
            else:
                row = (self._conn.execute(
                    "INSERT INTO types (name, fingerprint, fields, units, source, schema, "
                    "first_ns) VALUES (?, ?, ?, ?, ?, ?, ?)", (*version, now_ns)).lastrowid,)
        self._type_ids.put(key, int(row[0]))
        return int(row[0])

    def _new_node(self, sender: bytes, now_ns: int) -> int | None:
        """The ``nodes`` row id of ``sender``, inserting one if the budget allows (else None)."""
        hexid = sender.hex()
        row = self._conn.execute("SELECT id FROM nodes WHERE node = ?", (hexid,)).fetchone()
        if row is None:
            now = now_ns / 1e9
            if self._new_nodes is None:
                self._new_nodes = TokenBucket(*self._new_nodes_budget, now=now)
            if not self._new_nodes.take(now):
                return None
            row = (self._conn.execute(
                "INSERT INTO nodes (node, name, first_ns, last_ns) VALUES (?, ?, ?, ?)",
                (hexid, self._thread_names.get(sender), now_ns, now_ns)).lastrowid,)
        self._node_ids.put(sender, int(row[0]))
        return int(row[0])

    def _store_names(self, names: Mapping[bytes, str]) -> None:
        for sender, name in names.items():
            self._thread_names.put(sender, name)
        self._conn.executemany("UPDATE nodes SET name = ? WHERE node = ?",
                               [(name, sender.hex()) for sender, name in names.items()])

    def _store_gaps(self, gaps: list[Gap]) -> None:
        rows = []
        for gap in gaps:
            type_name, sender, boot = gap.stream
            node_id = self._node_ids.get(sender)
            if node_id is None:
                node_id = self._new_node(sender, gap.detected_ns)
                if node_id is None:
                    continue  # its sender is over the budget (its row was removed meanwhile)
            rows.append((type_name, node_id, to_sql(boot), to_sql(gap.first), to_sql(gap.last),
                         gap.detected_ns))
        if rows:
            self._conn.executemany(
                "INSERT INTO gap_spans (type, node_id, boot, first_missing, last_missing, "
                "detected_ns) VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _reject(self, info: Any, exc: Exception) -> None:
        with self._lock:
            self._rejected += 1
            count = self._rejected
        now = time.monotonic()
        if now - self._reject_logged > _WARN_EVERY:
            self._reject_logged = now
            _log.warning("log writer for %s: cannot store a reading of %s from %s "
                         "(%s: %s); %d rejected so far", self.path,
                         getattr(info, "type_name", "?"), _hex(getattr(info, "sender", b"")),
                         type(exc).__name__, exc, count)

    def _refuse(self, info: Any) -> None:
        with self._lock:
            self._refused += 1
            count = self._refused
        now = time.monotonic()
        if now - self._reject_logged > _WARN_EVERY:
            self._reject_logged = now
            _log.warning("log writer for %s: too many new senders or versions of %s; "
                         "%d readings refused so far", self.path, info.type_name, count)

    def _evicted(self) -> int:
        return (self._node_ids.evicted + self._type_ids.evicted + self._thread_names.evicted
                + self._tracker.evicted)

    def _end_session(self) -> None:
        self._conn.execute("UPDATE sessions SET ended_ns = ? WHERE id = ?",
                           (time.time_ns(), self._session))

    def _fail(self, exc: Exception) -> None:
        if isinstance(exc, sqlite3.Error):  # the owner reports it (one line: no traceback)
            self.error = LogDatabaseError(f"cannot write {self.path}: {exc}")
        else:  # a bug or a resource failure: keep the traceback for the report
            _log.error("log writer for %s failed", self.path, exc_info=exc)
            self.error = LogDatabaseError(f"cannot write {self.path}: log writer failed: "
                                          f"{type(exc).__name__}: {exc}")
        self._count_stranded()  # everything still queued is lost with the database
        if self.on_error is not None:
            self.on_error(self.error)

    def _count_stranded(self) -> None:
        lost = 0
        while True:
            try:
                kind, value = self._queue.get_nowait()
            except queue.Empty:
                break
            if kind == "rows":
                lost += len(value)
        with self._lock:
            self._dropped += lost


def _hex(node_id: object) -> str:
    return node_id.hex() if isinstance(node_id, bytes) else "?"


def _make_directory(directory: Path) -> None:
    """Create the database's directory (``ganglion log --db`` and the plugin's ``db`` both
    may name one that does not exist yet).

    Raises:
        LogDatabaseError: it cannot be created (a file in the way, no permission).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LogDatabaseError(f"cannot create {directory} for the log database: "
                               f"{exc.strerror or exc}") from None
