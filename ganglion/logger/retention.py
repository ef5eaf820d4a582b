"""Retention: keep a log within an age and a size by removing its oldest readings.

Theory of operation: readings are appended with increasing ids, and their
``received_ns`` (the logger's clock) grows with the id, so "the oldest" is "the
lowest ids" and the age cut-off is found by a binary search over ids (a few
primary-key lookups, no index on time needed). Deleting happens in chunks of
:data:`CHUNK_ROWS`, each its own transaction, so the writer never holds a huge
transaction and the WAL stays small.

Size is the database's *used* pages (``page_count - freelist_count``). SQLite
reuses freed pages, so once a log reaches ``max_size`` the file stops growing
instead of shrinking (no VACUUM: that would rewrite the whole file, which an SD
card pays for). When over the limit, the oldest readings are removed until the
used size is below :data:`SIZE_TARGET` of the limit, so deleting does not run on
every commit. Gaps older than the oldest remaining reading go too, and so do the
``nodes`` rows (with their ``streams`` rows) of senders whose newest reading is
older than that: ``nodes.last_ns`` is the receive time of a sender's newest
reading, so such a sender has no reading left. The ``nodes`` table therefore
never outgrows the readings kept (a flood of made-up node ids leaves with its
readings).

A forwarded log (:mod:`ganglion.logger.outbox`) is a buffer too: the age limit
never removes a reading a forwarding target has not been sent, only the size
limit may (those are counted per target and logged), and the newest reading is
always kept, so row ids keep growing.

Defaults suit a Raspberry Pi's SD card: 30 days and 1 GB.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import sqlite3

from ganglion.logger import outbox

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_SIZE",
    "Retention",
    "apply_retention",
    "format_duration",
    "format_size",
    "parse_duration",
    "parse_size",
    "used_bytes",
]

DEFAULT_MAX_AGE = 30 * 86400.0  # seconds
DEFAULT_MAX_SIZE = 1_000_000_000  # bytes
CHUNK_ROWS = 20_000
SIZE_TARGET = 0.9

_log = logging.getLogger(__name__)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(b|k|kb|m|mb|g|gb|t|tb|kib|mib|gib|tib)?\s*$",
                   re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BYTES = {"b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


@dataclasses.dataclass(frozen=True, slots=True)
class Retention:
    """How much a log keeps.

    Attributes:
        max_age: seconds of readings kept; 0 keeps everything.
        max_size: bytes of used database pages; 0 for no limit.
        every: seconds between checks.
    """

    max_age: float = DEFAULT_MAX_AGE
    max_size: int = DEFAULT_MAX_SIZE
    every: float = 60.0

    def __post_init__(self) -> None:
        if self.max_age < 0 or self.max_size < 0 or self.every <= 0:
            raise ValueError("max_age and max_size must be >= 0 and every > 0")

    def describe(self) -> str:
        """One line for the start-up banner."""
        age = format_duration(self.max_age) if self.max_age else "forever"
        size = format_size(self.max_size) if self.max_size else "no size limit"
        return f"retention: keep {age}, at most {size}"


def apply_retention(conn: sqlite3.Connection, policy: Retention, now_ns: int) -> int:
    """Remove the readings the policy no longer keeps (in chunked transactions).

    Args:
        conn: an open log database in autocommit mode, no transaction open.
        policy: the limits.
        now_ns: the current time, ns since the epoch.

    Returns:
        How many readings were removed.
    """
    removed = 0
    forwarded = outbox.floor(conn)  # None: the log is not forwarded
    keep_from = None
    if forwarded is not None:  # keep the newest reading: ids must keep growing
        newest = conn.execute("SELECT max(id) FROM samples").fetchone()[0]
        keep_from = newest if newest is not None else 0
    if policy.max_age:
        cutoff_id = _last_id_before(conn, now_ns - int(policy.max_age * 1e9))
        if cutoff_id is not None and forwarded is not None and keep_from is not None:
            cutoff_id = min(cutoff_id, forwarded, keep_from - 1)
        if cutoff_id is not None:
            removed += _delete_through(conn, cutoff_id)
    if policy.max_size:
        for _ in range(1000):  # bounded: each round removes at least one chunk
            used = used_bytes(conn)
            if used <= policy.max_size:
                break
            low, high = conn.execute("SELECT min(id), max(id) FROM samples").fetchone()
            if low is None:
                break
            share = 1.0 - SIZE_TARGET * policy.max_size / used
            count = max(1, int((high - low + 1) * share))
            upto = low + count - 1 if keep_from is None else min(low + count - 1, keep_from - 1)
            deleted = _delete_through(conn, upto, forwarded=forwarded is not None)
            if not deleted:
                break  # only the newest reading is left, and it stays
            removed += deleted
    if removed:
        oldest = conn.execute("SELECT min(received_ns) FROM samples").fetchone()[0]
        with conn:
            conn.execute("BEGIN IMMEDIATE")  # see Writer._write
            if oldest is None:
                conn.execute("DELETE FROM gap_spans")
                conn.execute("DELETE FROM streams")
                conn.execute("DELETE FROM nodes")
            else:
                conn.execute("DELETE FROM gap_spans WHERE detected_ns < ?", (oldest,))
                gone = "SELECT id FROM nodes WHERE coalesce(last_ns, 0) < ?"
                conn.execute(f"DELETE FROM gap_spans WHERE node_id IN ({gone})", (oldest,))
                conn.execute(f"DELETE FROM streams WHERE node_id IN ({gone})", (oldest,))
                conn.execute("DELETE FROM nodes WHERE coalesce(last_ns, 0) < ?", (oldest,))
    return removed


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes in the database's used pages (what grows with readings)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def parse_duration(text: str) -> float:
    """Parse ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or plain seconds.

    Raises:
        ValueError: not a duration.
    """
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a duration (examples: 30d, 12h, 90m, 45s)")
    return float(match.group(1)) * _SECONDS[(match.group(2) or "s").lower()]


def parse_size(text: str) -> int:
    """Parse ``1GB``, ``500MB``, ``2GiB``, ``64k`` or plain bytes.

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size (examples: 1GB, 500MB, 2GiB)")
    return int(float(match.group(1)) * _BYTES[(match.group(2) or "b").lower()])


