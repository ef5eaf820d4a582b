"""Helpers for forwarding tests: logs made with the real Writer, reading them back.

:func:`make_log` writes readings through :class:`~ganglion.logger.writer.Writer`
(the logger's own code path) with :func:`log_support.info` metadata, so the log
is exactly what ``ganglion log`` would have written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from log_support import info

from ganglion.logger import datajson
from ganglion.logger.u64 import from_sql
from ganglion.logger.writer import Writer
from ganglion.types import Record

BASE_NS = 1_700_000_000_000_000_000


def reading(type_name: str, fields: dict[str, Any], *, node: int = 1, seq: int, boot: int = 1,
            sent_ns: int | None = None, received_ns: int | None = None,
            **flags: bool) -> tuple[Record, Any]:
    sender = bytes([node]) * 8
    sent = BASE_NS + seq * 1_000_000 if sent_ns is None else sent_ns
    return Record(type_name, fields), info(type_name, sender=sender, seq=seq, sent_ns=sent,
                                           boot=boot, received_ns=received_ns, **flags)


def temperatures(count: int, *, node: int = 1, start: int = 0,
                 received_ns: int | None = None) -> list[tuple[Record, Any]]:
    return [reading("sensors.Temperature", {"sensor": f"w1:{node}", "celsius": 20 + i / 8},
                    node=node, seq=i, received_ns=received_ns)
            for i in range(start, start + count)]


def make_log(path: Path, readings: Iterable[tuple[Record, Any]], **writer: Any) -> int:
    """Write the readings to the log at ``path`` (appending); return how many were written."""
    log = Writer(path, **writer)
    before = log.stats().written
    for msg, meta in readings:
        log.add(msg, meta)
    log.close()
    assert log.error is None, log.error
    return log.stats().written - before


def log_rows(db: Path) -> dict[tuple[str, str, int, int], tuple[Any, ...]]:
    """identity (type, node, boot, seq) -> (sent_ns, data as Python, flags) of every log row."""
    conn = sqlite3.connect(db)
    try:
        out = {}
        for type_name, node, boot, seq, sent_ns, data, flags in conn.execute(
                "SELECT t.name, n.node, s.boot, s.seq, s.sent_ns, s.data, s.flags FROM samples s "
                "JOIN types t ON t.id = s.type_id JOIN nodes n ON n.id = s.node_id"):
            out[(type_name, node, boot, seq)] = (sent_ns, json.loads(data), flags)
        return out
    finally:
        conn.close()


def pg_rows(url: str) -> dict[tuple[str, str, int, int], tuple[Any, ...]]:
    """The same for the central database's ``readings`` (flags rebuilt from the columns)."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5) as conn:
        out = {}
        for (type_name, node, boot, seq, sent_ns, data, last_value, replayed, synced,
             local, repaired) in conn.execute(
                 "SELECT type, node, boot, seq, sent_ns, data, last_value, replayed, "
                 "clock_synced, local, repaired FROM readings"):
            flags = (1 if last_value else 0) | (2 if replayed else 0) | (0 if synced else 4) | (
                8 if local else 0) | (16 if repaired else 0)
            key = (type_name, node, boot, seq)
            assert key not in out, f"duplicate reading on the server: {key}"
            out[key] = (sent_ns, data, flags)
        return out


def pg_count(url: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
    except psycopg.Error:
        return -1


def fields_of(data: str) -> dict[str, Any]:
    return datajson.loads(data)


__all__ = ["BASE_NS", "from_sql", "log_rows", "make_log", "pg_count", "pg_rows", "reading",
           "temperatures"]
