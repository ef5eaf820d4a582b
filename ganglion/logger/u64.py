"""Unsigned 64-bit wire values <-> SQLite's signed 64-bit INTEGER, losslessly.

Theory of operation: sequence numbers and sender timestamps are u64 on the wire
(docs/protocol.md), but an SQLite INTEGER is a signed 64-bit number and Python's
``sqlite3`` refuses anything above ``2**63 - 1`` with ``OverflowError``. The log
stores such a value as its two's complement: ``v`` when ``v < 2**63``, else
``v - 2**64`` (a negative number). Every value a real sender produces in the
next two centuries is below ``2**63`` and is stored unchanged, so logs written
before this conversion read back the same, the column stays readable with the
plain ``sqlite3`` tool, and the stored size does not change. Every ganglion
read path (query, export, info) converts back with :func:`from_sql`.

Pure functions, no I/O.
"""

from __future__ import annotations

__all__ = ["I64_MAX", "U64_LIMIT", "from_sql", "to_sql"]

#: The first value that no longer fits a signed 64-bit integer.
U64_LIMIT = 1 << 64
#: The largest value stored unchanged.
I64_MAX = (1 << 63) - 1


def to_sql(value: int) -> int:
    """The INTEGER to store for the u64 ``value`` (two's complement above ``2**63 - 1``).

    Args:
        value: an unsigned 64-bit integer.

    Returns:
        ``value`` itself, or ``value - 2**64`` when it is ``2**63`` or more.

    Raises:
        ValueError: ``value`` is negative or not below ``2**64``.
    """
    if 0 <= value <= I64_MAX:
        return value
    if I64_MAX < value < U64_LIMIT:
        return value - U64_LIMIT
    raise ValueError(f"{value} is not an unsigned 64-bit integer")


def from_sql(value: int) -> int:
    """The u64 value an INTEGER written by :func:`to_sql` stands for."""
    return value + U64_LIMIT if value < 0 else value