def format_duration(seconds: float) -> str:
    """``2592000`` -> ``30d``; the largest unit that divides it."""
    for unit in ("w", "d", "h", "m"):
        if seconds >= _SECONDS[unit] and seconds % _SECONDS[unit] == 0:
            return f"{int(seconds // _SECONDS[unit])}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """``1000000000`` -> ``1 GB`` (decimal units)."""
    for unit, factor in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= factor:
            return f"{size / factor:g} {unit}"
    return f"{size} B"


def _last_id_before(conn: sqlite3.Connection, cutoff_ns: int) -> int | None:
    """The largest id whose reading arrived before ``cutoff_ns`` (binary search on id)."""
    low, high = conn.execute("SELECT min(id), max(id) FROM samples").fetchone()
    if low is None:
        return None
    found = None
    while low <= high:
        mid = (low + high) // 2
        row = conn.execute("SELECT id, received_ns FROM samples WHERE id >= ? ORDER BY id LIMIT 1",
                           (mid,)).fetchone()
        if row is None or row[0] > high:
            high = mid - 1
            continue
        if row[1] < cutoff_ns:
            found, low = row[0], row[0] + 1
        else:
            high = mid - 1
    return found


def _delete_through(conn: sqlite3.Connection, last_id: int, *, forwarded: bool = False) -> int:
    """Delete readings with id <= last_id, a chunk per transaction.

    With ``forwarded``, readings a forwarding target has not been sent yet are
    counted into its ``dropped`` in the same transaction, and logged.
    """
    removed = 0
    while True:
        low = conn.execute("SELECT min(id) FROM samples").fetchone()[0]
        if low is None or low > last_id:
            return removed
        upto = min(last_id, low + CHUNK_ROWS - 1)
        lost = 0
        with conn:
            conn.execute("BEGIN IMMEDIATE")  # see Writer._write
            if forwarded:
                lost = outbox.count_unforwarded(conn, upto)
            removed += conn.execute("DELETE FROM samples WHERE id <= ?", (upto,)).rowcount
        if lost:
            _log.warning("retention: the size limit removed %d readings not yet forwarded "
                         "(counted as `dropped` in forward_positions)", lost)
