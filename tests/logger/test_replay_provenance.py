"""``ganglion replay`` makes a faithful copy of a log (issue 20, defect 9).

Real processes on loopback, as a user runs them: two simulated sensor nodes logged
into a.db, then a.db replayed with ``ganglion replay`` while a second ``ganglion log``
writes b.db. The copy's rows carry the original senders, boots, sequence numbers,
sent times and fingerprints (they used to be the replaying node's, numbered from 0 at
the replay's time, which ``ganglion info`` showed as a second version of every type),
flagged replayed; replaying the same log again adds nothing.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from log_support import rows
from node_support import Spawner, free_port_pair, wait_sync

pytestmark = pytest.mark.timeout(120)

NET = ("--iface", "127.0.0.1")
#: What makes a reading the same reading, and what a faithful copy keeps of it.
ORIGINAL = ("type, node, boot, seq, sent_ns, fingerprint, data, last_value, clock_synced")


def _count(db: Path) -> int:
    try:
        return int(rows(db, "SELECT count(*) FROM samples")[0][0])
    except sqlite3.Error:
        return 0  # not created yet


def _received(db: Path) -> int:
    """Readings the newest logger session received (committed with each batch)."""
    return int(rows(db, "SELECT received FROM sessions ORDER BY id DESC LIMIT 1")[0][0])


def _log(spawn: Spawner, db: Path, port: int, label: str):  # type: ignore[no-untyped-def]
    proc = spawn("log", "--db", str(db), "--port", str(port), *NET, "--interval", "0.1",
                 label=label)
    proc.wait_for_err("logging every type")
    return proc


def _replay(spawn: Spawner, db: Path, port: int) -> str:
    play = spawn("replay", "--db", str(db), "--speed", "0", "--port", str(port), *NET,
                 label="replay")
    assert play.finish(timeout=40) == 0, play.describe()
    return play.err


def test_a_replayed_log_is_a_faithful_copy(spawn: Spawner, tmp_path: Path, port: int) -> None:
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    log_a = _log(spawn, a_db, port, "log-a")
    sims = [spawn("sim", "--kind", "temperature", "--kind", "pressure", "--name", "cellar",
                  "--interval", "0.02", "--count", "25", "--quiet", "--port", str(port), *NET,
                  label="sim-cellar"),
            spawn("sim", "--kind", "temperature", "--name", "attic", "--interval", "0.02",
                  "--count", "25", "--quiet", "--port", str(port), *NET, label="sim-attic")]
    for sim in sims:
        assert sim.finish(timeout=40) == 0, sim.describe()
    # Each sim's first readings of a type may go before the logger joined its group.
    wait_sync(lambda: len(rows(a_db, "SELECT DISTINCT node FROM readings")) == 2
              and _count(a_db) >= 30, "readings of both sims in a.db", timeout=20)
    log_a.kill(signal.SIGTERM)
    original = rows(a_db, f"SELECT {ORIGINAL} FROM readings ORDER BY id")
    senders = {r[1] for r in original}
    assert len(senders) == 2  # two sender nodes

    port2 = free_port_pair()
    log_b = _log(spawn, b_db, port2, "log-b")
    assert f"replayed {len(original)} readings" in _replay(spawn, a_db, port2)
    # The first replayed reading of a type may leave before the second logger has
    # joined the type's new group: allow one per type; every other one must arrive.
    allowed = len({r[0] for r in original})
    wait_sync(lambda: _count(b_db) >= len(original) - allowed, "the replayed readings in b.db",
              timeout=20)
    log_b.kill(signal.SIGTERM)
    copy = rows(b_db, f"SELECT {ORIGINAL} FROM readings ORDER BY id")
    for name in {r[0] for r in original}:  # the same rows, each type's in the same order
        kept = [r for r in copy if r[0] == name]
        assert kept == [r for r in original if r[0] == name and r in kept], name
    assert len(copy) >= len(original) - allowed
    assert rows(b_db, "SELECT count(*) FROM readings WHERE NOT replayed") == [(0,)]
    assert {n for (n,) in rows(b_db, "SELECT node FROM nodes")} == senders  # no replayer

    summary = spawn("info", "--db", str(b_db), "--json", label="info").json_out()
    assert summary["versions"] == {name: 1 for name in {r[0] for r in original}}
    assert {s["node"] for s in summary["streams"]} == senders

    # The same log replayed into the same database again adds no duplicate.
    log_b = _log(spawn, b_db, port2, "log-b2")
    _replay(spawn, a_db, port2)
    wait_sync(lambda: _received(b_db) >= len(original) - allowed,
              "the second logger to take the second replay", timeout=20)
    log_b.kill(signal.SIGTERM)
    again = rows(b_db, f"SELECT {ORIGINAL} FROM readings")
    assert len(again) == len(set(again)) <= len(original)
    assert set(again) <= set(original)
