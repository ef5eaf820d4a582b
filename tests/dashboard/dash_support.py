"""Helpers for dashboard tests: a publisher and a dashboard on loopback, a log to read.

Every node sends multicast out of 127.0.0.1 only (DESIGN.md); the web server
listens on 127.0.0.1 on a free port; every wait is bounded.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from log_nodes import node_kwargs as node_kwargs  # re-exported for the tests here
from log_nodes import rows as rows
from waits import run as _run
from waits import until as _until

from ganglion.logger.schema import open_log
from ganglion.node import Node

LOOPBACK = "127.0.0.1"
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-quic"]
CHROMIUM = "/usr/bin/chromium"


# A dashboard and a browser take longer to settle than a node test's defaults allow.
until = functools.partial(_until, timeout=15.0, interval=0.05)
run = functools.partial(_run, timeout=60.0)


@asynccontextmanager
async def dashboard(port: int, tmp: Path, **kw: Any) -> AsyncIterator[tuple[Node, Any]]:
    """A member publisher node and a dashboard on an observer, both on loopback."""
    from ganglion.dashboard.server import Dashboard

    kw.setdefault("status_interval", 0.2)
    kw.setdefault("flush_interval", 0.05)
    async with Node(**node_kwargs(port, tmp / "pub", name="publisher")) as pub, \
            Node(**node_kwargs(port, name="watcher")) as watcher:
        board = Dashboard(watcher, host=LOOPBACK, port=0, cache=tmp / "cache.db", **kw)
        await board.start()
        try:
            yield pub, board
        finally:
            await board.close()


def make_log(db: Path, readings: list[tuple[str, str, int, dict[str, Any]]]) -> None:
    """A real log holding ``(type, node hex, received_ns, data)`` readings."""
    conn = open_log(db)
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO sessions (started_ns) VALUES (1)")
        nodes: dict[str, int] = {}
        types: dict[str, int] = {}
        for i, (type_name, node, received_ns, data) in enumerate(readings):
            if node not in nodes:
                nodes[node] = conn.execute("INSERT INTO nodes (node, name) VALUES (?, ?)",
                                           (node, f"node-{node[:4]}")).lastrowid or 0
            if type_name not in types:
                fields = json.dumps([{"name": k, "kind": "str" if isinstance(v, str) else "float"}
                                     for k, v in data.items()])
                types[type_name] = conn.execute(
                    "INSERT INTO types (name, fields, units, source, first_ns) "
                    "VALUES (?, ?, NULL, 'observed', 0)", (type_name, fields)).lastrowid or 0
            conn.execute("INSERT INTO samples (type_id, node_id, boot, seq, sent_ns, received_ns, "
                         "data) VALUES (?, ?, 1, ?, ?, ?, ?)",
                         (types[type_name], nodes[node], i, received_ns, received_ns,
                          json.dumps(data)))
        conn.execute("COMMIT")
    finally:
        conn.close()


def parse_events(text: str) -> list[tuple[str, str, Any]]:
    """Parse text/event-stream into (id, event, data) tuples (comments skipped)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            key, value = line.split(": ", 1)
            fields[key] = value
        if "event" in fields:
            out.append((fields.get("id", ""), fields["event"], json.loads(fields["data"])))
    return out
