"""Retention on a forwarded log: the age limit waits for the forwarder; the size limit may
not, and then counts what it removed unforwarded; the newest reading always stays.

Pure SQLite (no server): the forwarders' positions are set as a forwarder sets them.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from fwd_support import make_log, temperatures

from ganglion.logger import outbox
from ganglion.logger.retention import Retention, apply_retention
from ganglion.logger.schema import open_log

OLD = time.time_ns() - 10 * 86400 * 10**9  # ten days ago


def _ids(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT id FROM samples ORDER BY id")]


def _forwarded(conn: sqlite3.Connection, target: str, through: int) -> None:
    outbox.ensure_table(conn, target)
    outbox.forwarded_through(conn, target, through, 0, through, 0)


def test_without_forwarding_retention_is_unchanged(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(100, received_ns=OLD))
    conn = open_log(db)
    try:
        assert apply_retention(conn, Retention(max_age=86400), time.time_ns()) == 100
        assert _ids(conn) == []
    finally:
        conn.close()


def test_the_age_limit_never_removes_a_reading_not_yet_forwarded(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(100, received_ns=OLD))
    conn = open_log(db)
    try:
        _forwarded(conn, "a@h:5432/x", 30)
        _forwarded(conn, "b@h:5432/x", 60)  # the slowest target decides
        assert apply_retention(conn, Retention(max_age=86400), time.time_ns()) == 30
        assert _ids(conn) == list(range(31, 101))
        _forwarded(conn, "a@h:5432/x", 100)
        _forwarded(conn, "b@h:5432/x", 100)
        # everything forwarded and old: all but the newest reading go
        assert apply_retention(conn, Retention(max_age=86400), time.time_ns()) == 69
        assert _ids(conn) == [100]
    finally:
        conn.close()
    # ids keep growing after it, so new readings are after every position
    make_log(db, temperatures(3, start=100))
    conn = open_log(db)
    try:
        assert _ids(conn) == [100, 101, 102, 103]
    finally:
        conn.close()


def test_the_size_limit_removes_unforwarded_readings_and_counts_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(20_000))
    conn = open_log(db)
    try:
        _forwarded(conn, "a@h:5432/x", 1000)
        _forwarded(conn, "b@h:5432/x", 5000)
        limit = 200_000
        with caplog.at_level(logging.WARNING):
            removed = apply_retention(conn, Retention(max_age=0, max_size=limit), time.time_ns())
        left = _ids(conn)
        assert removed > 5000 and left and left[-1] == 20_000
        dropped = dict(conn.execute("SELECT target, dropped FROM forward_positions"))
        first_left = left[0]
        # exactly the readings each target had not been sent when they were removed
        assert dropped == {"a@h:5432/x": first_left - 1 - 1000, "b@h:5432/x": first_left - 1 - 5000}
        assert "not yet forwarded" in caplog.text
    finally:
        conn.close()


def test_the_newest_reading_stays_even_under_the_size_limit(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    make_log(db, temperatures(500))
    conn = open_log(db)
    try:
        _forwarded(conn, "a@h:5432/x", 500)
        apply_retention(conn, Retention(max_age=0, max_size=1), time.time_ns())
        assert _ids(conn) == [500]
    finally:
        conn.close()
