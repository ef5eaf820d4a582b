"""PostgreSQL's binary COPY format, rendered by SQLite: the forwarder's batch encoder.

Theory of operation: forwarding is bound by CPU on both ends (the server's work per
row, and the client's). Giving psycopg a Python tuple per row costs the client
some 5 us a row (eleven objects fetched from SQLite, a ``datetime`` built, each
value adapted); a text ``COPY`` costs the server a parse of every number and
timestamp. So the log database renders each reading as one tuple of the binary
``COPY`` format itself (https://www.postgresql.org/docs/current/sql-copy.html,
"Binary Format"), in hex, with ``printf`` in :data:`SELECT_TUPLES`; Python only
joins the batch's strings and turns them into bytes (:func:`payload`). Nothing of a
row's values passes through Python objects, and the server reads fixed-size binary
fields.

One tuple, in the column order of :data:`COLUMNS`: a 16-bit field count (14),
then per field a 32-bit length (``-1`` for NULL) and the bytes, all big-endian:

* ``time`` (timestamptz): microseconds since 2000-01-01 UTC as int64:
  ``sent_ns / 1000`` (SQLite's integer division truncates toward zero, as
  :func:`ganglion.forward.forwarder._convert` does) minus 946,684,800 s;
* ``type``, ``node``, ``fingerprint`` (text): their UTF-8 bytes (the fingerprint may
  be NULL);
* ``seq``, ``sent_ns``, ``received_ns``, ``boot`` (bigint): int64, the stored value
  (a u64 >= 2**63 is stored negative, docs/logging.md; ``printf('%016x')`` gives
  its two's complement, which is what PostgreSQL reads back);
* ``data`` (jsonb): the version byte 1 and the JSON text (the server parses it, as
  it would a text COPY: a string holding ``\\u0000`` is refused the same way);
* ``last_value``, ``replayed``, ``clock_synced``, ``local``, ``repaired`` (boolean): one
  byte each, from the log's flags (:class:`ganglion.logger.schema.Flag`); the 32 flag
  combinations are one lookup in :data:`_BOOLS`.

A stream starts with :data:`SIGNATURE` and ends with :data:`TRAILER`.

This is the reference. Where the optional C extension ``ganglion._copyfast`` is built,
the forwarder reads :data:`READ_ROWS` with it and it writes the same bytes itself,
five times cheaper (:mod:`ganglion.forward._copy_accel`; tests/forward/test_copy_fast.py
holds the two to the same bytes).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["COLUMNS", "READ_ROWS", "SELECT_TUPLES", "SIGNATURE", "TRAILER", "payload"]

#: The ``readings`` columns of a tuple, in order.
COLUMNS = ("time, type, node, seq, sent_ns, received_ns, data, boot, fingerprint, "
           "last_value, replayed, clock_synced, local, repaired")

#: "PGCOPY\n\377\r\n\0", then 32-bit flags (0: no OIDs) and header extension length (0).
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
#: The end of the tuples: a field count of -1.
TRAILER = b"\xff\xff"

#: 2000-01-01 (PostgreSQL's epoch) in microseconds since 1970-01-01.
_PG_EPOCH_US = 946_684_800_000_000


def _bools(flags: int) -> str:
    """The five boolean fields of one flags value (1: last value, 2: replayed,
    4: clock not synced, 8: local, 16: repaired), each a 1-byte field, in hex."""
    values = (flags & 1, (flags >> 1) & 1, 1 - ((flags >> 2) & 1), (flags >> 3) & 1,
              (flags >> 4) & 1)
    return "".join(f"00000001{value:02x}" for value in values)


#: The boolean fields of flags 0..31, 50 hex digits each, indexed by ``flags & 31``.
_BOOLS = "".join(_bools(flags) for flags in range(32))

#: ``(id, type_id, tuple in hex)`` of the readings after a ``samples.id``, in id order,
#: at most a number of them: parameters ``(position, limit)``.
SELECT_TUPLES = (
    "SELECT s.id, s.type_id, printf('000e00000008%016x%08x%s%08x%s00000008%016x00000008%016x"
    "00000008%016x%08x01%s00000008%016x%s%s', "
    f"s.sent_ns / 1000 - {_PG_EPOCH_US}, "
    "length(CAST(t.name AS BLOB)), hex(t.name), length(CAST(n.node AS BLOB)), hex(n.node), "
    "s.seq, s.sent_ns, s.received_ns, length(CAST(s.data AS BLOB)) + 1, hex(s.data), s.boot, "
    "CASE WHEN t.fingerprint IS NULL THEN 'ffffffff' "
    "ELSE printf('%08x', length(CAST(t.fingerprint AS BLOB))) || hex(t.fingerprint) END, "
    f"substr('{_BOOLS}', (s.flags & 31) * 50 + 1, 50)) "
    "FROM samples s JOIN types t ON t.id = s.type_id JOIN nodes n ON n.id = s.node_id "
    "WHERE s.id > ? ORDER BY s.id LIMIT ?")


#: The same readings as plain columns, for the compiled encoder (``ganglion/_c/copyfast.c``,
#: which writes what :data:`SELECT_TUPLES` and :func:`payload` make of them): ``(id,
#: type_id, type name, node, seq, sent_ns, received_ns, data, boot, fingerprint, flags,
#: node_id)``.
READ_ROWS = (
    "SELECT s.id, s.type_id, t.name, n.node, s.seq, s.sent_ns, s.received_ns, s.data, s.boot, "
    "t.fingerprint, s.flags, s.node_id FROM samples s JOIN types t ON t.id = s.type_id "
    "JOIN nodes n ON n.id = s.node_id WHERE s.id > ? ORDER BY s.id LIMIT ?")


def payload(tuples: Iterable[str]) -> bytes:
    """A whole binary COPY stream from tuples in hex (as :data:`SELECT_TUPLES` gives)."""
    return SIGNATURE + bytes.fromhex("".join(tuples)) + TRAILER
